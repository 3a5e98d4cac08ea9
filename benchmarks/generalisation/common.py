"""What every generalisation-suite generator shares: seeded splits by sample, label draws, the image
domains' glyph rendering and compositing, the audio domains' split loop, the CLI.

Each domain is one script beside this file with ``generate(out, n_samples, seed, overwrite) -> Dataset``
that writes through the public ``varinv.data.store.from_arrays`` only, and ``main = cli(generate)``.
Run one as ``python benchmarks/generalisation/<domain>.py --out data/gen/<domain> [--size N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from varinv.audio.features import HOP, LOG_EPS, N_FFT, SR

SPLITS = ("train", "val", "test")
FRACTIONS = (0.8, 0.1, 0.1)
SIZE, PAD = 32, 2  # image fragment side; bank canvases are SIZE + 2 * PAD so a crop can shift by +-PAD


def split_sizes(n: int) -> dict[str, int]:
    """Samples per split (80/10/10, at least 2 each so every split has across-sample statistics)."""
    if n < 6:
        raise ValueError(f"need at least 6 samples for train/val/test, got {n}")
    n_val = max(2, int(round(n * FRACTIONS[1])))
    n_test = max(2, int(round(n * FRACTIONS[2])))
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def contents_once(rng: np.random.Generator, n: int, n_classes: int, length: int) -> np.ndarray:
    """(n, length) content labels, each sample a random arrangement of distinct classes (length <= n_classes)."""
    return np.stack([rng.permutation(n_classes)[:length] for _ in range(n)]).astype(np.int64)


def contents_repeating(rng: np.random.Generator, n: int, n_classes: int, length: int) -> np.ndarray:
    """(n, length) content labels drawn with replacement, so contents repeat within a sample (as real data does)."""
    return rng.integers(0, n_classes, size=(n, length)).astype(np.int64)


def render_glyph(font: ImageFont.FreeTypeFont, ch: str) -> Image.Image:
    """High-resolution ink mask of ``ch`` cropped to its ink (an empty glyph would silently be blank)."""
    im = Image.new("L", (3 * font.size, 3 * font.size), 0)
    ImageDraw.Draw(im).text((font.size, font.size // 2), ch, font=font, fill=255)
    box = im.getbbox()
    if box is None:
        raise ValueError(f"{font.path} renders no ink for {ch!r}")
    return im.crop(box)


def speckle(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 of float32 images (N, L, C, H, W) plus a per-fragment brightness offset and Gaussian noise of a
    per-sample strength, so no two fragments are pixel-identical (``x`` is modified in place)."""
    n, length = x.shape[:2]
    x += rng.uniform(-10, 10, size=(n, length, 1, 1, 1)).astype(np.float32)
    x += rng.standard_normal(x.shape, dtype=np.float32) * rng.uniform(2, 6, size=(n, 1, 1, 1, 1)).astype(np.float32)
    return np.rint(np.clip(x, 0, 255)).astype(np.uint8)


def composite(alpha: np.ndarray, ink: np.ndarray, paper: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, L, 3, H, W): per-sample ink (N, 3) over paper (N, 3) by alpha (N, L, H, W), then ``speckle``."""
    ink, paper = (c.astype(np.float32)[:, None, :, None, None] for c in (ink, paper))
    return speckle(paper + (ink - paper) * alpha[:, :, None], rng)


def compose(pool: np.ndarray, index: np.ndarray, rng: np.random.Generator, chunk: int = 256) -> np.ndarray:
    """(N, L, 1, F, T) float16 log-magnitudes of the audio domains' pool entries ``index`` (N, L) (pool: linear
    magnitudes (P, F, T)) with per-fragment variation: gain, a delay of 0-2 frames, a faint noise floor."""
    n, length = index.shape
    gain = 10 ** (rng.uniform(-6, 6, (n, length)) / 20)
    shift = rng.integers(0, 3, (n, length))
    # Rayleigh scale of the |STFT| of white noise of std sigma under a Hann-1024 window: sigma * sqrt(384 / 2)
    noise = 10 ** rng.uniform(-4, -3, (n, length)) * np.sqrt(192)
    x = np.empty((n, length, 1, *pool.shape[1:]), np.float16)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        m = pool[index[a:b]] * gain[a:b, :, None, None].astype(np.float32)
        for k in range(1, 3):  # a delay of k frames = the onset k hops later; the gap is silence
            sel = shift[a:b] == k
            m[sel] = np.concatenate([np.zeros_like(m[sel][..., :k]), m[sel][..., :-k]], axis=-1)
        floor = rng.rayleigh(1.0, m.shape).astype(np.float32) * noise[a:b, :, None, None].astype(np.float32)
        x[a:b, :, 0] = np.log(np.sqrt(m**2 + floor**2) + LOG_EPS)
    return x


def audio_params(n_bins: int, domain: dict) -> dict:
    """A spectrogram domain's manifest params: the feature and ``compose``'s per-fragment variation around
    the ``domain``'s own entries (kept here so they cannot drift from what ``compose`` does)."""
    feature = {"sr": SR, "n_fft": N_FFT, "hop": HOP, "n_bins": n_bins, "bin_hz": SR / N_FFT,
               "feature": f"log(|STFT| + 1e-5), hann, center=True, low {n_bins} bins of a 1-s fragment"}
    return feature | domain | {"fragment_gain_db": 6, "fragment_delay_frames": [0, 2], "noise_std": [1e-4, 1e-3]}


def held_out(n_variations: int) -> dict[str, np.ndarray | list[int]]:
    """Pool variations per split: the last two are val's and test's only, so they hear unseen renderings."""
    return {"train": np.arange(n_variations - 2), "val": [n_variations - 2], "test": [n_variations - 1]}


def audio_splits(pool: np.ndarray, sizes: dict[str, int], variations: dict, n_styles: int, n_contents: int,
                 length: int, draw_contents, entropy: tuple[int, ...], first: int = 0) -> dict[str, tuple]:
    """{split: (x, content, style)} for an audio domain whose ``pool`` is flat-indexed (style, content, variation).

    Each split has its own generator ``default_rng([*entropy, first + k])`` (k: split number), so a split's
    draws do not depend on the others' sizes; ``draw_contents`` is ``contents_once`` or ``contents_repeating``.
    """
    n_variations, rest = divmod(len(pool), n_styles * n_contents)
    if rest:
        raise ValueError(f"pool of {len(pool)} is not {n_styles} styles x {n_contents} contents x variations")
    splits = {}
    for k, (name, n) in enumerate(sizes.items()):
        rng = np.random.default_rng([*entropy, first + k])
        style = rng.permutation(np.arange(n) % n_styles).astype(np.int64)  # balanced styles
        content = draw_contents(rng, n, n_contents, length)
        var = rng.choice(variations[name], size=(n, length))
        x = compose(pool, (style[:, None] * n_contents + content) * n_variations + var, rng)
        splits[name] = (x, content, style)
    return splits


def cli(generate, default_size: int = 3000):
    """A ``main()`` for a domain script: ``--out DIR [--size N] [--seed S] [--overwrite]``."""

    def main(argv=None) -> int:
        p = argparse.ArgumentParser(description=(generate.__doc__ or "").strip().splitlines()[0])
        p.add_argument("--out", required=True, type=Path)
        p.add_argument("--size", type=int, default=default_size, help="samples over train/val/test")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--overwrite", action="store_true")
        a = p.parse_args(argv)
        ds = generate(a.out, n_samples=a.size, seed=a.seed, overwrite=a.overwrite)
        print(f"{a.out}: {ds.n_fragments} fragments of {tuple(ds.fragment_shape)}, "
              f"{len(ds.content_names)} contents, {len(ds.style_names)} styles")
        return 0

    return main


if __name__ == "__main__":
    sys.exit("run a domain script, e.g. python benchmarks/generalisation/handwriting.py --out data/gen/handwriting")
