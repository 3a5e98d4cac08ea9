"""mi: MI matrix of (content, style) × every dim of z_c and z_s (heat map in plots/mi_matrix.png),
MIG, DCI and SAP on [z_c, z_s], on the evaluation subset."""

from __future__ import annotations

NAME = "mi"
NO_GRAD = True
HEADLINE = ()


def run(ctx) -> dict:
    import numpy as np

    from varinv.eval import factors as F

    e = ctx.sub_emb
    y = np.stack([e["content"], e["style"]], axis=1)
    mi_c, mi_s = F.mutual_info_matrix(e["zc"], y), F.mutual_info_matrix(e["zs"], y)
    codes = np.concatenate([e["zc"], e["zs"]], axis=1)
    mg = F.mig(codes, y)
    dc = F.dci(codes, y, seed=ctx.seed)
    sp = F.sap(codes, y, seed=ctx.seed)
    out = {
        "factors": ["content", "style"],
        "z_c": mi_c.T.tolist(),  # [factor][dim]
        "z_s": mi_s.T.tolist(),
        "factor_entropy": F.factor_entropy(y).tolist(),
        "summary": {  # mean MI per dim of each block with each factor
            "content_zc": float(mi_c[:, 0].mean()), "content_zs": float(mi_s[:, 0].mean()),
            "style_zc": float(mi_c[:, 1].mean()), "style_zs": float(mi_s[:, 1].mean()),
        },
        "mig": {"score": mg["score"], "per_factor": np.asarray(mg["per_factor"]).tolist()},
        "dci": {k: float(dc[k]) for k in ("disentanglement", "completeness", "informativeness")},
        "sap": {"score": sp["score"], "per_factor": np.asarray(sp["per_factor"]).tolist()},
        "codes": f"[z_c ({e['zc'].shape[1]} dims), z_s ({e['zs'].shape[1]} dims)] per fragment",
        "n_fragments": int(codes.shape[0]),
    }
    if ctx.opts.plots:
        names = {"z_c": [f"c{i}" for i in range(mi_c.shape[0])], "z_s": [f"s{i}" for i in range(mi_s.shape[0])]}
        p = F.plot_mi_matrix({"z_c": mi_c, "z_s": mi_s}, ["content", "style"], names, ctx.pdir / "mi_matrix.png",
                             f"{ctx.cfg.method}: MI of factors with latent dims (nats)")
        out["plot"] = str(p.relative_to(ctx.run))
    return out
