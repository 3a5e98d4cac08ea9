"""Generalisation suite, greek: lowercase Greek letters, repeating within a sample, in 8 ink colours.

Each sample is 10 RGB 32x32 fragments. Content is one of 10 lowercase Greek letters (alpha beta gamma
delta epsilon zeta eta theta lambda pi, DejaVu Sans) drawn WITH replacement, so letters repeat within a
sample; style is one of 8 ink colours on white, constant within a sample. It is the PhoneNums recipe
moved to another alphabet and other hues: a model tuned on digits must cope with unfamiliar glyphs
(with ascenders and descenders, so sizes and positions differ by class) and with repeats. As a
handwriting pressure would, the blur drifts gradually along the sample, from a random start level to
a random end level. Nuisances: rotation +-10 deg and scale per fragment, +-2 px translation, drifting
blur, per-sample tone, per-fragment brightness and Gaussian noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageFont
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from common import PAD, SIZE, cli, composite, contents_repeating, render_glyph, split_sizes  # noqa: E402

from varinv.data.store import Dataset, from_arrays  # noqa: E402

SS = 4  # glyphs are rendered at 4x and downsampled (anti-aliasing)
LETTERS = {"alpha": "\u03b1", "beta": "\u03b2", "gamma": "\u03b3", "delta": "\u03b4", "epsilon": "\u03b5",
           "zeta": "\u03b6", "eta": "\u03b7", "theta": "\u03b8", "lambda": "\u03bb", "pi": "\u03c0"}
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
MAX_H, MAX_W = 24.0, 22.0  # px the tallest / widest letter is fitted into; the others keep their relative size
N_VARIANTS = 24  # rotation/scale variants per letter
BLUR = np.linspace(0.0, 1.5, 7)  # Gaussian sigmas (px) the drifting blur moves between
COLOURS = {"navy": (0, 0, 128), "crimson": (220, 20, 60), "forest green": (34, 139, 34),
           "dark orange": (255, 140, 0), "purple": (128, 0, 128), "teal": (0, 128, 128),
           "brown": (139, 69, 19), "slate grey": (112, 128, 144)}
PAPER = (246, 246, 246)


def glyph_bank(rng: np.random.Generator) -> np.ndarray:
    """(letter, variant, blur, 36, 36) float32 ink maps in 0..1: random rotation and scale per variant,
    each at every blur level of ``BLUR``."""
    side = SIZE + 2 * PAD
    font = ImageFont.truetype(str(FONT), 48 * SS)
    glyphs = [render_glyph(font, ch) for ch in LETTERS.values()]
    base = min(MAX_H / max(g.height for g in glyphs), MAX_W / max(g.width for g in glyphs))
    sharp = np.zeros((len(glyphs), N_VARIANTS, side, side), np.float32)
    for k, g in enumerate(glyphs):
        for v in range(N_VARIANTS):
            r = g.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BICUBIC, expand=True)
            r = r.crop(r.getbbox())
            s = base * rng.uniform(0.85, 1.05)
            w, h = min(side, max(1, round(r.width * s))), min(side, max(1, round(r.height * s)))
            y, x = (side - h) // 2, (side - w) // 2
            sharp[k, v, y:y + h, x:x + w] = np.asarray(r.resize((w, h), Image.Resampling.LANCZOS)) / 255.0
    sharp = np.clip(sharp, 0.0, 1.0)
    return np.stack([ndimage.gaussian_filter(sharp, (0, 0, b, b)) if b > 0 else sharp for b in BLUR], axis=2)


def generate(out, n_samples: int = 3000, seed: int = 0, overwrite: bool = False) -> Dataset:
    """Lowercase Greek letters drawn with replacement (content) in 8 ink colours (style), drifting blur."""
    rng = np.random.default_rng(seed)
    window = sliding_window_view(glyph_bank(rng), (SIZE, SIZE), axis=(-2, -1))  # (letter, var, blur, dy, dx, ...)
    colours = np.array(list(COLOURS.values()))
    splits = {}
    for split, n in split_sizes(n_samples).items():
        content = contents_repeating(rng, n, len(LETTERS), 10)
        style = rng.permutation(np.arange(n) % len(COLOURS))
        variant = rng.integers(0, N_VARIANTS, content.shape)
        # blur level interpolated linearly along the sample between a random start and end level
        ends = rng.uniform(0, len(BLUR) - 1, (n, 2))
        blur = np.rint(ends[:, :1] + (ends[:, 1:] - ends[:, :1]) * np.linspace(0, 1, 10)).astype(np.int64)
        dy, dx = rng.integers(0, 2 * PAD + 1, (2,) + content.shape)
        alpha = window[content, variant, blur, dy, dx]
        ink = colours[style] + rng.integers(-8, 9, (n, 3))
        paper = np.array(PAPER) + rng.integers(-8, 9, (n, 1))
        splits[split] = (composite(alpha, ink, paper, rng), content, style)
    params = {"n_samples": n_samples, "blur_sigmas": BLUR.tolist(), "rotation_deg": 10, "shift_px": PAD}
    return from_arrays(out, splits, kind="image", content_names=list(LETTERS), style_names=list(COLOURS),
                       generator="generalisation.greek", seed=seed, params=params, overwrite=overwrite)


main = cli(generate)

if __name__ == "__main__":
    sys.exit(main())
