"""Checkpoints: safetensors tensors + a JSON state. Loading never unpickles.

A checkpoint NAME in a folder is NAME.json (step, scalars, RNG states, the optimizer's param-group
settings, and the names and sha256 of its tensor files) plus two tensor files named after the step,
NAME-<step>.safetensors (model weights and buffers) and NAME-<step>.optim.safetensors (optimizer
moments). Tensor files are new files each time, the JSON is written to a temporary name and renamed
last, and only then are older tensor files removed: a process killed at any point leaves the
previous checkpoint complete and loadable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from varinv.data.store import sha256_file
from varinv.errors import CheckpointError


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save(folder: Path, name: str, model: torch.nn.Module, opt: torch.optim.Optimizer | None, state: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    stem = f"{name}-{int(state.get('step', 0)):08d}"
    mpath = folder / f"{stem}.safetensors"
    _atomic_write_bytes(mpath, lambda p: save_file(weights, str(p)))
    state = dict(state)
    state["model_file"], state["model_sha256"] = mpath.name, sha256_file(mpath)
    keep = {mpath.name}
    if opt is not None:
        tensors, meta = _optimizer_tensors(opt)
        opath = folder / f"{stem}.optim.safetensors"
        _atomic_write_bytes(opath, lambda p: save_file(tensors, str(p)))
        state["optimizer"] = meta
        state["optim_file"], state["optim_sha256"] = opath.name, sha256_file(opath)
        keep.add(opath.name)
    jpath = folder / f"{name}.json"
    _atomic_write_bytes(jpath, lambda p: p.write_text(json.dumps(state, indent=1)))
    for old in folder.glob(f"{name}-*.safetensors"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def read_state(folder: Path, name: str) -> dict:
    jpath = folder / f"{name}.json"
    if not jpath.exists():
        raise CheckpointError(f"no checkpoint '{name}' in {folder}; train first (`varinv train`) or check the path")
    try:
        return json.loads(jpath.read_text())
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint state {jpath} is corrupt (invalid JSON); retrain or restore it") from None


def model_path(folder: Path, name: str) -> Path:
    """The weights file of checkpoint ``name`` (for tools that read the tensors directly)."""
    return folder / str(read_state(folder, name).get("model_file", f"{name}.safetensors"))


def _load_tensors(path: Path, expected_sha: str | None) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing; retrain or restore it")
    if expected_sha and sha256_file(path) != expected_sha:
        raise CheckpointError(f"checkpoint file {path} does not match its recorded checksum (truncated or tampered)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {path} is corrupt ({e}); retrain or restore it") from None


def load_model(folder: Path, name: str, model: torch.nn.Module) -> dict:
    state = read_state(folder, name)
    weights = _load_tensors(folder / str(state.get("model_file", f"{name}.safetensors")), state.get("model_sha256"))
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(_misfit(folder / name, weights, model.state_dict(), e)) from None
    return state


def _misfit(where: Path, weights: dict, expected: dict, error: Exception) -> str:
    """One line on why checkpoint ``where`` does not fit the model the config describes: K when the
    codebook differs, else the first tensor whose shape differs, the missing or extra names."""
    for key, have in sorted(weights.items(), key=lambda kv: not kv[0].endswith("codebook")):  # K first
        want = expected.get(key)
        if want is None or tuple(want.shape) == tuple(have.shape):
            continue
        if key.endswith("codebook") and have.ndim == 2 and want.ndim == 2:
            return (f"checkpoint {where} holds K = {have.shape[0]} atoms but the run's config asks for "
                    f"K = {want.shape[0]} (model.n_atoms); set it back to {have.shape[0]} in the run's config.yaml, "
                    f"or train a new run with K = {want.shape[0]}")
        return (f"checkpoint {where} does not fit the model its config describes: {key} is "
                f"{tuple(have.shape)} in the checkpoint but {tuple(want.shape)} in the model; was the run's "
                "config.yaml edited? restore it or train a new run")
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which the model does not"
        return (f"checkpoint {where} does not fit the model its config describes (it {what}); was the run's "
                "config.yaml edited (model.method or the architecture)? restore it or train a new run")
    first = str(error).splitlines()[0]
    return f"checkpoint {where} does not fit this model ({first})"


def load_optimizer(folder: Path, name: str, opt: torch.optim.Optimizer, state: dict) -> None:
    tensors = _load_tensors(folder / str(state.get("optim_file", f"{name}.optim.safetensors")), state.get("optim_sha256"))
    meta = state["optimizer"]
    per: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        per.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        per.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": per, "param_groups": meta["param_groups"]})
