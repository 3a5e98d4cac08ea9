"""Generalisation suite, handwriting: real scanned digits in coloured ink on coloured paper.

Each sample is 10 RGB 32x32 fragments. Content is the digit 0-9, each exactly once per sample; style is
one of 6 (ink, paper) colour pairs, constant within a sample. The glyphs are scikit-learn's
``load_digits`` scans (1797 8x8 scans of people's handwriting, 16 grey levels), bilinearly upsampled to
about 24x24. This is the suite's only domain whose within-class spread comes from real writers rather
than a font or a parametric drawing, so it tests whether a model trained on synthetic-looking fragments
also separates content from style when the content itself is messy. The scans are split 80/10/10
within each digit into disjoint train/val/test pools: test samples show only scans never seen in
training. Nuisances: scan size 21-27 px, +-2 px translation, per-sample colour tone, per-fragment
brightness and Gaussian noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).parent))
from common import PAD, SIZE, SPLITS, cli, composite, contents_once, split_sizes  # noqa: E402

from varinv.data.store import Dataset, from_arrays  # noqa: E402

SCAN_SIZES = (21, 23, 25, 27)  # upsampled side of a scan: the scale nuisance
# (ink, paper) pairs, light-on-dark as well as dark-on-light so the style is not just "how dark is the ink"
STYLES = {
    "dark blue on cream": ((25, 35, 120), (245, 236, 205)),
    "white on dark green": ((245, 245, 240), (25, 85, 45)),
    "red on light grey": ((200, 30, 30), (215, 215, 215)),
    "black on yellow": ((15, 15, 15), (245, 215, 50)),
    "yellow on purple": ((250, 220, 60), (85, 30, 115)),
    "cyan on black": ((60, 220, 230), (15, 15, 15)),
}
CONTENT_NAMES = [str(d) for d in range(10)]


def scan_pools(target: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Disjoint sorted scan indices per split, 80/10/10 within each digit so every split has every digit."""
    parts: dict[str, list] = {s: [] for s in SPLITS}
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(target == d))
        n_hold = round(0.1 * len(idx))
        for s, part in zip(SPLITS, np.split(idx, [len(idx) - 2 * n_hold, len(idx) - n_hold])):
            parts[s].append(part)
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def scan_bank(images: np.ndarray) -> np.ndarray:
    """(n_scans, len(SCAN_SIZES), 36, 36) float32 ink maps in 0..1, each scan centred at every size."""
    side = SIZE + 2 * PAD
    bank = np.zeros((len(images), len(SCAN_SIZES), side, side), np.float32)
    for i, img in enumerate(images.astype(np.float32) / 16.0):
        im = Image.fromarray(img)
        for j, s in enumerate(SCAN_SIZES):
            o = (side - s) // 2
            bank[i, j, o:o + s, o:o + s] = np.asarray(im.resize((s, s), Image.Resampling.BILINEAR))
    return np.clip(bank, 0.0, 1.0)


def generate(out, n_samples: int = 3000, seed: int = 0, overwrite: bool = False) -> Dataset:
    """Real scanned handwritten digits (content, each once per sample) in 6 ink/paper colour pairs (style).

    ``params["scan_pools"]`` holds each split's scan indices into ``load_digits()`` and
    ``params["scans_used"]`` the scans that actually appear in it (always a subset of its pool).
    """
    rng = np.random.default_rng(seed)
    digits = load_digits()
    target = digits.target
    pools = scan_pools(target, rng)
    bank = scan_bank(digits.images)
    window = sliding_window_view(bank, (SIZE, SIZE), axis=(-2, -1))  # (scan, size, dy, dx, 32, 32)
    colours = np.array(list(STYLES.values()), np.int64)  # (style, ink/paper, 3)
    splits, used = {}, {}
    for split, n in split_sizes(n_samples).items():
        content = contents_once(rng, n, 10, 10)
        style = rng.permutation(np.arange(n) % len(STYLES))
        # each fragment shows a random scan of its digit from this split's pool only
        scan = np.empty_like(content)
        for d in range(10):
            pool = pools[split][target[pools[split]] == d]
            mask = content == d
            scan[mask] = pool[rng.integers(0, len(pool), mask.sum())]
        size = rng.integers(0, len(SCAN_SIZES), content.shape)
        dy, dx = rng.integers(0, 2 * PAD + 1, (2,) + content.shape)
        alpha = window[scan, size, dy, dx]
        tone = rng.integers(-8, 9, (2, n, 3))  # per-sample ink/paper batch variation
        x = composite(alpha, colours[style, 0] + tone[0], colours[style, 1] + tone[1], rng)
        splits[split] = (x, content, style)
        used[split] = np.unique(scan).tolist()
    params = {
        "n_samples": n_samples, "scan_sizes": list(SCAN_SIZES), "shift_px": PAD,
        "scan_pools": {s: p.tolist() for s, p in pools.items()}, "scans_used": used,
    }
    return from_arrays(out, splits, kind="image", content_names=CONTENT_NAMES, style_names=list(STYLES),
                       generator="generalisation.handwriting", seed=seed, params=params, overwrite=overwrite)


main = cli(generate)

if __name__ == "__main__":
    sys.exit(main())
