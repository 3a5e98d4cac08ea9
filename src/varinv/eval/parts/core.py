"""core: PR-AUC of the four (embedding, label) pairs, codebook purity, one-to-one accuracy, atom usage,
recon MSE, the run's health, confusion matrix and t-SNE plots.

It embeds the whole evaluation split (``--max-fragments`` caps it), unlike the other parts which use the
evaluation subset. Its keys go to the top level of metrics.json (they were there before parts existed).
"""

from __future__ import annotations

from varinv.eval.parts.base import Headline

NAME = "core"
TOP_LEVEL = True
NO_GRAD = True

# Order: the CLI summary and the benchmark columns follow it (the report reorders, see report.collect).
HEADLINE = (
    Headline("codebook_purity", "codebook purity", "up", short="purity"),
    Headline("one_to_one_accuracy", "one-to-one accuracy", "up", short="one-to-one"),
    Headline("prauc_zc_content", "PR-AUC z<sub>c</sub> · content", "up", short="PR-AUC z_c/content"),
    Headline("prauc_zs_style", "PR-AUC z<sub>s</sub> · style", "up", short="PR-AUC z_s/style"),
    Headline("prauc_zs_content", "PR-AUC z<sub>s</sub> · content", "down"),
    Headline("prauc_zc_style", "PR-AUC z<sub>c</sub> · style", "down"),
    Headline("atoms_used", "atoms used", "", score=False),
    Headline("recon_mse", "recon. MSE", "down", score=False),
)


def core_metrics(emb: dict, index, n_atoms: int, n_classes: int, n_eval: int, seed: int = 0):
    """Retrieval (four pairs, on ``n_eval`` fragments) + codebook metrics (on all fragments)."""
    from varinv.eval import metrics as M

    pairs = M.four_pairs(emb["zc"], emb["zs"], emb["content"], emb["style"], n_eval=n_eval, seed=seed)
    counts = M.confusion_matrix(index, emb["content"], n_atoms, n_classes)
    usage = M.atom_usage(index, n_atoms)
    out = {k: float(v) for k, v in pairs.items() if k.startswith("prauc_")}
    out.update(
        {
            "codebook_purity": float(M.macro_purity(counts)),
            "one_to_one_accuracy": float(M.one_to_one_accuracy(index, emb["content"], n_atoms, n_classes)),
            "many_to_one_accuracy": float(M.many_to_one_accuracy(index, emb["content"], n_atoms, n_classes)),
            "atoms_used": int(usage["n_used"]),
            "atom_perplexity": float(usage["perplexity"]),
            "recon_mse": float(emb["recon_mse"]),
            "n_fragments": int(len(emb["content"])),
            "n_eval_retrieval": int(min(n_eval, len(emb["content"]))),
        }
    )
    return out, counts, pairs


def run(ctx) -> dict:
    import numpy as np

    from varinv.eval import health
    from varinv.eval.embed import content_index, embed_split
    from varinv.eval.parts.context import rows_for

    opts = ctx.opts
    test = ctx.test
    if opts.max_fragments is not None:
        from varinv.eval.ood import subset

        test = subset(test, rows_for(len(test), ctx.L, opts.max_fragments, ctx.seed))
    emb = embed_split(ctx.model, test)
    index, atoms = content_index(ctx.model, emb, ctx.k, seed=ctx.seed)
    metrics, counts, pairs = core_metrics(emb, index, ctx.k, ctx.n_content, ctx.n_eval, seed=ctx.seed)
    book = atoms if ctx.model.codebook() is not None else None  # no margin to k-means centres: they cut any cloud
    own = emb["zs_fragments"]
    metrics["health"] = health.assess(health.read_log(ctx.run), index.reshape(-1, ctx.L),
                                      own.reshape(-1, ctx.L, own.shape[-1]), ctx.k, emb["zc"], book, emb["agreement"])
    metrics.update(
        {
            "curves": {key: {kk: np.asarray(vv).tolist() for kk, vv in val.items()}
                       for key, val in pairs.items() if isinstance(val, dict)},
            "confusion_counts": counts.tolist(),
        }
    )
    if opts.plots:
        _plots(ctx, test, emb, counts, atoms)
    return metrics


def _plots(ctx, test, emb: dict, counts, atoms) -> None:
    import numpy as np

    from varinv.eval import plots as P

    cfg, ds, pdir = ctx.cfg, ctx.ds, ctx.pdir
    P.plot_confusion(counts, ds.content_names, pdir / "confusion.svg", f"{cfg.method} K={ctx.k}: P(class | atom)")
    if not ctx.opts.tsne:
        return
    rng = np.random.default_rng(ctx.seed)
    sel = rng.choice(len(emb["zc"]), size=min(ctx.n_eval, len(emb["zc"])), replace=False)
    zc_xyz, atoms_xyz = P.tsne_3d(emb["zc"][sel], seed=ctx.seed, extra=atoms)
    zs_xyz, _ = P.tsne_3d(emb["zs"][sel], seed=ctx.seed)
    c, s = emb["content"][sel], emb["style"][sel]
    for tag, xyz, ax in (("zc", zc_xyz, atoms_xyz), ("zs", zs_xyz, None)):
        P.plot_latent_3d(xyz, c, ds.content_names, pdir / f"{tag}_by_content.png", f"{tag} by content", ax)
        P.plot_latent_3d(xyz, s, test.style_names, pdir / f"{tag}_by_style.png", f"{tag} by style", ax)
    P.save_latent_json(pdir / "latents.json", zc_xyz, c, s, atoms=atoms_xyz,
                       content_names=ds.content_names, style_names=test.style_names)
    P.save_latent_json(pdir / "latents_zs.json", zs_xyz, c, s, atoms=None,
                       content_names=ds.content_names, style_names=test.style_names)
