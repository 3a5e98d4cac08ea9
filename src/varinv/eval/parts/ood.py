"""ood: zero-shot and few-shot (1/5/10 shots) OOD content accuracy, with the supervised counterpart.

The protocol and the draws are :mod:`varinv.eval.ood`'s; the zero-/few-shot atom→class map comes from
the ID confusion counts of the evaluation subset, and ``ood_test`` is scored on as many fragments.
"""

from __future__ import annotations

NAME = "ood"
HEADLINE = ()

_PROTOCOL = ("deep copy; codebook frozen; 1 epoch of model.loss (no labels) over the shots; AdamW lr 1e-4; "
             "train() mode; classify ood_test through the ID atom→class map. Supervised: ID-trained "
             "classifier fine-tuned on the same shot batches with content labels, 1 epoch, lr 1e-4.")


def run(ctx) -> dict:
    import numpy as np

    from varinv.eval import ood as O
    from varinv.eval.classifier import accuracy_on, build_counterpart
    from varinv.eval.parts.context import rows_for

    ds, opts = ctx.ds, ctx.opts
    if "ood_test" not in ds.splits:
        return {"skipped": f"dataset {ds.root} has no ood_test split"}
    amap = O.atom_class_map(ctx.id_counts)
    ood_full = ds.split("ood_test")
    n_ood = ctx.n_eval if opts.ood_fragments is None else (opts.ood_fragments or None)
    ood = O.subset(ood_full, rows_for(len(ood_full), ctx.L, n_ood, ctx.seed + 2))
    idx, content = ctx.ood_index(ctx.model, ood)
    out: dict = {
        "atom_class_map": amap.tolist(),
        "n_ood_fragments": int(content.size),
        "zero_shot": O.zero_shot(idx, content, amap, ctx.n_content),
    }
    if ctx.k != ctx.n_content:
        out["note"] = O.ONE_TO_ONE_NOTE.format(k=ctx.k, c=ctx.n_content)

    shots = [n for n in opts.shots if f"ood_{n}shot" in ds.splits]
    if not shots:
        out["few_shot"] = {"skipped": "no ood_{N}shot splits"}
        return out
    # the supervised counterpart: trained on ID train (cached), scored before and after fine-tuning
    sup, sup_info = build_counterpart(ctx.run, ds, ctx.cfg.model, ctx.classifier_settings)
    out["supervised_counterpart"] = {
        **{k: v for k, v in sup_info.items() if k in ("kind", "cached", "seconds", "settings", "note", "final_loss")},
        "id_test_accuracy": accuracy_on(sup, ctx.sub, "content"),
        "zero_shot_ood_accuracy": accuracy_on(sup, ood, "content"),
    }
    pool_name = f"ood_{max(int(s[4:-4]) for s in ds.splits if s.startswith('ood_') and s.endswith('shot'))}shot"
    pool = ds.split(pool_name)
    pool_style = np.asarray(pool.style if pool.style.ndim == 1 else pool.style[:, 0])
    bs = int(ctx.cfg.train.batch_size)
    step = int(ctx.state.get("step", 0))
    if getattr(ctx.model, "uses_labels", False):
        out["few_shot_note"] = (f"{ctx.cfg.method} is trained with labels: the unsupervised few-shot fine-tuning does "
                                "not apply (its 'unsupervised' entries are empty)")
    few: dict = {"protocol": _PROTOCOL, "draws": int(opts.draws), "draw_pool": pool_name,
                 "std": "sample std over draws (ddof=1)"}
    for n in shots:
        shot_split = ds.split(f"ood_{n}shot")
        subsets = [O.subset(shot_split, np.arange(len(shot_split)))]
        subsets += [O.subset(pool, rows) for rows in O.shot_draws(pool_style, n, opts.draws, seed=ctx.seed)]
        unsup, supv = [], []
        for d, shots_d in enumerate(subsets):
            seed_d = ctx.seed * 1000 + 10 * n + d
            if not getattr(ctx.model, "uses_labels", False):
                m = O.finetune_unsupervised(ctx.model, shots_d, batch_size=bs, seed=seed_d, step=step)
                i2, c2 = ctx.ood_index(m, ood)
                unsup.append(O.map_accuracy(i2, c2, amap))
                del m
            s = O.finetune_supervised(sup, shots_d, batch_size=bs, seed=seed_d)
            supv.append(accuracy_on(s, ood, "content"))
            del s
        few[str(n)] = {
            "unsupervised": O.mean_std(unsup),
            "supervised": O.mean_std(supv),
            "n_shot_rows": int(len(shot_split)),
            "distinct_subsets": len({_rowset_key(sp) for sp in subsets}),
        }
    out["few_shot"] = few
    return out


def _rowset_key(split) -> frozenset:
    """Identity of a set of samples by content (draw 0 and the pool draws index different splits)."""
    import hashlib

    import numpy as np

    return frozenset(hashlib.sha1(np.ascontiguousarray(split.x[i]).tobytes()).hexdigest() for i in range(len(split)))
