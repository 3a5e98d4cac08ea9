"""PhoneNums: rows of 10 hand-written-looking digits, one colour per row.

Each sample is one row of 10 patches (48 high x 32 wide, RGB, uint8); the row holds every digit 0-9
exactly once in a shuffled order. The content label of a patch is its digit, the style label of a row
is its colour index. Training rows use 8 colours (black, blue, green, red, teal, purple, orange,
brown); the OOD splits use 8 unseen ones (pink, salmon, gold, lime, cyan, magenta, gray, peru).

Variation (all drawn from one seeded generator, so the same seed gives byte-identical arrays):

* glyphs from the open-licence hand-writing font *Shadows Into Light* (shipped in the PyPI package
  ``handwriting-generator``), each digit warped by a random affine map (scale, aspect, rotation,
  shear) and stroke weight; a bank of ``N_VARIANTS`` warped variants per digit is rendered once at 4x
  resolution and box-filtered down;
* a sub-pixel position jitter of every patch (up to +-``SHIFT_MAX`` px in x and y);
* a per-row jitter of the foreground colour (colour channel ``c`` in 0..1 maps to ``int(c*240+8)``
  as in the reference code, plus a few levels) and of the background (about 245);
* a blur that changes gradually along the row: Gaussian sigma interpolated linearly across the 10
  patches from a random start to a random end value in ``[0, BLUR_MAX]``;
* Gaussian noise with a per-row std of ``U(0,1) * NOISE_MAX`` levels, added in float and clipped to
  0..255 (no uint8 wrap-around, unlike the reference code).

The shift and the blur are one separable linear map per patch (``Gy @ A @ Gx.T``), applied to the
ink mask only: the background and ink colours are constant within a patch, so blurring the composite
equals compositing the blurred mask. This keeps 10,000 rows well under 30 s on one core.

Splits: ``train``/``val``/``test`` (80/10/10 of ``n_rows``, colours balanced within every split) and,
with ``ood=True``, ``ood_test`` plus nested ``ood_1shot`` c ``ood_5shot`` c ``ood_10shot`` (1/5/10 rows
per OOD colour, disjoint from ``ood_test``). OOD style labels index into ``OOD_STYLE_NAMES``.

Longer than our ~450-line guide on purpose: the glyph bank, the rendering and the splits draw in turn
from one seeded generator, and the byte-identical output rests on that order, which one module keeps
in view.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from varinv.data.store import Dataset, Split, from_arrays, open_dataset
from varinv.errors import DataError

__all__ = [
    "COLOURS",
    "OOD_COLOURS",
    "STYLE_NAMES",
    "OOD_STYLE_NAMES",
    "CONTENT_NAMES",
    "GlyphBank",
    "find_handwriting_font",
    "make_bank",
    "render_rows",
    "generate",
    "preview",
]

# Matplotlib / CSS4 named colours, as RGB in 0..1 (rendered as int(c * 240 + 8)).
COLOURS: dict[str, tuple[float, float, float]] = {
    "black": (0.0, 0.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "green": (0.0, 128 / 255, 0.0),
    "red": (1.0, 0.0, 0.0),
    "teal": (0.0, 128 / 255, 128 / 255),
    "purple": (128 / 255, 0.0, 128 / 255),
    "orange": (1.0, 165 / 255, 0.0),
    "brown": (165 / 255, 42 / 255, 42 / 255),
}
OOD_COLOURS: dict[str, tuple[float, float, float]] = {
    "pink": (1.0, 192 / 255, 203 / 255),
    "salmon": (250 / 255, 128 / 255, 114 / 255),
    "gold": (1.0, 215 / 255, 0.0),
    "lime": (0.0, 1.0, 0.0),
    "cyan": (0.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
    "gray": (128 / 255, 128 / 255, 128 / 255),
    "peru": (205 / 255, 133 / 255, 63 / 255),
}
STYLE_NAMES = list(COLOURS)
OOD_STYLE_NAMES = list(OOD_COLOURS)
CONTENT_NAMES = [str(d) for d in range(10)]

# Geometry.
N_DIGITS = 10
PATCH_H, PATCH_W = 48, 32
MARGIN = 3  # bank canvases are (PATCH_H + 2*MARGIN, PATCH_W + 2*MARGIN) so shifted crops stay inside
SUPERSAMPLE = 4  # glyph variants are rendered at 4x and box-filtered down (anti-aliasing)
GLYPH_HEIGHT = 35.0  # nominal digit height in patch pixels (before the random scale)
GLYPH_MAX_WIDTH = 26.0  # cap on the nominal width
N_VARIANTS = 64  # warped variants per digit in the bank
SHIFT_MAX = 2.0  # per-patch position jitter, +- px (continuous, so sub-pixel)

# Photometric variation.
BACKGROUND = 245
BG_JITTER = 3  # per-row common offset, +- levels
BG_CHANNEL_JITTER = 2  # per-row per-channel offset, +- levels
FG_JITTER = 3  # per-row per-channel offset of the ink colour, +- levels
BLUR_MAX = 1.5  # Gaussian sigma (px) of the gradual blur lies in [0, BLUR_MAX]
BLUR_FLOOR = 0.4  # always-on sigma that makes the sub-pixel shift an interpolation
NOISE_MAX = 8.0  # per-row noise std = U(0, 1) * NOISE_MAX levels

# Random warp of the glyphs: (scale range, aspect range, rotation deg, shear, translation px).
WOBBLE = {"scale": (0.86, 1.06), "aspect": (0.9, 1.1), "rotate": 7.0, "shear": 0.18, "translate": 0.8}
# Stronger wobble for the non-hand-written fallback font.
WOBBLE_FALLBACK = {"scale": (0.8, 1.0), "aspect": (0.85, 1.1), "rotate": 12.0, "shear": 0.3, "translate": 1.0}

CHUNK_ROWS = 128  # rows rendered per step (fixed: the random stream depends on it)

FONT_FILE = "ShadowsIntoLight.ttf"
_INSTALL_HINT = "install it with `pip install handwriting-generator` to get hand-written glyphs"


# --------------------------------------------------------------------------------------------------
# Fonts and the glyph bank


def find_handwriting_font() -> Path | None:
    """Path of ShadowsIntoLight.ttf inside the installed ``handwriting_generator`` package, or None."""
    try:
        spec = importlib.util.find_spec("handwriting_generator")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = [Path(p) for p in (spec.submodule_search_locations or [])]
    if not roots and spec.origin:
        roots = [Path(spec.origin).parent]
    for root in roots:
        preferred = root / "fonts" / FONT_FILE
        if preferred.is_file():
            return preferred
        found = sorted(p for p in root.rglob("*.ttf") if p.is_file())
        for p in found:
            if p.name.lower() == FONT_FILE.lower():
                return p
        if found:
            return found[0]
    return None


def _fallback_font() -> Path:
    from matplotlib import font_manager

    return Path(font_manager.findfont("DejaVu Sans"))


def _resolve_font(font_path: str | Path | None) -> tuple[Path, bool]:
    """(font file, is_fallback). Warns once when the hand-writing font is missing."""
    if font_path is not None:
        p = Path(font_path)
        if not p.is_file():
            raise DataError(f"font_path {p} does not exist; pass a .ttf/.otf file or leave font_path=None")
        return p, False
    found = find_handwriting_font()
    if found is not None:
        return found, False
    fb = _fallback_font()
    warnings.warn(
        f"PhoneNums: the hand-writing font {FONT_FILE} (package `handwriting-generator`) was not found; "
        f"falling back to {fb.name} with a stronger random wobble. {_INSTALL_HINT[0].upper()}{_INSTALL_HINT[1:]}.",
        UserWarning,
        stacklevel=3,
    )
    return fb, True


@dataclass
class GlyphBank:
    """Warped ink masks: ``masks[d, v]`` is a float32 (PATCH_H+2M, PATCH_W+2M) alpha map of digit d."""

    masks: np.ndarray
    font: Path
    fallback: bool

    @property
    def n_variants(self) -> int:
        return int(self.masks.shape[1])


def _render_glyphs(font: Path) -> list:
    """High-resolution ink masks (PIL 'L' images, cropped to the ink) of the digits 0-9."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        pil_font = ImageFont.truetype(str(font), size=48 * SUPERSAMPLE)
    except OSError as e:
        raise DataError(f"cannot load the font {font} ({e}); pass a valid .ttf/.otf as font_path") from None
    size = 6 * 48 * SUPERSAMPLE
    glyphs = []
    for d in range(N_DIGITS):
        im = Image.new("L", (size, size), 0)
        ImageDraw.Draw(im).text((size // 4, size // 4), str(d), font=pil_font, fill=255)
        box = im.getbbox()
        if box is None:
            raise DataError(f"the font {font} has no glyph for the digit {d}; pass another font as font_path")
        glyphs.append(im.crop(box))
    return glyphs


def make_bank(
    rng: np.random.Generator,
    font_path: str | Path | None = None,
    n_variants: int = N_VARIANTS,
) -> GlyphBank:
    """Render ``n_variants`` randomly warped variants of every digit (deterministic given ``rng``)."""
    from PIL import Image, ImageFilter

    if n_variants < 1:
        raise DataError(f"n_variants must be >= 1, got {n_variants}")
    font, fallback = _resolve_font(font_path)
    wob = WOBBLE_FALLBACK if fallback else WOBBLE
    glyphs = _render_glyphs(font)
    ss = SUPERSAMPLE
    bh, bw = PATCH_H + 2 * MARGIN, PATCH_W + 2 * MARGIN
    hi_w, hi_h = bw * ss, bh * ss
    weights = [None, ImageFilter.MaxFilter(3), ImageFilter.MaxFilter(5)]
    masks = np.empty((N_DIGITS, n_variants, bh, bw), np.float32)
    for d, g in enumerate(glyphs):
        gw, gh = g.size
        base = min(GLYPH_HEIGHT * ss / gh, GLYPH_MAX_WIDTH * ss / gw)
        thick = [g if f is None else g.filter(f) for f in weights]
        for v in range(n_variants):
            scale = base * rng.uniform(*wob["scale"])
            aspect = rng.uniform(*wob["aspect"])
            theta = math.radians(rng.uniform(-wob["rotate"], wob["rotate"]))
            shear = rng.uniform(-wob["shear"], wob["shear"])
            tx, ty = rng.uniform(-wob["translate"], wob["translate"], size=2) * ss
            weight = int(rng.integers(0, len(weights)))
            # forward map: glyph centre -> scale/aspect -> shear -> rotate -> canvas centre + t
            to_origin = np.array([[1, 0, -gw / 2], [0, 1, -gh / 2], [0, 0, 1]], float)
            scl = np.diag([scale * aspect, scale / aspect, 1.0])
            shr = np.array([[1, shear, 0], [0, 1, 0], [0, 0, 1]], float)
            c, s = math.cos(theta), math.sin(theta)
            rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], float)
            to_canvas = np.array([[1, 0, hi_w / 2 + tx], [0, 1, hi_h / 2 + ty], [0, 0, 1]], float)
            inv = np.linalg.inv(to_canvas @ rot @ shr @ scl @ to_origin)
            warped = thick[weight].transform(
                (hi_w, hi_h), Image.Transform.AFFINE, data=tuple(inv[:2].ravel()), resample=Image.Resampling.BILINEAR
            )
            small = warped.resize((bw, bh), Image.Resampling.BOX)
            masks[d, v] = np.asarray(small, np.float32) / 255.0
    return GlyphBank(masks=masks, font=font, fallback=fallback)


# --------------------------------------------------------------------------------------------------
# Rendering


_NORMAL_TABLE: np.ndarray | None = None


def _gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard-normal float32 noise by inverse-CDF lookup of 16-bit uniforms (3x faster than
    ``rng.standard_normal``; quantised to 65,536 levels, tails cut at |z| = 4.3 - far below one
    intensity level after scaling by std <= 8)."""
    global _NORMAL_TABLE
    if _NORMAL_TABLE is None:
        from scipy.special import ndtri

        _NORMAL_TABLE = ndtri((np.arange(65536) + 0.5) / 65536).astype(np.float32)
    idx = np.frombuffer(rng.bytes(2 * math.prod(shape)), dtype="<u2")
    return _NORMAL_TABLE[idx].reshape(shape)


def _shift_blur_matrices(n_out: int, n_in: int, shift: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(P, n_out, n_in) rows of normalised Gaussian weights centred at ``i + MARGIN - shift``."""
    centre = np.arange(n_out, dtype=np.float32)[None, :, None] + np.float32(MARGIN) - shift[:, None, None]
    dist = np.arange(n_in, dtype=np.float32)[None, None, :] - centre
    w = np.exp(dist * dist * (-0.5 / (sigma * sigma))[:, None, None])
    w /= w.sum(axis=2, keepdims=True)
    return w


def render_rows(
    digits: np.ndarray,
    colours: np.ndarray,
    rng: np.random.Generator,
    *,
    bank: GlyphBank | None = None,
    font_path: str | Path | None = None,
    noise_max: float = NOISE_MAX,
    blur_max: float = BLUR_MAX,
) -> np.ndarray:
    """Render rows of digit patches.

    ``digits`` is (n, L) ints in 0..9, ``colours`` is (n, 3) RGB in 0..1 (one ink colour per row).
    Returns uint8 (n, L, 3, 48, 32). Without ``bank`` one is built from ``rng`` (and ``font_path``).
    The random draws do not depend on ``noise_max``/``blur_max``, so ``noise_max=0`` renders the
    noise-free version of the same rows from the same ``rng`` state.
    """
    digits = np.asarray(digits)
    colours = np.asarray(colours, dtype=np.float64)
    if digits.ndim != 2 or not np.issubdtype(digits.dtype, np.integer):
        raise DataError(f"digits must be an (n, L) integer array, got shape {digits.shape} dtype {digits.dtype}")
    if digits.size and (digits.min() < 0 or digits.max() > 9):
        raise DataError("digits must lie in 0..9")
    n, length = digits.shape
    if colours.shape != (n, 3):
        raise DataError(f"colours must be (n, 3) = {(n, 3)} RGB values in 0..1, got shape {colours.shape}")
    if colours.size and (colours.min() < 0 or colours.max() > 1):
        raise DataError("colours must be RGB values in 0..1 (e.g. COLOURS['blue'])")
    if noise_max < 0 or blur_max < 0:
        raise DataError(f"noise_max and blur_max must be >= 0, got {noise_max} and {blur_max}")
    if bank is None:
        bank = make_bank(rng, font_path)

    # per-row and per-patch draws (all drawn up front, in a fixed order)
    variant = rng.integers(0, bank.n_variants, size=(n, length))
    shift = rng.uniform(-SHIFT_MAX, SHIFT_MAX, size=(n, length, 2)).astype(np.float32)
    blur_ends = rng.uniform(0.0, 1.0, size=(n, 2)) * blur_max
    noise_std = rng.uniform(0.0, 1.0, size=n) * noise_max
    fg_jit = rng.integers(-FG_JITTER, FG_JITTER + 1, size=(n, 3))
    bg_jit = rng.integers(-BG_JITTER, BG_JITTER + 1, size=(n, 1)) + rng.integers(
        -BG_CHANNEL_JITTER, BG_CHANNEL_JITTER + 1, size=(n, 3)
    )
    noise = _gaussian_noise(rng, (n, length, 3, PATCH_H, PATCH_W))

    fg = np.clip(np.floor(colours * 240 + 8) + fg_jit, 0, 255).astype(np.float32)  # (n, 3)
    bg = np.clip(BACKGROUND + bg_jit, 0, 255).astype(np.float32)  # (n, 3)
    t = np.linspace(0.0, 1.0, length)[None, :]
    sigma = blur_ends[:, :1] + (blur_ends[:, 1:] - blur_ends[:, :1]) * t  # (n, L), linear along the row
    sigma_eff = np.sqrt(sigma * sigma + BLUR_FLOOR**2).astype(np.float32).reshape(-1)

    bh, bw = bank.masks.shape[2:]
    src = bank.masks[digits.reshape(-1), variant.reshape(-1)]  # (P, bh, bw)
    gy = _shift_blur_matrices(PATCH_H, bh, shift[..., 0].reshape(-1), sigma_eff)
    gx = _shift_blur_matrices(PATCH_W, bw, shift[..., 1].reshape(-1), sigma_eff)
    alpha = np.einsum("pij,pjk,plk->pil", gy, src, gx, optimize=True).reshape(n, length, 1, PATCH_H, PATCH_W)

    # composite: bg + (fg - bg) * alpha + noise, in place; +0.5 then truncation rounds to nearest
    noise *= noise_std.astype(np.float32)[:, None, None, None, None]
    noise += (bg + 0.5)[:, None, :, None, None]
    out = np.multiply((fg - bg)[:, None, :, None, None], alpha)
    out += noise
    np.clip(out, 0.0, 255.99, out=out)  # clip in float: no uint8 wrap-around
    return out.astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Dataset generation


def _balanced_colours(n: int, n_colours: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % n_colours)


def _shuffled_digits(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permuted(np.tile(np.arange(N_DIGITS), (n, 1)), axis=1)


def _render_many(
    digits: np.ndarray,
    colour_idx: np.ndarray,
    palette: dict[str, tuple[float, float, float]],
    rng: np.random.Generator,
    bank: GlyphBank,
    advance,
) -> np.ndarray:
    rgb = np.array(list(palette.values()), dtype=np.float64)
    out = np.empty((len(digits), N_DIGITS, 3, PATCH_H, PATCH_W), np.uint8)
    for start in range(0, len(digits), CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, len(digits))
        out[start:stop] = render_rows(digits[start:stop], rgb[colour_idx[start:stop]], rng, bank=bank)
        advance(stop - start)
    return out


def generate(
    out: str | Path,
    n_rows: int = 10000,
    seed: int = 0,
    *,
    ood: bool = True,
    n_ood_test: int | None = None,
    font_path: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Dataset:
    """Generate PhoneNums into ``out`` (a dataset folder, see ``varinv.data.store``) and open it.

    ``n_rows`` rows are split 80/10/10 into train/val/test; with ``ood`` the OOD colours add
    ``ood_test`` (``n_ood_test`` rows, default ``max(8, n_rows // 10)``) and the nested
    ``ood_1shot``/``ood_5shot``/``ood_10shot`` splits (1/5/10 rows per OOD colour).
    """
    out = Path(out)
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 10:
        raise DataError(f"n_rows must be an integer >= 10 (80/10/10 split needs a row per split), got {n_rows!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if n_ood_test is None:
        n_ood_test = max(8, n_rows // 10)
    if isinstance(n_ood_test, bool) or not isinstance(n_ood_test, (int, np.integer)) or n_ood_test < 1:
        raise DataError(f"n_ood_test must be a positive integer (or None for max(8, n_rows // 10)), got {n_ood_test!r}")
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) or choose another path")
    n_rows, seed, n_ood_test = int(n_rows), int(seed), int(n_ood_test)

    n_val = n_test = max(1, round(0.1 * n_rows))
    n_train = n_rows - n_val - n_test
    # independent streams: the in-distribution rows do not depend on `ood` or `n_ood_test`
    bank_ss, id_ss, ood_ss = np.random.SeedSequence(seed).spawn(3)
    bank = make_bank(np.random.default_rng(bank_ss), font_path)
    rng_id = np.random.default_rng(id_ss)
    rng_ood = np.random.default_rng(ood_ss)

    sizes = {"train": n_train, "val": n_val, "test": n_test}
    style_id = np.concatenate([_balanced_colours(k, len(COLOURS), rng_id) for k in sizes.values()])
    digits_id = _shuffled_digits(n_rows, rng_id)
    n_shot_pool = 10 * len(OOD_COLOURS)
    if ood:
        # the shot pool cycles through the colours, so its first k*8 rows hold k rows per colour
        style_ood = np.concatenate(
            [np.arange(n_shot_pool) % len(OOD_COLOURS), _balanced_colours(n_ood_test, len(OOD_COLOURS), rng_ood)]
        )
        digits_ood = _shuffled_digits(len(style_ood), rng_ood)
    total = n_rows + (len(style_ood) if ood else 0)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.progress import TimeRemainingColumn

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("PhoneNums", total=total)

        def advance(k: int) -> None:
            bar.advance(task, k)

        x_id = _render_many(digits_id, style_id, COLOURS, rng_id, bank, advance)
        if ood:
            x_ood = _render_many(digits_ood, style_ood, OOD_COLOURS, rng_ood, bank, advance)

    splits: dict = {}
    start = 0
    for name, k in sizes.items():
        sl = slice(start, start + k)
        splits[name] = (x_id[sl], digits_id[sl], style_id[sl])
        start += k
    split_style_names = None
    if ood:
        for k in (1, 5, 10):
            sl = slice(0, k * len(OOD_COLOURS))
            splits[f"ood_{k}shot"] = (x_ood[sl], digits_ood[sl], style_ood[sl])
        sl = slice(n_shot_pool, None)
        splits["ood_test"] = (x_ood[sl], digits_ood[sl], style_ood[sl])
        split_style_names = {name: OOD_STYLE_NAMES for name in splits if name.startswith("ood_")}

    params = {
        "n_rows": n_rows,
        "split_sizes": {name: int(len(s[1])) for name, s in splits.items()},
        "ood": bool(ood),
        "n_ood_test": n_ood_test if ood else 0,
        "font": bank.font.name,
        "font_fallback": bank.fallback,
        "font_path_given": font_path is not None,
        "patch_hw": [PATCH_H, PATCH_W],
        "n_variants": bank.n_variants,
        "glyph_height": GLYPH_HEIGHT,
        "glyph_max_width": GLYPH_MAX_WIDTH,
        "wobble": WOBBLE_FALLBACK if bank.fallback else WOBBLE,
        "shift_max": SHIFT_MAX,
        "background": BACKGROUND,
        "bg_jitter": BG_JITTER,
        "bg_channel_jitter": BG_CHANNEL_JITTER,
        "fg_jitter": FG_JITTER,
        "colour_map": "int(c*240+8)",
        "blur_max": BLUR_MAX,
        "blur_floor": BLUR_FLOOR,
        "noise_max": NOISE_MAX,
        "chunk_rows": CHUNK_ROWS,
        "colours": {k: list(v) for k, v in COLOURS.items()},
        "ood_colours": {k: list(v) for k, v in OOD_COLOURS.items()} if ood else {},
    }
    return from_arrays(
        out,
        splits,
        kind="image",
        content_names=CONTENT_NAMES,
        style_names=STYLE_NAMES,
        split_style_names=split_style_names,
        generator="varinv.data.phonenums",
        seed=seed,
        params=params,
        overwrite=overwrite,
    )


# --------------------------------------------------------------------------------------------------
# Preview


def preview(
    dataset_or_split: Dataset | Split | np.ndarray | str | Path,
    out_png: str | Path,
    n_rows: int = 8,
    *,
    split: str = "train",
    scale: int = 1,
) -> Path:
    """Write a PNG of the first ``n_rows`` rows (each row = its patches side by side, 320x48 for
    PhoneNums), stacked vertically. Accepts a Dataset (its ``split``), a Split, a dataset folder or an
    (N, L, 3, H, W) uint8 array. ``scale`` enlarges the picture by an integer factor."""
    from PIL import Image

    if isinstance(dataset_or_split, (str, Path)):
        dataset_or_split = open_dataset(dataset_or_split)
    if isinstance(dataset_or_split, Dataset):
        dataset_or_split = dataset_or_split.split(split)
    x = dataset_or_split.x if isinstance(dataset_or_split, Split) else dataset_or_split
    x = np.asarray(x[:n_rows])
    if x.ndim != 5 or x.shape[2] not in (1, 3) or x.dtype != np.uint8:
        raise DataError(f"preview needs uint8 image rows (N, L, 1|3, H, W), got shape {x.shape} dtype {x.dtype}")
    if len(x) == 0 or n_rows < 1:
        raise DataError("preview needs at least one row; pass n_rows >= 1 and a non-empty split")
    n, length, c, h, w = x.shape
    grid = x.transpose(0, 3, 1, 4, 2).reshape(n * h, length * w, c)  # (n*H, L*W, C)
    if c == 1:
        grid = np.repeat(grid, 3, axis=2)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(grid)).save(out_png)
    return out_png
