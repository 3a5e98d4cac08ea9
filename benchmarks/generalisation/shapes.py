"""Generalisation suite, shapes: geometric symbols that repeat within a sample, in 8 colour/fill styles.

Each sample is 10 RGB 32x32 fragments. Content is one of 10 shapes (circle, square, triangle, diamond,
star, cross, hexagon, crescent, arrow, heart) drawn WITH replacement, so a sample usually shows some
shape twice or more and misses others: unlike the contents-once domains, a model cannot lean on "each
class appears exactly once per sample". Style is one of 4 colours x {filled, 3 px outline}, constant
within a sample: half of the style is colour, half is how the shape is drawn. Nuisances: rotation
+-15 deg and size per fragment, +-2 px translation, per-sample tone, per-fragment brightness and noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from common import PAD, SIZE, cli, composite, contents_repeating, split_sizes  # noqa: E402

from varinv.data.store import Dataset, from_arrays  # noqa: E402

SS = 4  # shapes are drawn at 4x and downsampled (anti-aliasing)
RADIUS, OUTLINE = 11.0, 3  # nominal shape radius and outline width, px
N_VARIANTS = 32  # rotation/size variants per (shape, fill)
COLOURS = {"red": (200, 35, 35), "blue": (35, 70, 200), "green": (25, 140, 55), "orange": (235, 130, 20)}
FILLS = ("filled", "outline")
STYLE_NAMES = [f"{c} {f}" for c in COLOURS for f in FILLS]  # style = colour * 2 + fill
PAPER = (240, 240, 236)


def _ring(n: int, r: float = 1.0, start: float = -90.0) -> np.ndarray:
    a = np.radians(start + 360.0 * np.arange(n) / n)
    return r * np.stack([np.cos(a), np.sin(a)], 1)


def _arc(cx: float, r: float, a0: float, a1: float, n: int = 40) -> np.ndarray:
    a = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + r * np.cos(a), r * np.sin(a)], 1)


def _shapes() -> dict[str, np.ndarray]:
    """Closed polygons in unit coordinates (y down), all about radius 1 around the origin."""
    t = np.linspace(0, 2 * np.pi, 80, endpoint=False)
    star = _ring(10) * np.where(np.arange(10) % 2, 0.42, 1.0)[:, None]
    return {
        "circle": _ring(64, 0.95),
        "square": np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]]),
        "triangle": _ring(3, 1.1, -90) + [0, 0.2],
        "diamond": np.array([[0, -1.05], [0.7, 0], [0, 1.05], [-0.7, 0]]),
        "star": star,
        "cross": np.array([[-.3, -1], [.3, -1], [.3, -.3], [1, -.3], [1, .3], [.3, .3], [.3, 1], [-.3, 1],
                           [-.3, .3], [-1, .3], [-1, -.3], [-.3, -.3]]),
        "hexagon": _ring(6, 1.0, 0),
        # outer circle minus a circle of radius 0.9 centred at x = 0.5 (they cross at x = 0.44)
        "crescent": np.concatenate([_arc(0, 1.0, 63.9, 296.1), _arc(0.5, 0.9, 266.2, 93.8)]),
        "arrow": np.array([[-.9, -.25], [.1, -.25], [.1, -.7], [.9, 0], [.1, .7], [.1, .25], [-.9, .25]]),
        "heart": np.stack([16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t)
                                                 - np.cos(4 * t)) - 2.5], 1) / 16.5,
    }


SHAPES = _shapes()


def shape_bank(rng: np.random.Generator) -> np.ndarray:
    """(shape, fill, variant, 36, 36) float32 ink maps in 0..1: random rotation and size per variant."""
    side = SIZE + 2 * PAD
    bank = np.zeros((len(SHAPES), len(FILLS), N_VARIANTS, side, side), np.float32)
    for k, poly in enumerate(SHAPES.values()):
        for v in range(N_VARIANTS):
            a = np.radians(rng.uniform(-15, 15))
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            pts = poly @ rot.T * RADIUS * rng.uniform(0.8, 1.1) * SS + side * SS / 2
            pts = [tuple(p) for p in pts]
            for f, fill in enumerate(FILLS):
                im = Image.new("L", (side * SS, side * SS), 0)
                draw = ImageDraw.Draw(im)
                if fill == "filled":
                    draw.polygon(pts, fill=255)
                else:  # wrap past the start so the first corner gets a round joint too
                    draw.line(pts + pts[:2], fill=255, width=OUTLINE * SS, joint="curve")
                bank[k, f, v] = np.asarray(im.resize((side, side), Image.Resampling.BOX)) / 255.0
    return bank


def generate(out, n_samples: int = 3000, seed: int = 0, overwrite: bool = False) -> Dataset:
    """Geometric shapes drawn with replacement (content) in 4 colours x filled/outline (style)."""
    rng = np.random.default_rng(seed)
    window = sliding_window_view(shape_bank(rng), (SIZE, SIZE), axis=(-2, -1))  # (shape, fill, var, dy, dx, ...)
    colours = np.array(list(COLOURS.values()))
    splits = {}
    for split, n in split_sizes(n_samples).items():
        content = contents_repeating(rng, n, len(SHAPES), 10)
        style = rng.permutation(np.arange(n) % len(STYLE_NAMES))
        colour, fill = np.divmod(style, len(FILLS))
        variant = rng.integers(0, N_VARIANTS, content.shape)
        dy, dx = rng.integers(0, 2 * PAD + 1, (2,) + content.shape)
        alpha = window[content, fill[:, None], variant, dy, dx]
        ink = colours[colour] + rng.integers(-10, 11, (n, 3))
        paper = np.array(PAPER) + rng.integers(-10, 11, (n, 1))
        splits[split] = (composite(alpha, ink, paper, rng), content, style)
    params = {"n_samples": n_samples, "radius_px": RADIUS, "outline_px": OUTLINE, "rotation_deg": 15, "shift_px": PAD}
    return from_arrays(out, splits, kind="image", content_names=list(SHAPES), style_names=STYLE_NAMES,
                       generator="generalisation.shapes", seed=seed, params=params, overwrite=overwrite)


main = cli(generate)

if __name__ == "__main__":
    sys.exit(main())
