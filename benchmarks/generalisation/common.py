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
