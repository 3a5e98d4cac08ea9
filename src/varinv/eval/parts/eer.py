"""eer: equal error rates of style verification on z_s and content on z_c, plus the two crossed pairs
(which should be high), on the evaluation subset."""

from __future__ import annotations

NAME = "eer"
NO_GRAD = True
HEADLINE = ()


def run(ctx) -> dict:
    from varinv.eval import metrics as M

    e = ctx.sub_emb
    return {
        "style_zs": float(M.eer(e["zs"], e["style"])),
        "content_zc": float(M.eer(e["zc"], e["content"])),
        "style_zc": float(M.eer(e["zc"], e["style"])),  # crossed: should be high
        "content_zs": float(M.eer(e["zs"], e["content"])),  # crossed: should be high
        "n_fragments": int(e["zs"].shape[0]),
    }
