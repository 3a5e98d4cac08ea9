"""The context every evaluation part receives: the loaded run, the options, and the shared data.

Splits, embeddings and the judge classifier are computed lazily and once, so a part pays only for
what it reads and two parts reading the same thing share it (e.g. ``sub_emb`` for probes, mi, eer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from varinv.eval import metrics as M
from varinv.eval.embed import content_index
from varinv.runs import PLOTS_DIR, load_run

__all__ = ["EvalOptions", "EvalContext", "n_atoms_of", "rows_for", "flat_latents"]


def n_atoms_of(cfg, ds) -> int:
    return int(getattr(cfg.model, "n_atoms", 0) or cfg.data.n_clusters or len(ds.content_names))


@dataclass
class EvalOptions:
    n_eval: int | None = None  # fragments of the evaluation subset (default data.n_eval)
    split: str | None = None
    plots: bool = True
    tsne: bool = True
    checkpoint: str = "final"
    max_fragments: int | None = None  # cap on the fragments the core part embeds
    draws: int = 5
    shots: tuple[int, ...] = (1, 5, 10)
    probe_fragments: int = 4000
    ood_fragments: int | None = None  # ood_test fragments scored (default n_eval; 0 = the whole split)
    classifier_steps: int = 300
    classifier_batch: int = 8
    seed: int | None = None  # default: the run's train.seed
    data: str | Path | None = None  # the dataset's location, when not the run's data.path (moved)
    extra: dict = field(default_factory=dict)


def rows_for(n_rows: int, length: int, n_fragments: int | None, seed: int) -> np.ndarray:
    """Seeded sorted sample rows holding about ``n_fragments`` fragments (all rows if None or more)."""
    if n_fragments is None:
        return np.arange(n_rows)
    want = max(2, math.ceil(n_fragments / length))
    if want >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=want, replace=False))


def flat_latents(lat: dict, split) -> dict:
    """Fragment-level arrays from :func:`varinv.eval.swap.encode_samples` output and its split."""
    return {
        "zc": lat["zc"].flatten(0, 1).numpy(),
        "zs": lat["zs"].flatten(0, 1).numpy(),
        "index": lat["index"].flatten().numpy() if lat["index"] is not None else None,
        "content": np.asarray(split.content).reshape(-1).astype(np.int64),
        "style": np.asarray(split.style_per_fragment).reshape(-1).astype(np.int64),
    }


class EvalContext:
    """Everything the parts share: ``run`` (folder), ``opts``, ``cfg``, ``ds``, ``model``, ``state``,
    ``seed``, ``split_name``, ``n_eval``, ``k`` (atoms), ``n_content``, ``n_style``, ``L`` (fragments
    per sample), and the lazily computed splits, embeddings and classifier below."""

    def __init__(self, run: Path, opts: EvalOptions):
        self.run, self.opts = run, opts
        self.cfg, self.ds, self.model, self.state = load_run(run, opts.checkpoint, data=opts.data, command="evaluate",
                                                              verify=True)
        self.seed = self.cfg.train.seed if opts.seed is None else opts.seed
        self.split_name = opts.split or self.cfg.data.eval_split
        self.n_eval = opts.n_eval or self.cfg.data.n_eval
        self.k = n_atoms_of(self.cfg, self.ds)
        self.n_content, self.n_style = len(self.ds.content_names), len(self.ds.style_names)
        self.L = self.ds.n_fragments

    # ---------------------------------------------------------------- splits and embeddings
    @cached_property
    def test(self):
        return self.ds.split(self.split_name)

    def _subset(self, split, n_fragments: int, seed: int):
        from varinv.eval.ood import subset

        return subset(split, rows_for(len(split), self.L, n_fragments, seed))

    def _encode(self, split):
        from varinv.eval.swap import encode_samples

        return encode_samples(self.model, split)

    @cached_property
    def sub(self):
        return self._subset(self.test, self.n_eval, self.seed)

    @cached_property
    def sub_lat(self):
        return self._encode(self.sub)

    @cached_property
    def sub_emb(self):
        return flat_latents(self.sub_lat, self.sub)

    @cached_property
    def atoms(self):
        """(index of the subset's fragments, atoms): the codebook, or k-means on the subset's z_c."""
        return content_index(self.model, self.sub_emb, self.k, seed=self.seed)

    @cached_property
    def id_counts(self):
        return M.confusion_matrix(self.atoms[0], self.sub_emb["content"], self.k, self.n_content)

    @cached_property
    def train_sub(self):
        return self._subset(self.ds.split("train"), self.opts.probe_fragments, self.seed + 1)

    @cached_property
    def train_lat(self):
        return self._encode(self.train_sub)

    @cached_property
    def train_emb(self):
        return flat_latents(self.train_lat, self.train_sub)

    @cached_property
    def classifier(self):
        from varinv.eval.classifier import cached_classifier

        return cached_classifier(self.run, self.ds, self.classifier_settings)

    @property
    def classifier_settings(self):
        from varinv.eval.classifier import ClassifierSettings

        return ClassifierSettings(steps=self.opts.classifier_steps, batch_size=self.opts.classifier_batch,
                                  seed=self.seed)

    @cached_property
    def pdir(self) -> Path:
        p = self.run / PLOTS_DIR
        p.mkdir(exist_ok=True)
        return p

    def ood_index(self, model, split) -> tuple[np.ndarray, np.ndarray]:
        """(atom index, content) of every fragment of ``split`` under ``model``."""
        from varinv.eval.ood import nearest_atom
        from varinv.eval.swap import encode_samples

        lat = encode_samples(model, split)
        if lat["index"] is not None and model.codebook() is not None:
            idx = lat["index"].flatten().numpy()
        else:
            idx = nearest_atom(lat["zc"].flatten(0, 1).numpy(), self.atoms[1])
        return idx, np.asarray(split.content).reshape(-1)
