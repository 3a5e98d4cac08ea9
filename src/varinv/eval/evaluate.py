"""`varinv evaluate RUN`: every core metric of a run into RUN/metrics.json and RUN/plots/."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from varinv.eval import metrics as M
from varinv.eval.embed import content_index, embed_split
from varinv.train.trainer import load_run


def n_atoms_of(cfg, ds) -> int:
    return int(getattr(cfg.model, "n_atoms", 0) or len(ds.content_names))


def core_metrics(emb: dict, index: np.ndarray, n_atoms: int, n_classes: int, n_eval: int, seed: int = 0) -> dict:
    """Retrieval (four pairs, on ``n_eval`` fragments) + codebook metrics (on all fragments)."""
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


def evaluate(run: str | Path, *, n_eval: int | None = None, split: str | None = None, plots: bool = True,
             tsne: bool = True, checkpoint: str = "final") -> dict:
    run = Path(run)
    t0 = time.time()
    cfg, ds, model, state = load_run(run, checkpoint)
    split_name = split or cfg.data.eval_split
    n_eval = n_eval or cfg.data.n_eval
    test = ds.split(split_name)
    emb = embed_split(model, test, ds.scale)
    k = n_atoms_of(cfg, ds)
    index, atoms = content_index(model, emb, k, seed=cfg.train.seed)
    metrics, counts, pairs = core_metrics(emb, index, k, len(ds.content_names), n_eval, seed=cfg.train.seed)
    metrics.update(
        {
            "method": cfg.method,
            "n_atoms": k,
            "dataset": str(ds.root),
            "split": split_name,
            "step": int(state["step"]),
            "train_seconds": float(state.get("train_seconds", 0.0)),
            "n_parameters": int(sum(p.numel() for p in model.parameters())),
            "curves": {key: {kk: np.asarray(vv).tolist() for kk, vv in val.items()}
                       for key, val in pairs.items() if isinstance(val, dict)},
            "confusion_counts": counts.tolist(),
        }
    )
    if plots:
        from varinv.eval import plots as P

        pdir = run / "plots"
        pdir.mkdir(exist_ok=True)
        P.plot_confusion(counts, ds.content_names, pdir / "confusion.svg", f"{cfg.method} K={k}: P(class | atom)")
        if tsne:
            rng = np.random.default_rng(cfg.train.seed)
            sel = rng.choice(len(emb["zc"]), size=min(n_eval, len(emb["zc"])), replace=False)
            zc_xyz, atoms_xyz = P.tsne_3d(emb["zc"][sel], seed=cfg.train.seed, extra=atoms)
            zs_xyz, _ = P.tsne_3d(emb["zs"][sel], seed=cfg.train.seed)
            c, s = emb["content"][sel], emb["style"][sel]
            for tag, xyz, ax in (("zc", zc_xyz, atoms_xyz), ("zs", zs_xyz, None)):
                P.plot_latent_3d(xyz, c, ds.content_names, pdir / f"{tag}_by_content.png", f"{tag} by content", ax)
                P.plot_latent_3d(xyz, s, test.style_names, pdir / f"{tag}_by_style.png", f"{tag} by style", ax)
            P.save_latent_json(pdir / "latents.json", zc_xyz, c, s, atoms=atoms_xyz,
                               content_names=ds.content_names, style_names=test.style_names)
            P.save_latent_json(pdir / "latents_zs.json", zs_xyz, c, s, atoms=None,
                               content_names=ds.content_names, style_names=test.style_names)
    metrics["eval_seconds"] = time.time() - t0
    old = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    old.update(metrics)
    (run / "metrics.json").write_text(json.dumps(old, indent=1))
    return metrics
