"""What every generalisation-suite generator shares: seeded splits by sample, label draws, the CLI.

Each domain is one script beside this file with ``generate(out, n_samples, seed, overwrite) -> Dataset``
that writes through the public ``varinv.data.store.from_arrays`` only, and ``main = cli(generate)``.
Run one as ``python benchmarks/generalisation/<domain>.py --out data/gen/<domain> [--size N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from varinv.audio.features import LOG_EPS

SPLITS = ("train", "val", "test")
FRACTIONS = (0.8, 0.1, 0.1)


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
