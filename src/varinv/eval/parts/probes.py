"""probes: linear and MLP probes of content and style from z_c, z_s and both.

Trained on ``ceil(probe_fragments / L)`` seeded training samples, scored on the evaluation subset.
"""

from __future__ import annotations

NAME = "probes"
NO_GRAD = True
HEADLINE = ()  # the benchmark adds its own probe columns (bench.PROBE_METRICS)


def run(ctx) -> dict:
    import numpy as np

    from varinv.eval.probes import probe_table

    tr, te = ctx.train_emb, ctx.sub_emb
    table = probe_table({"z_c": tr["zc"], "z_s": tr["zs"]}, {"z_c": te["zc"], "z_s": te["zs"]},
                        {"content": tr["content"], "style": tr["style"]},
                        {"content": te["content"], "style": te["style"]}, seed=ctx.seed)
    return {**table, "n_train_fragments": int(tr["zc"].shape[0]), "n_test_fragments": int(te["zc"].shape[0]),
            "chance": {"content": float(np.bincount(te["content"]).max() / te["content"].size),
                       "style": float(np.bincount(te["style"]).max() / te["style"].size)}}
