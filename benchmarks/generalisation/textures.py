"""Generalisation suite, textures: symbols in one dark ink on a background whose texture is the style.

Each sample is 10 RGB 32x32 fragments. Content is one of 10 symbols (+ x = ? ! # @ & % $ in DejaVu Sans
Bold), each exactly once per sample; style is one of 6 background textures (horizontal stripes,
vertical stripes, checkerboard, polka dots, diagonal hatching, random grain), constant within a
sample. Every texture uses the same two light tones with about half the area in each, and the ink is
the same for all styles, so neither the colour nor the mean brightness of a fragment gives the style
away: it lives only in the spatial pattern of the background. This is the suite's check that a model
can put style somewhere other than the ink. The pattern's phase is random per fragment, and a thin
plain halo around each symbol keeps it readable. Nuisances: symbol scale, +-2 px translation,
per-fragment brightness and Gaussian noise.
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
from common import PAD, SIZE, cli, contents_once, render_glyph, speckle, split_sizes  # noqa: E402

from varinv.data.store import Dataset, from_arrays  # noqa: E402

SS = 4  # glyphs are rendered at 4x and downsampled (anti-aliasing)
SYMBOLS = {"plus": "+", "times": "\u00d7", "equals": "=", "question": "?", "exclamation": "!",
           "hash": "#", "at": "@", "ampersand": "&", "percent": "%", "dollar": "$"}
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
MAX_H, MAX_W = 24.0, 24.0  # px the largest symbol is fitted into; the others keep their relative size
N_VARIANTS = 16  # scale variants per symbol
TEXTURES = ("horizontal stripes", "vertical stripes", "checkerboard", "polka dots", "diagonal hatching", "grain")
PERIOD = 6.0  # px; stripes, checks, dots and hatching share it, so only the pattern's geometry differs
TONES = np.array([[236, 232, 222], [196, 204, 214]], np.float32)  # cream and light blue-grey, for every texture
INK = np.array([35, 35, 45], np.float32)


def symbol_bank(rng: np.random.Generator) -> np.ndarray:
    """(symbol, variant, 2, 36, 36) float32 maps in 0..1: [..., 0] the ink, [..., 1] a plain halo around it."""
    side = SIZE + 2 * PAD
    font = ImageFont.truetype(str(FONT), 48 * SS)
    glyphs = [render_glyph(font, ch) for ch in SYMBOLS.values()]
    base = min(MAX_H / max(g.height for g in glyphs), MAX_W / max(g.width for g in glyphs))
    bank = np.zeros((len(glyphs), N_VARIANTS, 2, side, side), np.float32)
    for k, g in enumerate(glyphs):
        for v in range(N_VARIANTS):
            s = base * rng.uniform(0.88, 1.08)
            w, h = max(1, round(g.width * s)), max(1, round(g.height * s))
            y, x = (side - h) // 2, (side - w) // 2
            bank[k, v, 0, y:y + h, x:x + w] = np.asarray(g.resize((w, h), Image.Resampling.LANCZOS)) / 255.0
    bank[:, :, 0] = np.clip(bank[:, :, 0], 0.0, 1.0)
    # halo: the ink grown by ~2 px with a soft edge, where the texture gives way to the plain first tone
    halo = ndimage.maximum_filter(bank[:, :, 0], size=(1, 1, 5, 5))
    bank[:, :, 1] = np.clip(ndimage.gaussian_filter(halo, sigma=(0, 0, 0.7, 0.7)) * 1.5, 0.0, 1.0)
    return bank


def _square(t: np.ndarray) -> np.ndarray:
    """Anti-aliased square wave of period 1 in 0..1 (a steep clipped sine: sharp edges without jaggies)."""
    return np.clip(0.5 + 3.0 * np.sin(2 * np.pi * t), 0, 1)


def textures(kind: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(P, 32, 32) float32 maps in 0..1 (weight of the second tone) for texture ids ``kind``, random phase each."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32) / PERIOD  # coordinates in periods
    out = np.empty((len(kind), SIZE, SIZE), np.float32)
    for t, name in enumerate(TEXTURES):
        m = np.flatnonzero(kind == t)
        oy, ox = rng.uniform(0, 1, (2, len(m), 1, 1)).astype(np.float32)
        y, x = yy + oy, xx + ox
        if name == "horizontal stripes":
            out[m] = _square(y)
        elif name == "vertical stripes":
            out[m] = _square(x)
        elif name == "checkerboard":
            out[m] = np.clip(0.5 + 3.0 * np.sin(np.pi * x) * np.sin(np.pi * y), 0, 1)
        elif name == "polka dots":  # radius 0.4 period: pi * 0.16 ~ half the area, like the other patterns
            out[m] = np.clip(0.5 + PERIOD * (0.4 - np.hypot(x % 1 - 0.5, y % 1 - 0.5)), 0, 1)
        elif name == "diagonal hatching":
            out[m] = _square((x + y) / np.sqrt(2))
        else:  # grain: independent pixels, half in each tone
            out[m] = rng.random((len(m), SIZE, SIZE), dtype=np.float32) < 0.5
    return out


def generate(out, n_samples: int = 3000, seed: int = 0, overwrite: bool = False) -> Dataset:
    """Symbols (content, each once per sample) in dark ink on 6 two-tone background textures (style)."""
    rng = np.random.default_rng(seed)
    window = sliding_window_view(symbol_bank(rng), (SIZE, SIZE), axis=(-2, -1))  # (sym, var, 2, dy, dx, ...)
    splits = {}
    for split, n in split_sizes(n_samples).items():
        content = contents_once(rng, n, len(SYMBOLS), len(SYMBOLS))
        style = rng.permutation(np.arange(n) % len(TEXTURES))
        variant = rng.integers(0, N_VARIANTS, content.shape)
        dy, dx = rng.integers(0, 2 * PAD + 1, (2,) + content.shape)
        maps = window[content, variant, :, dy, dx]  # (n, L, 2, 32, 32)
        ink, halo = maps[:, :, 0, None], maps[:, :, 1, None]
        tex = textures(np.repeat(style, 10), rng).reshape(n, 10, 1, SIZE, SIZE) * (1 - halo)
        paper, second, dark = (c[:, None, None] for c in (TONES[0], TONES[1], INK))  # broadcast over (3, H, W)
        x = paper + (second - paper) * tex
        x += (dark - x) * ink
        splits[split] = (speckle(x, rng), content, style)
    params = {"n_samples": n_samples, "period_px": PERIOD, "tones": TONES.tolist(), "ink": INK.tolist(),
              "shift_px": PAD}
    return from_arrays(out, splits, kind="image", content_names=list(SYMBOLS), style_names=list(TEXTURES),
                       generator="generalisation.textures", seed=seed, params=params, overwrite=overwrite)


main = cli(generate)

if __name__ == "__main__":
    sys.exit(main())
