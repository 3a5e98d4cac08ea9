"""swap: TS-DSAE swap macro-F1s with an LDA style classifier (:mod:`varinv.eval.swap`).

The LDA is fitted on the training samples' mean z_s, then scores the evaluation subset.
"""

from __future__ import annotations

NAME = "swap"
HEADLINE = ()


def run(ctx) -> dict:
    from varinv.eval.swap import fit_lda, sample_labels, swap_metrics

    tl = ctx.train_lat
    lda = fit_lda(tl["zs"].mean(1).numpy(), sample_labels(ctx.train_sub.style))
    out = swap_metrics(ctx.model, lda, ctx.sub_lat, ctx.sub.style, seed=ctx.seed)
    out["n_lda_train_samples"] = int(tl["zs"].shape[0])
    return out
