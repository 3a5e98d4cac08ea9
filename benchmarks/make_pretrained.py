"""Package a finished, evaluated run as a pretrained model inside varinv: src/varinv/pretrained/NAME/.

    python benchmarks/make_pretrained.py phonenums runs/pretrained-phonenums   # package a finished run
    python benchmarks/make_pretrained.py phonenums --train [--dry-run]         # data, train, evaluate, package

Copied from RUN, and nothing else: model.json, config.yaml, metrics.json and the final checkpoint
(checkpoints/final.json and the weights file it names). No TensorBoard logs, no `last` checkpoint, no
optimizer state: final.json is rewritten without the optimizer record and the RNG states, and the weights
are written again, model tensors only (the names and shapes of the network's state_dict), so an optimizer
bundled into the file would not travel. The folder must stay <= 5 MB; a README.md is written beside the
files with the training command, the data, the seed and the metrics. The packaged model is then loaded
back (varinv.load_model) as a check.

--train runs the recipe of NAME (the commands are printed first; --dry-run prints them only): generate its
dataset if missing, `varinv train CONFIG --run RUN`, `varinv evaluate RUN`, then package. The recipes:
phonenums = configs/phonenums_v3_small.yaml (V3, K = 10) on PhoneNums 10k seed 0; insnotes =
configs/insnotes_v3_small.yaml (V3, K = 12) on InsNotes (paper size, seed 0).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "src" / "varinv" / "pretrained"
MAX_BYTES = 5_000_000
STATE_KEYS = ("step", "train_seconds", "losses", "method")  # kept from final.json (plus the weights record)
METRIC_ROWS = [
    ("codebook_purity", "codebook purity", "up"),
    ("one_to_one_accuracy", "one-to-one accuracy", "up"),
    ("prauc_zc_content", "PR-AUC z_c · content", "up"),
    ("prauc_zs_style", "PR-AUC z_s · style", "up"),
    ("prauc_zc_style", "PR-AUC z_c · style", "down"),
    ("prauc_zs_content", "PR-AUC z_s · content", "down"),
    ("atoms_used", "atoms used", ""),
    ("recon_mse", "reconstruction MSE", "down"),
]

RECIPES = {
    "phonenums": {
        "config": "configs/phonenums_v3_small.yaml",
        "data": "data/phonenums-10k",
        "generate": ["varinv", "data", "phonenums", "--out", "data/phonenums-10k", "--size", "10000", "--seed", "0"],
        "run": "runs/pretrained-phonenums",
    },
    "insnotes": {
        "config": "configs/insnotes_v3_small.yaml",
        "data": "data/insnotes",
        "generate": ["varinv", "data", "insnotes", "--out", "data/insnotes", "--seed", "0"],
        "run": "runs/pretrained-insnotes",
    },
}


class PackError(Exception):
    pass


def varinv_command() -> str:
    """The installed `varinv` beside this interpreter (a venv's bin/), else whatever PATH finds."""
    here = Path(sys.executable).with_name("varinv")
    return str(here) if here.exists() else "varinv"


def recipe_commands(name: str, run: str | None = None) -> list[list[str]]:
    r = RECIPES[name]
    run = run or r["run"]
    cmds = []
    if not (ROOT / r["data"] / "manifest.json").is_file():
        cmds.append(list(r["generate"]))
    cmds.append(["varinv", "train", r["config"], "--run", run])
    cmds.append(["varinv", "evaluate", run])
    cmds.append([sys.executable, "benchmarks/make_pretrained.py", name, run])
    return cmds


# ------------------------------------------------------------------------------------------ checks
def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PackError(f"{path} ({what}) cannot be read: {e}") from None


def check_run(run: Path) -> dict:
    """What packaging needs from RUN, checked: a finished, evaluated run with model.json."""
    import yaml

    if not run.is_dir():
        raise PackError(f"run folder {run} does not exist")
    for f, fix in (("model.json", "train it with this varinv (older runs lack model.json)"),
                   ("config.yaml", "is it a run folder made by `varinv train`?"),
                   ("checkpoints/final.json", "training has not finished (no final checkpoint); wait or "
                                              f"`varinv train {run}/config.yaml --run {run} --resume`"),
                   ("metrics.json", f"evaluate it first: varinv evaluate {run}")):
        if not (run / f).is_file():
            raise PackError(f"{run / f} is missing: {fix}")
    state = _read_json(run / "checkpoints" / "final.json", "final checkpoint")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    steps = int(cfg["train"]["steps"])
    if int(state.get("step", -1)) != steps:
        raise PackError(f"{run} final checkpoint is at step {state.get('step')} of {steps}")
    weights = run / "checkpoints" / str(state.get("model_file", "final.safetensors"))
    if not weights.is_file():
        raise PackError(f"{weights} (the final weights) is missing")
    metrics = _read_json(run / "metrics.json", "metrics")
    if int(metrics.get("step", -1)) != steps:
        raise PackError(f"{run}/metrics.json describes step {metrics.get('step')}, not the final step {steps}: "
                        f"evaluate again (varinv evaluate {run})")
    return {"state": state, "cfg": cfg, "weights": weights, "metrics": metrics,
            "meta": _read_json(run / "model.json", "model description"),
            "provenance": _read_json(run / "provenance.json", "provenance") if (run / "provenance.json").is_file()
            else {}}


def weights_only(src: Path, dest: Path, run: Path) -> None:
    """The network's own tensors from ``src``, written to ``dest`` (anything else in the file is dropped)."""
    from safetensors.torch import load_file, save_file

    from varinv.api import Model

    tensors = load_file(str(src))
    model = Model.load(run)  # the network the run describes: its state_dict names what belongs to the model
    expected = model.module.state_dict()
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise PackError(f"{src} lacks model tensors ({', '.join(missing[:3])}...)")
    dropped = sorted(set(tensors) - set(expected))
    if dropped:
        print(f"dropping {len(dropped)} non-model tensors from the weights ({', '.join(dropped[:3])}...)")
    save_file({k: tensors[k].contiguous() for k in expected}, str(dest))


# ------------------------------------------------------------------------------------------ README
def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def readme(name: str, run: Path, info: dict, size: int) -> str:
    if run.is_absolute() and run.is_relative_to(ROOT):  # --train packages ROOT/run: name it as the user typed it
        run = run.relative_to(ROOT)
    cfg, meta, metrics, state, prov = info["cfg"], info["meta"], info["metrics"], info["state"], info["provenance"]
    method, k = meta.get("method", cfg["model"].get("method")), metrics.get("n_atoms") or cfg["model"].get("n_atoms")
    argv = prov.get("argv") or []
    if argv and Path(argv[0]).name == "varinv" and argv[1:2] == ["train"]:  # trained by the CLI, not from Python
        argv = ["varinv", *argv[1:]]
        train_cmd = shlex.join(argv)
    else:
        argv = []
        train_cmd = f"varinv train {RECIPES.get(name, {}).get('config', 'CONFIG')} --run {run}"
        if cfg["train"].get("seed"):  # a grid's cell of another seed: the recipe's config says seed 0
            train_cmd += f" --set train.seed={cfg['train']['seed']}"
    data_path = cfg["data"]["path"]
    gen = prov.get("dataset_generator") or meta.get("dataset_generator") or "?"
    dseed = prov.get("dataset_seed", "?")
    size_note = ""
    manifest = ROOT / data_path / "manifest.json" if not Path(data_path).is_absolute() else Path(data_path) / "manifest.json"
    if manifest.is_file():
        man = json.loads(manifest.read_text())
        params = man.get("params") or {}
        n = params.get("n_rows") or params.get("files_per_instrument")
        unit = "rows" if "n_rows" in params else "files per instrument"
        splits = ", ".join(f"{s} {v['n']}" for s, v in (man.get("splits") or {}).items())
        size_note = f"{n} {unit}; splits: {splits}" if n else f"splits: {splits}"
    recipe = RECIPES.get(name, {})
    gen_cmd = recipe.get("generate") if recipe.get("data") == data_path else None  # else: the data line says
    config_src = recipe.get("config", "?")
    if argv[:2] == ["varinv", "train"] and len(argv) > 2 and not argv[2].startswith("-"):
        config_src = argv[2]
    sub = metrics.get("eval_subset") or {}
    lines = [
        f"# pretrained:{name}",
        "",
        f"{str(method).upper() if method == 'v3' else method} with K = {k} atoms on "
        f"{Path(data_path).name}, fragments {tuple(meta.get('fragment_shape', []))} ({meta.get('kind')}), "
        f"packaged by `benchmarks/make_pretrained.py` on {datetime.date.today().isoformat()} "
        f"({size / 1e6:.2f} MB). Use it as `pretrained:{name}` wherever a run folder is taken:",
        "",
        "```",
        *(["varinv demo --pretrained    # the demo page from this model, no training"] if name == "phonenums" else []),
        f"varinv encode pretrained:{name} DATASET -o codes.csv",
        f"python -c \"import varinv; print(varinv.load_model('pretrained:{name}'))\"",
        "```",
        "",
        "## Training",
        "",
        "```",
        *([shlex.join(gen_cmd)] if gen_cmd else []),
        train_cmd,
        f"varinv evaluate {run}",
        f"python benchmarks/make_pretrained.py {name} {run}",
        "```",
        "",
        f"- config: `config.yaml` (resolved; from `{config_src}`), "
        f"train.seed {cfg['train'].get('seed')}, {state.get('step')} steps of batch {cfg['train'].get('batch_size')}, "
        f"{float(state.get('train_seconds', 0)):.0f} s of training"
        + (f" (torch {prov.get('torch')}, {prov.get('threads')} thread(s))" if prov.get("torch") else ""),
        f"- data: `{data_path}` from `{gen}`, seed {dseed}"
        + (f", {size_note}" if size_note else "")
        + (f"; dataset hash {prov.get('dataset_hash') or meta.get('dataset_hash')}" if
           (prov.get('dataset_hash') or meta.get('dataset_hash')) else ""),
        "",
        "## Metrics",
        "",
        f"`varinv evaluate` on the `{metrics.get('split', 'test')}` split"
        + (f" ({sub.get('n_samples')} samples, {sub.get('n_fragments')} fragments)" if sub else
           f" ({metrics['n_fragments']} fragments)" if metrics.get("n_fragments") else "")
        + "; all of it in `metrics.json`.",
        "",
        "| metric | value | better |",
        "|---|---|---|",
    ]
    for key, title, better in METRIC_ROWS:
        if key in metrics:
            lines.append(f"| {title} | {_fmt(metrics[key])} | {better or ''} |")
    lines += [
        "",
        "## Files",
        "",
        "model.json (everything inference needs), config.yaml, checkpoints/final.json and its weights "
        "(safetensors, model tensors only: no optimizer state), metrics.json. Nothing here is written by "
        "varinv: `evaluate`, `recombine` and `demo` work on a copy.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ package
def package(name: str, run: Path, dest_root: Path = DEST, *, max_bytes: int = MAX_BYTES) -> Path:
    if not name.isidentifier() or name.startswith("_"):
        raise PackError(f"NAME {name!r} must be a plain lower-case word, e.g. phonenums")
    run = Path(run)
    info = check_run(run)
    dest_root.mkdir(parents=True, exist_ok=True)
    final = dest_root / name
    if final.exists() and not (final / "model.json").is_file() and any(final.iterdir()):
        raise PackError(f"{final} exists and is not a packaged model; remove it by hand")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest_root))
    try:
        (tmp / "checkpoints").mkdir()
        for f in ("model.json", "config.yaml", "metrics.json"):
            shutil.copyfile(run / f, tmp / f)
        wname = f"final-{int(info['state']['step']):08d}.safetensors"
        weights_only(info["weights"], tmp / "checkpoints" / wname, run)
        from varinv.data.store import sha256_file

        state = {k: info["state"][k] for k in STATE_KEYS if k in info["state"]}
        state["model_file"], state["model_sha256"] = wname, sha256_file(tmp / "checkpoints" / wname)
        (tmp / "checkpoints" / "final.json").write_text(json.dumps(state, indent=1) + "\n")
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        (tmp / "README.md").write_text(readme(name, run, info, size))
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        if size > max_bytes:
            raise PackError(f"pretrained:{name} would take {size / 1e6:.2f} MB, more than {max_bytes / 1e6:.0f} MB")
        from varinv.api import Model

        Model.load(tmp)  # loads without the dataset and without optimizer state
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        model = Model.load(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"packaged pretrained:{name} from {run} into {final} ({size / 1e6:.2f} MB): {model!r}")
    for p in sorted(final.rglob("*")):
        if p.is_file():
            print(f"  {p.relative_to(final)}  {p.stat().st_size:,} B")
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("name", help="Model name: pretrained:NAME (recipes: " + ", ".join(RECIPES) + ")")
    ap.add_argument("run", nargs="?", type=Path, help="A finished, evaluated run folder to package.")
    ap.add_argument("--train", action="store_true", help="Run NAME's recipe (data, train, evaluate), then package.")
    ap.add_argument("--dry-run", action="store_true", help="With --train: print the commands only.")
    ap.add_argument("--dest", type=Path, default=DEST, help="Folder of the packaged models (default %(default)s).")
    a = ap.parse_args(argv)
    try:
        if a.train:
            if a.name not in RECIPES:
                raise PackError(f"no recipe for {a.name!r}; recipes: {', '.join(RECIPES)}")
            run = str(a.run) if a.run else RECIPES[a.name]["run"]
            cmds = recipe_commands(a.name, run)
            for c in cmds:
                print("$ " + shlex.join(c))
            if a.dry_run:
                return 0
            for c in cmds[:-1]:
                exe = [varinv_command(), *c[1:]] if c[0] == "varinv" else c
                subprocess.run(exe, cwd=ROOT, check=True)
            package(a.name, ROOT / run if not Path(run).is_absolute() else Path(run), a.dest)
            return 0
        if a.run is None:
            ap.error("give RUN (a finished, evaluated run folder) or --train")
        package(a.name, a.run, a.dest)
        return 0
    except PackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"error: `{shlex.join(map(str, e.cmd))}` failed (exit {e.returncode})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
