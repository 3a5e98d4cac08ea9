"""`varinv evaluate RUN`: the metrics of a run into RUN/metrics.json and RUN/plots/.

Parts (``--what a,b`` picks some, ``--all`` runs every one; the default is ``core``):

========  =========================================================================  ======================
part      what                                                                       metrics.json key
========  =========================================================================  ======================
core      PR-AUC of the four (embedding, label) pairs, codebook purity, one-to-one    top level (as before)
          accuracy, atom usage, recon MSE, confusion matrix, t-SNE plots
ood       zero-shot and few-shot (1/5/10 shots) OOD content accuracy, with the        ``"ood"``
          supervised counterpart (:mod:`varinv.eval.ood`)
probes    linear and MLP probes of content and style from z_c, z_s and both           ``"probes"``
mi        MI matrix of (content, style) × every dim of z_c and z_s (heat map in        ``"mi"``
          plots/mi_matrix.png), MIG, DCI, SAP on [z_c, z_s]
swap      TS-DSAE swap macro-F1s with an LDA style classifier (:mod:`.swap`)          ``"swap"``
judged    DSAE-style judged generation (:mod:`varinv.eval.judged`)                     ``"judged"``
eer       equal error rates of style verification on z_s, content on z_c (and the    ``"eer"``
          two crossed pairs, which should be high)
========  =========================================================================  ======================

``core`` embeds the whole evaluation split (``--max-fragments`` caps it). Every other part works on the
**evaluation subset**: ``ceil(n_eval / L)`` samples of the split (seeded, ``n_eval`` = ``data.n_eval``,
1000 by default), and OOD parts on as many samples of ``ood_test``. Training-split embeddings (probes,
the LDA of ``swap``) come from ``ceil(probe_fragments / L)`` seeded training samples (4000 fragments).
The zero-/few-shot atom→class map comes from the ID confusion counts of the evaluation subset.
Each part's wall time is in ``"eval_seconds_by_part"``; a part that fails is reported under
``"errors"`` (the others still run) and the CLI exits non-zero.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from varinv.errors import ConfigError
from varinv.eval import health
from varinv.eval import metrics as M
from varinv.eval.embed import content_index, embed_split
from varinv.train.trainer import load_run

PARTS = ("core", "ood", "probes", "mi", "swap", "judged", "eer")


def n_atoms_of(cfg, ds) -> int:
    return int(getattr(cfg.model, "n_atoms", 0) or cfg.data.n_clusters or len(ds.content_names))


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


def parse_parts(what: str | None, all_: bool = False) -> list[str]:
    """``--what a,b`` / ``--all`` → the ordered list of parts (default ``["core"]``)."""
    from varinv.errors import ConfigError

    if all_:
        return list(PARTS)
    if not what:
        return ["core"]
    asked = [w.strip().lower() for w in what.split(",") if w.strip()]
    bad = [w for w in asked if w not in PARTS]
    if bad:
        raise ConfigError(f"unknown evaluation part(s) {', '.join(bad)}; choose from {', '.join(PARTS)} (or --all)")
    return [p for p in PARTS if p in asked]


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


def _rows_for(n_rows: int, length: int, n_fragments: int | None, seed: int) -> np.ndarray:
    """Seeded sorted sample rows holding about ``n_fragments`` fragments (all rows if None or more)."""
    if n_fragments is None:
        return np.arange(n_rows)
    want = max(2, math.ceil(n_fragments / length))
    if want >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=want, replace=False))


def _flat(lat: dict, split) -> dict:
    """Fragment-level arrays from :func:`varinv.eval.swap.encode_samples` output and its split."""
    return {
        "zc": lat["zc"].flatten(0, 1).numpy(),
        "zs": lat["zs"].flatten(0, 1).numpy(),
        "index": lat["index"].flatten().numpy() if lat["index"] is not None else None,
        "content": np.asarray(split.content).reshape(-1).astype(np.int64),
        "style": np.asarray(split.style_per_fragment).reshape(-1).astype(np.int64),
    }


class _Context:
    """Everything the parts share, computed lazily and once."""

    def __init__(self, run: Path, opts: EvalOptions):
        self.run, self.opts = run, opts
        self.cfg, self.ds, self.model, self.state = load_run(run, opts.checkpoint, data=opts.data, command="evaluate")
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

    @cached_property
    def sub(self):
        from varinv.eval.ood import subset

        return subset(self.test, _rows_for(len(self.test), self.L, self.n_eval, self.seed))

    @cached_property
    def sub_lat(self):
        from varinv.eval.swap import encode_samples

        return encode_samples(self.model, self.sub, self.ds.scale)

    @cached_property
    def sub_emb(self):
        return _flat(self.sub_lat, self.sub)

    @cached_property
    def atoms(self):
        """(index of the subset's fragments, atoms): the codebook, or k-means on the subset's z_c."""
        return content_index(self.model, self.sub_emb, self.k, seed=self.seed)

    @cached_property
    def id_counts(self):
        return M.confusion_matrix(self.atoms[0], self.sub_emb["content"], self.k, self.n_content)

    @cached_property
    def train_sub(self):
        from varinv.eval.ood import subset

        tr = self.ds.split("train")
        return subset(tr, _rows_for(len(tr), self.L, self.opts.probe_fragments, self.seed + 1))

    @cached_property
    def train_lat(self):
        from varinv.eval.swap import encode_samples

        return encode_samples(self.model, self.train_sub, self.ds.scale)

    @cached_property
    def train_emb(self):
        return _flat(self.train_lat, self.train_sub)

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
        p = self.run / "plots"
        p.mkdir(exist_ok=True)
        return p

    def ood_index(self, model, split) -> tuple[np.ndarray, np.ndarray]:
        """(atom index, content) of every fragment of ``split`` under ``model``."""
        from varinv.eval.ood import nearest_atom
        from varinv.eval.swap import encode_samples

        lat = encode_samples(model, split, self.ds.scale)
        if lat["index"] is not None and model.codebook() is not None:
            idx = lat["index"].flatten().numpy()
        else:
            idx = nearest_atom(lat["zc"].flatten(0, 1).numpy(), self.atoms[1])
        return idx, np.asarray(split.content).reshape(-1)


# ------------------------------------------------------------------------------------------ parts
def part_core(ctx: _Context) -> dict:
    opts = ctx.opts
    test = ctx.test
    if opts.max_fragments is not None:
        from varinv.eval.ood import subset

        test = subset(test, _rows_for(len(test), ctx.L, opts.max_fragments, ctx.seed))
    emb = embed_split(ctx.model, test, ctx.ds.scale)
    index, atoms = content_index(ctx.model, emb, ctx.k, seed=ctx.seed)
    metrics, counts, pairs = core_metrics(emb, index, ctx.k, ctx.n_content, ctx.n_eval, seed=ctx.seed)
    book = atoms if ctx.model.codebook() is not None else None  # no margin to k-means centres: they cut any cloud
    metrics["health"] = health.assess(health.read_log(ctx.run), index.reshape(-1, ctx.L),
                                      emb["zs"].reshape(-1, ctx.L, emb["zs"].shape[-1]), ctx.k, emb["zc"], book)
    metrics.update(
        {
            "curves": {key: {kk: np.asarray(vv).tolist() for kk, vv in val.items()}
                       for key, val in pairs.items() if isinstance(val, dict)},
            "confusion_counts": counts.tolist(),
        }
    )
    if opts.plots:
        from varinv.eval import plots as P

        cfg, ds, pdir = ctx.cfg, ctx.ds, ctx.pdir
        P.plot_confusion(counts, ds.content_names, pdir / "confusion.svg", f"{cfg.method} K={ctx.k}: P(class | atom)")
        if opts.tsne:
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
    return metrics


def part_ood(ctx: _Context) -> dict:
    """Zero-shot and few-shot OOD accuracy (see :mod:`varinv.eval.ood` for the protocol and draws)."""
    from varinv.eval import ood as O
    from varinv.eval.classifier import accuracy_on, build_counterpart

    ds, opts = ctx.ds, ctx.opts
    if "ood_test" not in ds.splits:
        return {"skipped": f"dataset {ds.root} has no ood_test split"}
    amap = O.atom_class_map(ctx.id_counts)
    ood_full = ds.split("ood_test")
    n_ood = ctx.n_eval if opts.ood_fragments is None else (opts.ood_fragments or None)
    ood = O.subset(ood_full, _rows_for(len(ood_full), ctx.L, n_ood, ctx.seed + 2))
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
        "id_test_accuracy": accuracy_on(sup, ctx.sub, ds.scale, "content"),
        "zero_shot_ood_accuracy": accuracy_on(sup, ood, ds.scale, "content"),
    }
    pool_name = f"ood_{max(int(s[4:-4]) for s in ds.splits if s.startswith('ood_') and s.endswith('shot'))}shot"
    pool = ds.split(pool_name)
    pool_style = np.asarray(pool.style if pool.style.ndim == 1 else pool.style[:, 0])
    bs = int(ctx.cfg.train.batch_size)
    step = int(ctx.state.get("step", 0))
    if getattr(ctx.model, "uses_labels", False):
        out["few_shot_note"] = (f"{ctx.cfg.method} is trained with labels: the unsupervised few-shot fine-tuning does "
                                "not apply (its 'unsupervised' entries are empty)")
    few: dict = {
        "protocol": ("deep copy; codebook frozen; 1 epoch of model.loss (no labels) over the shots; AdamW lr 1e-4; "
                     "train() mode; classify ood_test through the ID atom→class map. Supervised: ID-trained "
                     "classifier fine-tuned on the same shot batches with content labels, 1 epoch, lr 1e-4."),
        "draws": int(opts.draws),
        "draw_pool": pool_name,
        "std": "sample std over draws (ddof=1)",
    }
    for n in shots:
        shot_split = ds.split(f"ood_{n}shot")
        subsets = [O.subset(shot_split, np.arange(len(shot_split)))]
        subsets += [O.subset(pool, rows) for rows in O.shot_draws(pool_style, n, opts.draws, seed=ctx.seed)]
        unsup, supv = [], []
        for d, shots_d in enumerate(subsets):
            seed_d = ctx.seed * 1000 + 10 * n + d
            if not getattr(ctx.model, "uses_labels", False):
                m = O.finetune_unsupervised(ctx.model, shots_d, ds.scale, batch_size=bs, seed=seed_d, step=step)
                i2, c2 = ctx.ood_index(m, ood)
                unsup.append(O.map_accuracy(i2, c2, amap))
                del m
            s = O.finetune_supervised(sup, shots_d, ds.scale, batch_size=bs, seed=seed_d)
            supv.append(accuracy_on(s, ood, ds.scale, "content"))
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

    return frozenset(hashlib.sha1(np.ascontiguousarray(split.x[i]).tobytes()).hexdigest() for i in range(len(split)))


def part_probes(ctx: _Context) -> dict:
    from varinv.eval.probes import probe_table

    tr, te = ctx.train_emb, ctx.sub_emb
    table = probe_table({"z_c": tr["zc"], "z_s": tr["zs"]}, {"z_c": te["zc"], "z_s": te["zs"]},
                        {"content": tr["content"], "style": tr["style"]},
                        {"content": te["content"], "style": te["style"]}, seed=ctx.seed)
    return {**table, "n_train_fragments": int(tr["zc"].shape[0]), "n_test_fragments": int(te["zc"].shape[0]),
            "chance": {"content": float(np.bincount(te["content"]).max() / te["content"].size),
                       "style": float(np.bincount(te["style"]).max() / te["style"].size)}}


def part_mi(ctx: _Context) -> dict:
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


def part_swap(ctx: _Context) -> dict:
    from varinv.eval.swap import fit_lda, sample_labels, swap_metrics

    tl = ctx.train_lat
    lda = fit_lda(tl["zs"].mean(1).numpy(), sample_labels(ctx.train_sub.style))
    out = swap_metrics(ctx.model, lda, ctx.sub_lat, ctx.sub.style, seed=ctx.seed)
    out["n_lda_train_samples"] = int(tl["zs"].shape[0])
    return out


def part_judged(ctx: _Context) -> dict:
    from varinv.data.batching import to_tensor
    from varinv.eval.judged import judged_generation

    judge, info = ctx.classifier
    x_real = to_tensor(np.asarray(ctx.sub.x), ctx.ds.scale)
    out = judged_generation(ctx.model, judge, ctx.sub_lat, x_real, ctx.sub.content, ctx.sub.style,
                            ctx.n_content, ctx.n_style, seed=ctx.seed)
    out["judge"].update({"cached": bool(info.get("cached")), "train_steps": ctx.opts.classifier_steps})
    return out


def part_eer(ctx: _Context) -> dict:
    e = ctx.sub_emb
    return {
        "style_zs": float(M.eer(e["zs"], e["style"])),
        "content_zc": float(M.eer(e["zc"], e["content"])),
        "style_zc": float(M.eer(e["zc"], e["style"])),  # crossed: should be high
        "content_zs": float(M.eer(e["zs"], e["content"])),  # crossed: should be high
        "n_fragments": int(e["zs"].shape[0]),
    }


_PART_FN = {"core": part_core, "ood": part_ood, "probes": part_probes, "mi": part_mi, "swap": part_swap,
            "judged": part_judged, "eer": part_eer}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def partial_note(run: Path, step: int, steps: int) -> str | None:
    """The one ``warning:`` line for a run whose training has not finished (None when it has)."""
    if step >= steps:
        return None
    return (f"warning: run {run} is at step {step} of {steps} (training did not finish); these metrics describe "
            f"a partly trained model (finish it with `varinv train {run / 'config.yaml'} --run {run} --resume`)")


def evaluate(run: str | Path, *, n_eval: int | None = None, split: str | None = None, plots: bool = True,
             tsne: bool = True, checkpoint: str = "final", what: list[str] | None = None,
             options: EvalOptions | None = None, progress=None, raise_errors: bool = False,
             write: bool = True) -> dict:
    """Evaluate ``run``: the parts in ``what`` (default ``["core"]``), merged into RUN/metrics.json
    (unless ``write`` is False).

    Returns the metrics of this call (core keys at top level, the other parts under their keys,
    ``"errors"`` for failed parts). ``progress(str)`` is called before each part.
    """
    run = Path(run)
    t0 = time.time()
    opts = options or EvalOptions()
    opts.n_eval = n_eval if n_eval is not None else opts.n_eval
    if opts.n_eval is not None and (isinstance(opts.n_eval, bool) or opts.n_eval < 1):
        raise ConfigError(f"--n-eval must be >= 1 fragments, got {opts.n_eval}; leave it out for the run's data.n_eval")
    if opts.max_fragments is not None and (isinstance(opts.max_fragments, bool) or opts.max_fragments < 1):
        raise ConfigError(f"--max-fragments must be >= 1, got {opts.max_fragments}; leave it out for the whole split")
    opts.split = split if split is not None else opts.split
    opts.plots, opts.tsne, opts.checkpoint = plots, tsne and opts.tsne, checkpoint
    parts = list(what or ["core"])
    ctx = _Context(run, opts)
    cfg, ds, model, state = ctx.cfg, ctx.ds, ctx.model, ctx.state
    note = partial_note(run, int(state.get("step", 0)), int(cfg.train.steps))
    if note:
        print(note, file=sys.stderr)
    metrics: dict = {
        "method": cfg.method,
        "n_atoms": ctx.k,
        "dataset": str(ds.root),
        "split": ctx.split_name,
        "step": int(state["step"]),
        "train_seconds": float(state.get("train_seconds", 0.0)),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }
    seconds, errors = {}, {}
    for part in parts:
        if progress is not None:
            progress(part)
        tp = time.time()
        try:
            with _blas_one_thread(), torch.no_grad() if part in ("core", "probes", "mi", "eer") else _null():
                res = _PART_FN[part](ctx)
        except Exception as e:  # noqa: BLE001 - one failed part must not lose the others
            if raise_errors:
                raise
            errors[part] = f"{type(e).__name__}: {e}"
            print(f"evaluate: part '{part}' failed: {errors[part]}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            res = None
        seconds[part] = round(time.time() - tp, 2)
        if res is None:
            continue
        if part == "core":
            metrics.update(res)
        else:
            metrics[part] = res
    if "sub" in ctx.__dict__:
        metrics["eval_subset"] = {"split": ctx.split_name, "n_samples": len(ctx.sub), "n_fragments": len(ctx.sub) * ctx.L}
    metrics["eval_seconds_by_part"] = seconds
    metrics["eval_seconds"] = time.time() - t0
    if errors:
        metrics["errors"] = errors
    metrics = _jsonable(metrics)
    if not write:
        return metrics
    path = run / "metrics.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.pop("errors", None)
    old.update(metrics)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(old, indent=1))
    tmp.replace(path)
    return metrics


def _blas_one_thread():
    """numpy/scipy BLAS limited to one thread during a part (torch's own threads are not touched).

    The sklearn fits of the parts are small; with a 2-thread OpenBLAS on a loaded 2-core machine their
    spinning threads starve each other (measured: a logistic probe 44 s instead of 0.4 s)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return _null()
    return threadpool_limits(limits=1, user_api="blas")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
