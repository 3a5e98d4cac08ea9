"""Generalisation suite, letters: typed capitals A-J where the typeface is the style.

Each sample is 10 RGB 32x32 fragments. Content is the letter A-J, each exactly once per sample; style
is one of 8 font faces shipped with matplotlib (sans, bold, oblique, serif, italic serif, monospace,
Computer Modern roman and typewriter), constant within a sample. Ink and paper are always dark on
light (their exact tones vary per sample but carry no label), so unlike the colour-style domains the
style here lives only in the glyph geometry: stroke weight, slant, serifs and proportions. A model
that only learnt "style = colour" cannot solve it. Nuisances: glyph scale, +-2 px translation,
per-sample ink/paper tone, per-fragment brightness and Gaussian noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageFont

sys.path.insert(0, str(Path(__file__).parent))
from common import PAD, SIZE, cli, composite, contents_once, render_glyph, split_sizes  # noqa: E402

from varinv.data.store import Dataset, from_arrays  # noqa: E402

SS = 4  # glyphs are rendered at 4x and downsampled (anti-aliasing)
LETTERS = "ABCDEFGHIJ"
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = {
    "DejaVu Sans": "DejaVuSans.ttf",
    "DejaVu Sans Bold": "DejaVuSans-Bold.ttf",
    "DejaVu Sans Oblique": "DejaVuSans-Oblique.ttf",
    "DejaVu Serif": "DejaVuSerif.ttf",
    "DejaVu Serif Italic": "DejaVuSerif-Italic.ttf",
    "DejaVu Sans Mono": "DejaVuSansMono.ttf",
    "Computer Modern Roman": "cmr10.ttf",
    "Computer Modern Typewriter": "cmtt10.ttf",
}
CAP, MAX_W = 22.0, 27.0  # nominal cap height and widest glyph, px: every font is normalised to the same size
N_VARIANTS = 16  # scale variants per (letter, font)
INK, PAPER = (30, 30, 38), (238, 234, 224)


def glyph_bank(rng: np.random.Generator) -> np.ndarray:
    """(letter, font, variant, 36, 36) float32 ink maps in 0..1, each variant at a random scale."""
    side = SIZE + 2 * PAD
    bank = np.zeros((len(LETTERS), len(FONTS), N_VARIANTS, side, side), np.float32)
    for f, file in enumerate(FONTS.values()):
        font = ImageFont.truetype(str(FONT_DIR / file), 48 * SS)
        glyphs = [render_glyph(font, ch) for ch in LETTERS]
        # one scale per font from its tallest capital, so letters keep their relative sizes within a font
        base = CAP * SS / max(g.height for g in glyphs)
        for k, g in enumerate(glyphs):
            for v in range(N_VARIANTS):
                s = min(base, MAX_W * SS / g.width) * rng.uniform(0.85, 1.08) / SS
                w, h = max(1, round(g.width * s)), max(1, round(g.height * s))
                y, x = (side - h) // 2, (side - w) // 2
                bank[k, f, v, y:y + h, x:x + w] = np.asarray(g.resize((w, h), Image.Resampling.LANCZOS)) / 255.0
    return np.clip(bank, 0.0, 1.0)


def generate(out, n_samples: int = 3000, seed: int = 0, overwrite: bool = False) -> Dataset:
    """Typed capitals A-J (content, each once per sample) in 8 font faces (style), dark ink on light paper."""
    rng = np.random.default_rng(seed)
    window = sliding_window_view(glyph_bank(rng), (SIZE, SIZE), axis=(-2, -1))  # (letter, font, var, dy, dx, ...)
    splits = {}
    for split, n in split_sizes(n_samples).items():
        content = contents_once(rng, n, len(LETTERS), len(LETTERS))
        style = rng.permutation(np.arange(n) % len(FONTS))
        variant = rng.integers(0, N_VARIANTS, content.shape)
        dy, dx = rng.integers(0, 2 * PAD + 1, (2,) + content.shape)
        alpha = window[content, style[:, None], variant, dy, dx]
        # tone jitter: a common lightness shift plus a slight per-channel tint, drawn per sample
        ink = np.array(INK) + rng.integers(-20, 21, (n, 1)) + rng.integers(-6, 7, (n, 3))
        paper = np.array(PAPER) + rng.integers(-12, 13, (n, 1)) + rng.integers(-6, 7, (n, 3))
        splits[split] = (composite(alpha, ink, paper, rng), content, style)
    params = {"n_samples": n_samples, "fonts": list(FONTS.values()), "cap_px": CAP, "shift_px": PAD}
    return from_arrays(out, splits, kind="image", content_names=list(LETTERS), style_names=list(FONTS),
                       generator="generalisation.letters", seed=seed, params=params, overwrite=overwrite)


main = cli(generate)

if __name__ == "__main__":
    sys.exit(main())
