"""`varinv evaluate RUN`: the metrics of a run into RUN/metrics.json and RUN/plots/.

The parts (core, ood, probes, mi, swap, judged, eer) live in :mod:`varinv.eval.parts`, one module each
with its own description; ``--what a,b`` picks some, ``--all`` runs every one; the default is ``core``.
``core`` keys go to the top level of metrics.json, every other part's result under its name.

``core`` embeds the whole evaluation split (``--max-fragments`` caps it). Every other part works on the
**evaluation subset**: ``ceil(n_eval / L)`` samples of the split (seeded, ``n_eval`` = ``data.n_eval``,
1000 by default), and OOD parts on as many samples of ``ood_test``. Training-split embeddings (probes,
the LDA of ``swap``) come from ``ceil(probe_fragments / L)`` seeded training samples (4000 fragments).
Each part's wall time is in ``"eval_seconds_by_part"``; a part that fails is reported under
``"errors"`` (the others still run) and the CLI exits non-zero.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from varinv.errors import ConfigError
from varinv.eval import parts as P
from varinv.eval.parts.context import EvalContext, EvalOptions, n_atoms_of
from varinv.eval.parts.core import core_metrics
from varinv.runs import METRICS_FILE

__all__ = ["evaluate", "parse_parts", "partial_note", "EvalOptions", "n_atoms_of", "core_metrics"]


def parse_parts(what: str | None, all_: bool = False) -> list[str]:
    """``--what a,b`` / ``--all`` → the ordered list of parts (default ``["core"]``)."""
    known = P.names()
    if all_:
        return list(known)
    if not what:
        return ["core"]
    asked = [w.strip().lower() for w in what.split(",") if w.strip()]
    bad = [w for w in asked if w not in known]
    if bad:
        raise ConfigError(f"unknown evaluation part(s) {', '.join(bad)}; choose from {', '.join(known)} (or --all)")
    return [p for p in known if p in asked]


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
    ctx = EvalContext(run, opts)
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
            mod = P.get(part)
            with _blas_one_thread(), torch.no_grad() if P.no_grad(mod) else _null():
                res = mod.run(ctx)
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
        if P.top_level(mod):
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
    path = run / METRICS_FILE
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
