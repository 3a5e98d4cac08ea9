"""How often the neighbour term's pairs share a content, for a trained V3 run (labels only to score).

    python benchmarks/neighbour_pairs.py RUN [--split val] [--dims 32,64] [--skew -1,0] [--one-way] [--classes]

For batches of the run's size drawn in order from the split, the term's pairs (``regularisers.neighbour_pairs``:
mutual nearest neighbours across samples, and far pairs across unlike samples) are searched among the raw
fragments and, when the run reads a pose, among the fragments brought back to their canonical pose by the
run's own encoder (``V3Config.neighbour_canonical``). ``--dims``: PCA bases of those sizes fitted on the
first batch of each input (0 = the run's own basis). ``--skew``: polarity thresholds to compare
(``V3Config.neighbour_skew``, < 0 = off; default: the run's own). ``--one-way``: far pairs also without the mutual
requirement (``regularisers.neighbour_pairs(far_mutual=False)``, round 37's trial), as "far1". Prints kept pairs and their accuracy per setting, and with
``--classes`` the share of each content's plain pairs landing on each content. "same atom": the share of kept pairs
whose two fragments the run gives one atom (label-free).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from varinv.api import load_model
from varinv.data.batching import make_batch
from varinv.data.store import open_dataset
from varinv.methods.regularisers import neighbour_pairs
from varinv.nn.pose import unwarp


def pca_embed(bases: dict, key, dims: int):
    """An embedding of the term's standardised rows by a PCA basis of ``dims`` fitted on the first rows it sees, as
    ``V3.neighbour_basis`` fits the run's own (``bases`` keeps one per key)."""
    def embed(f):
        if key not in bases:
            bases[key] = torch.linalg.svd(f - f.mean(0), full_matrices=False)[2][:dims].t()
        return f @ bases[key]
    return embed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--data", help="dataset folder (default: the run's)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--dims", default="0", help="comma-separated PCA sizes; 0 = the run's own basis")
    ap.add_argument("--skew", help="comma-separated neighbour_skew values to compare (default: the run's)")
    ap.add_argument("--one-way", action="store_true", help="far pairs also one way, without the mutual requirement")
    ap.add_argument("--classes", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(a.run)
    m, cfg = model.module.eval(), model.cfg
    sp = open_dataset(a.data or cfg.data.path).split(a.split)
    b = int(cfg.train.batch_size)
    n_classes = int(sp.content.max()) + 1
    dims = [int(d) for d in a.dims.split(",")]
    skews = [float(t) for t in a.skew.split(",")] if a.skew else [cfg.model.neighbour_skew]
    counts: dict[tuple, list] = {}
    per_class: dict[tuple, np.ndarray] = {}
    bases: dict[tuple, torch.Tensor] = {}
    for start in range(0, len(sp.x) - b + 1, b):
        batch = make_batch(sp, np.arange(start, start + b))
        x, c = batch["x"].float(), batch["content"].flatten()
        with torch.no_grad():
            ae = m.autoencode(x, None)
        pose, atom = ae.get("pose"), ae["index"]  # the nearest atom of each fragment's z_c, as encode gives
        inputs = {"raw": x}
        if pose is not None:
            inputs["canonical"] = unwarp(x.flatten(0, 1), pose).view_as(x)
        for name, xi in inputs.items():
            for d, t in ((d, t) for d in dims for t in skews):
                embed = pca_embed(bases, (name, d, t), d) if d else (lambda f: f @ m.neighbour_basis(f))
                pairs = neighbour_pairs(xi, embed, cfg.model.neighbour_far, cfg.model.neighbour_ratio,
                                        None if t < 0 else t)
                if a.one_way:
                    pairs.append(neighbour_pairs(xi, embed, cfg.model.neighbour_far, cfg.model.neighbour_ratio,
                                                 None if t < 0 else t, far_mutual=False)[-1])
                for (partner, kept), kind in zip(pairs, ("plain", "far", "far1")):
                    n = counts.setdefault((name, d, t, kind), [0, 0, 0])
                    n[0] += int(kept.sum())
                    n[1] += int((kept & (c == c[partner])).sum())
                    n[2] += int((kept & (atom == atom[partner])).sum())
                    if kind == "plain":
                        table = per_class.setdefault((name, d, t), np.zeros((n_classes, n_classes)))
                        np.add.at(table, (c[kept].numpy(), c[partner][kept].numpy()), 1)
    for (name, d, t, kind), (n, right, same) in counts.items():
        print(f"{name:9s} dims {d or 'run':>4} skew {t:>4} {kind:5s} kept {n:5d}  accuracy {right / max(n, 1):.3f}  "
              f"same atom {same / max(n, 1):.3f}")
    if a.classes:
        np.set_printoptions(linewidth=200, suppress=True)
        for (name, d, t), table in per_class.items():
            print(f"{name}, dims {d or 'run'}, skew {t}: rows = content, columns = its plain partners' content")
            print((table / table.sum(1, keepdims=True).clip(1)).round(2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
