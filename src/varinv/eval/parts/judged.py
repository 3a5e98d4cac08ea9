"""judged: DSAE-style judged generation (:mod:`varinv.eval.judged`), with a judge classifier cached in
RUN/eval_cache."""

from __future__ import annotations

NAME = "judged"
HEADLINE = ()


def run(ctx) -> dict:
    import numpy as np

    from varinv.data.batching import to_tensor
    from varinv.eval.judged import judged_generation

    judge, info = ctx.classifier
    x_real = to_tensor(np.asarray(ctx.sub.x), ctx.sub.scale)
    out = judged_generation(ctx.model, judge, ctx.sub_lat, x_real, ctx.sub.content, ctx.sub.style,
                            ctx.n_content, ctx.n_style, seed=ctx.seed)
    out["judge"].update({"cached": bool(info.get("cached")), "train_steps": ctx.opts.classifier_steps})
    return out
