"""Files made from a model's outputs: codes as CSV (`varinv encode`), decoded fragments as a PNG strip or a
WAV (`varinv transfer`, the report's swaps). :mod:`varinv.api` re-exports them; they live here so that the
inference API stays about the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from varinv.errors import DependencyError

__all__ = ["write_codes_csv", "fragments_image", "write_fragments_png", "write_fragments_wav"]


def write_codes_csv(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """The arrays of :func:`varinv.api.encode_dataset` (or ``encode_raw``) as CSV: one row per fragment, zc_0.., zs_0.. columns."""
    import csv

    scalar = [k for k in ("sample", "split", "row", "fragment", "position", "atom") if k in arrays]
    labels = [k for k in ("content", "content_name", "style", "style_name") if k in arrays]
    zc, zs = arrays["zc"], arrays["zs"]
    header = scalar + [f"zc_{i}" for i in range(zc.shape[1])] + [f"zs_{i}" for i in range(zs.shape[1])] + labels
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        sc = [arrays[k].tolist() for k in scalar]
        lb = [arrays[k].tolist() for k in labels]
        zc_txt = [[f"{v:.9g}" for v in row] for row in zc.tolist()]
        zs_txt = [[f"{v:.9g}" for v in row] for row in zs.tolist()]
        for j in range(len(zc)):
            w.writerow([c[j] for c in sc] + zc_txt[j] + zs_txt[j] + [c[j] for c in lb])


def fragments_image(frags: np.ndarray, kind: str, upscale: int = 1):
    """(L, C, H, W) model-unit fragments → a PIL image with them side by side (width L × W × upscale).

    Images: clipped to [0, 1] × 255 (channels other than 1 or 3: their mean, grey). Spectrograms:
    log-magnitudes through the magma colour map over their 1st–99.5th percentile, low bins at the bottom.
    """
    from PIL import Image

    from varinv.eval.recombine import grid_image

    frags = np.asarray(frags, dtype=np.float32)
    spec = kind == "spectrogram"
    if not spec and frags.shape[1] not in (1, 3):
        frags = frags.mean(1, keepdims=True)
    img = grid_image(frags[None], 1.0, pad=0, spectrogram=spec)
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    return img


def write_fragments_png(path: Path, frags: np.ndarray, kind: str, upscale: int = 1) -> Path:
    fragments_image(frags, kind, upscale).save(path)
    return Path(path)


def write_fragments_wav(path: Path, frags: np.ndarray, params: dict, n_iter: int | None = None,
                        seed: int = 0) -> Path:
    """(L, 1, F, T) log-magnitude fragments → one WAV: each fragment by Griffin-Lim with the run's
    feature parameters, faded, joined with the short gaps of the recombination strips."""
    import importlib.util

    from varinv.eval.recombine_audio import (DEFAULT_N_ITER, FADE_SECONDS, GAP_SECONDS, fade_edges, join_with_gaps,
                                             synthesize_grid)

    if importlib.util.find_spec("soundfile") is None:
        raise DependencyError("writing WAV files needs soundfile: pip install 'varinv[audio]'")
    from varinv.audio.griffinlim import write_wav

    sr = int(params.get("sr", 16000))
    waves = synthesize_grid(np.asarray(frags, dtype=np.float32)[None], params,
                            n_iter=DEFAULT_N_ITER if n_iter is None else n_iter, seed=seed)[0]
    waves = fade_edges(waves, int(round(FADE_SECONDS * sr)))
    return write_wav(path, join_with_gaps(waves, int(round(GAP_SECONDS * sr))), sr)
