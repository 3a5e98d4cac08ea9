"""Swaps of real samples for the page: the content of test sample A decoded in the style of sample B.

Made with the public API (``varinv.api.load_model(run).transfer(a, b)``, the code behind
`varinv transfer`), pictures with ``varinv.writers.fragments_image`` and, for spectrogram runs, sound with
``varinv.writers.write_fragments_wav`` (Griffin-Lim), then re-encoded small like every clip of the page.
The same pairs are used for every method and K of a dataset, so the methods can be compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from varinv.report import assets as A

__all__ = ["pick_pairs", "eval_split", "render_samples", "group_swaps"]

N_PAIRS_IMAGE = 3
N_PAIRS_AUDIO = 2
GL_ITERS = 32  # Griffin-Lim iterations for the swap clips (short clips; the page re-encodes them anyway)


def eval_split(ds, run_config: dict | None = None):
    """(name, Split) of the run's evaluation split, else test / val / train; None when there is none."""
    want = ((run_config or {}).get("data") or {}).get("eval_split")
    for name in ([want] if want else []) + ["test", "val", "train"]:
        if name in ds.splits:
            sp = ds.split(name)
            if len(sp):
                return name, sp
    return None


def pick_pairs(style, n_pairs: int) -> list[tuple[int, int]]:
    """``n_pairs`` (A, B) sample indices, A and B of different styles where the data allow it: samples
    of distinct styles (one per style first), paired cyclically (0→1, 1→2, …)."""
    s = np.asarray(style)
    s = s if s.ndim == 1 else s[:, 0]
    if len(s) < 2:
        return []
    picks = A.pick_examples(s, max(n_pairs, 2))
    pairs = []
    for i in range(len(picks)):
        a, b = picks[i], picks[(i + 1) % len(picks)]
        if a != b and (a, b) not in pairs:
            pairs.append((a, b))
    pairs = pairs[:n_pairs]
    return pairs


def _upscale(h: int) -> int:
    return int(np.clip(round(48 / max(h, 1)), 1, 4))


def _caption(split, i: int, content_names: list[str]) -> dict:
    c = np.asarray(split.content[i]).reshape(-1).tolist()
    s = int(np.asarray(split.style[i]).reshape(-1)[0])
    sn = split.style_names
    return {"style": sn[s] if 0 <= s < len(sn) else str(s),
            "content": " ".join(content_names[v] if 0 <= v < len(content_names) else "?" for v in c)}


def _png(frags: np.ndarray, kind: str, stem: Path) -> Path:
    from varinv.writers import fragments_image

    img = fragments_image(frags, kind, upscale=_upscale(frags.shape[-2]) if kind != "spectrogram" else 1)
    return A.save_image(np.asarray(img.convert("RGB")), stem)


def _wav(frags: np.ndarray, params: dict, dst: Path, budget: A.AudioBudget, seed: int = 0) -> Path | None:
    """Griffin-Lim WAV of (L, 1, F, T) log-magnitudes, re-encoded small; None when it does not fit or fails."""
    try:
        from varinv.writers import write_fragments_wav

        tmp = dst.with_suffix(".full.wav")
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_fragments_wav(tmp, frags, params, n_iter=GL_ITERS, seed=seed)
    except Exception:  # noqa: BLE001 - no soundfile, odd parameters: the picture stays
        return None
    try:
        n_bins = int(frags.shape[-2])
        plan = A.wav_plan(tmp, band_hz=A._band_hz(n_bins))
        if plan is None or not budget.take(plan.size(16)):
            return None
        return A.reencode_wav(tmp, dst, plan, 16)
    except Exception:  # noqa: BLE001
        return None
    finally:
        tmp.unlink(missing_ok=True)


def render_samples(ds, split, pairs, out_dir: Path, rel, budget: A.AudioBudget, params: dict,
                   content_names: list[str]) -> dict[int, dict]:
    """Pictures (and clips) of the samples used in ``pairs``: {index: {"img", "style", "content"[, "audio"]}}."""
    kind = "spectrogram" if ds.manifest.get("kind") == "spectrogram" else "image"
    out = {}
    for i in sorted({v for p in pairs for v in p}):
        x = np.asarray(split.x[i], dtype=np.float32) / float(split.scale or 1.0)  # model units
        item = {"img": rel(_png(x, kind, out_dir / f"sample_{i}")), **_caption(split, i, content_names)}
        if kind == "spectrogram":
            w = _wav(x, params, out_dir / f"sample_{i}.wav", budget)
            if w is not None:
                item["audio"] = rel(w)
        out[i] = item
    return out


def group_swaps(run_path: Path, data_path: Path | None, split, pairs, gdir: Path, rel,
                budget: A.AudioBudget) -> tuple[list[dict] | None, str]:
    """The swaps of one (method, K) group, from its picture run: ([{"img"[, "audio"]}] per pair, "") or
    (None, why not)."""
    from varinv.api import Model

    try:
        model = Model.load(run_path, data=data_path, command="report")
    except Exception as e:  # noqa: BLE001 - no checkpoint, a run from another version: said on the page
        return None, f"model could not be loaded ({type(e).__name__})"
    if tuple(split.x.shape[2:]) != tuple(model.fragment_shape):
        return None, "the run's fragments do not match this dataset"
    ia = [a for a, _ in pairs]
    ib = [b for _, b in pairs]
    try:
        y = model.transfer(np.asarray(split.x[ia]), np.asarray(split.x[ib]))
    except Exception as e:  # noqa: BLE001
        return None, f"transfer failed ({type(e).__name__})"
    out = []
    for n, (a, b) in enumerate(pairs):
        item = {"img": rel(_png(y[n], model.kind, gdir / "swaps" / f"swap_{a}_{b}"))}
        if model.kind == "spectrogram":
            w = _wav(y[n], model.params, gdir / "swaps" / f"swap_{a}_{b}.wav", budget,
                     seed=int(getattr(model.cfg.train, "seed", 0) or 0))
            if w is not None:
                item["audio"] = rel(w)
        out.append(item)
    return out, ""
