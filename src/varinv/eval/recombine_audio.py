"""Audio out for recombination grids of spectrogram datasets (InsNotes, Waveforms).

:func:`write_audio` turns the decoded grid ``(K, S, 1, F, T)`` of log-magnitude fragments (one cell
per (atom, style mean), see :mod:`varinv.eval.recombine`) into WAVs by Griffin-Lim, all cells in a
few batched calls:

* ``atom_XXX_all_styles.wav``: fix an atom, traverse all styles (timbres), cells joined by short gaps;
* ``style_SS_<name>_all_atoms.wav``: fix a style, traverse all atoms (in ``atom_order``);
* ``cells/cell_atomXXX_styleSS.wav``: every single cell (about 1 s each, for the demo page);
* ``audio.json``: the index of all of the above (atom ids, style names, sample rate, Griffin-Lim settings).

Each cell is faded in and out over a few milliseconds before joining, so the joins do not click.
A WAV is peak-normalised as a whole (:func:`varinv.audio.griffinlim.write_wav`), so the relative
loudness of the cells along a strip is kept.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from varinv.audio.griffinlim import griffin_lim, write_wav
from varinv.errors import DataError

DEFAULT_N_ITER = 48
GAP_SECONDS = 0.15
FADE_SECONDS = 0.005


def safe_name(name: str) -> str:
    """A style name as a file-name part: ``"Trumpet (56)"`` → ``"Trumpet_56"``."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.-]+", "_", str(name))).strip("_") or "style"


def fade_edges(waves: torch.Tensor, n: int) -> torch.Tensor:
    if n <= 0 or waves.shape[-1] < 2 * n:
        return waves
    ramp = torch.linspace(0.0, 1.0, n, dtype=waves.dtype)
    waves = waves.clone()
    waves[..., :n] *= ramp
    waves[..., -n:] *= ramp.flip(0)
    return waves


def join_with_gaps(waves: torch.Tensor, gap: int) -> torch.Tensor:
    """(n, samples) → (n * samples + (n - 1) * gap,) with silent gaps."""
    parts = []
    silence = waves.new_zeros(gap)
    for i, w in enumerate(waves):
        if i and gap:
            parts.append(silence)
        parts.append(w)
    return torch.cat(parts)


def synthesize_grid(frags, params: dict, n_iter: int = DEFAULT_N_ITER, batch: int = 256, seed: int = 0) -> torch.Tensor:
    """Griffin-Lim every cell of a (K, S, 1, F, T) log-magnitude grid → (K, S, samples) float32."""
    x = torch.as_tensor(np.asarray(frags, dtype=np.float32))
    if x.ndim != 5 or x.shape[2] != 1:
        raise DataError(f"audio recombination needs a (K, S, 1, F, T) spectrogram grid, got shape {tuple(x.shape)}")
    k, s, _, f, t = x.shape
    n_bins = int(params.get("n_bins", f))
    if f != n_bins:
        raise DataError(f"the decoded grid has {f} frequency bins but the dataset manifest says n_bins = {n_bins}")
    n_fft, hop = int(params.get("n_fft", 1024)), int(params.get("hop", 512))
    flat = x.reshape(k * s, f, t)
    pool = int(params.get("frame_pool", 1))  # time-pooled fragments: each frame stands for `pool` STFT frames
    if pool > 1:
        flat = flat.repeat_interleave(pool, dim=-1)
    waves = [griffin_lim(flat[i:i + batch], n_fft=n_fft, hop=hop, n_iter=n_iter, seed=seed)
             for i in range(0, k * s, batch)]
    return torch.cat(waves).reshape(k, s, -1)


def write_audio(out_dir, frags, atom_order, style_names, manifest_params: dict, *, n_iter: int = DEFAULT_N_ITER,
                gap_seconds: float = GAP_SECONDS, cells: bool = True, seed: int = 0,
                atom_labels: list[str] | None = None) -> dict:
    """Write the recombination WAVs of a spectrogram grid (see the module doc) and return their paths.

    ``frags``: (K, S, 1, F, T) log-magnitudes in model units, rows in ``atom_order`` (atom ids), columns
    in ``style_names`` order. ``manifest_params``: the dataset's ``manifest["params"]`` (``sr``,
    ``n_fft``, ``hop``, ``n_bins``). ``atom_labels`` (optional): the majority content class per row, for
    the index. Returns ``{"atoms": [...], "styles": [...], "cells": [[...] per atom], "index": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    order = [int(a) for a in atom_order]
    names = [str(n) for n in style_names]
    frags = np.asarray(frags)
    if frags.shape[:2] != (len(order), len(names)):
        raise DataError(f"grid of shape {frags.shape[:2]} does not match {len(order)} atoms x {len(names)} styles")
    sr = int(manifest_params.get("sr", 16000))
    waves = synthesize_grid(frags, manifest_params, n_iter=n_iter, seed=seed)
    waves = fade_edges(waves, int(round(FADE_SECONDS * sr)))
    gap = int(round(gap_seconds * sr))
    files: dict = {"atoms": [], "styles": [], "cells": []}
    for row, atom in enumerate(order):
        p = write_wav(out / f"atom_{atom:03d}_all_styles.wav", join_with_gaps(waves[row], gap), sr)
        files["atoms"].append(str(p))
    for col, name in enumerate(names):
        p = write_wav(out / f"style_{col:02d}_{safe_name(name)}_all_atoms.wav", join_with_gaps(waves[:, col], gap), sr)
        files["styles"].append(str(p))
    if cells:
        cdir = out / "cells"
        for row, atom in enumerate(order):
            files["cells"].append([str(write_wav(cdir / f"cell_atom{atom:03d}_style{col:02d}.wav", waves[row, col], sr))
                                   for col in range(len(names))])
    index = {
        "sr": sr, "n_fft": int(manifest_params.get("n_fft", 1024)), "hop": int(manifest_params.get("hop", 512)),
        "n_bins": int(frags.shape[3]), "griffin_lim_iters": int(n_iter), "gap_seconds": gap_seconds,
        "cell_seconds": waves.shape[-1] / sr, "atom_order": order, "style_names": names,
        "atom_labels": list(atom_labels) if atom_labels is not None else None,
        "files": {k: ([[Path(c).name for c in row] for row in v] if k == "cells" else [Path(f).name for f in v])
                  for k, v in files.items()},
    }
    (out / "audio.json").write_text(json.dumps(index, indent=1))
    files["index"] = str(out / "audio.json")
    return files
