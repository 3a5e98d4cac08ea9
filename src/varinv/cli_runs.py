"""`varinv train`, `configs`, `evaluate` and `recombine`: the commands that make and work on run folders
(registered into the main CLI by :mod:`varinv.cli`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from varinv.errors import ConfigError
from varinv.runs import CONFIG_FILE, METRICS_FILE, PLOTS_DIR, RunLock


_TRAIN_HELP = "\n\n".join([
    "Train a method on a dataset. Writes checkpoints (safetensors), TensorBoard summaries (RUN/tb) and the "
    "resolved config.",
    "CONFIG is a YAML file or the name of a shipped config (`varinv configs` lists them, e.g. "
    "`varinv train phonenums_v3_small --run R`); a path that exists always wins over a name.",
    "Without a config, `varinv train --data DS --run R [--method v3] [--k K] [--steps N] [--batch-size B]` "
    "starts from the method's shipped generic config (v3, tsdsae, supervised; other methods: their "
    "defaults) with data.path = DS, the backbone derived from the fragment shape and K (model.n_atoms, or "
    "data.n_clusters for methods without a codebook) = the dataset's number of content names; the "
    "supervised method takes its class counts from the manifest. With a config, --data, --k, --steps and "
    "--batch-size replace the config's values. --set applies last.",
    "Progress: a progress bar in a terminal; otherwise (nohup, a batch scheduler, a pipe) a plain line on "
    "stdout every train.log_every steps (step, loss terms, steps/s, ETA). --no-progress silences both.",
])


def train(
    config: Annotated[
        Optional[str],
        typer.Argument(metavar="CONFIG", show_default=False,
                       help="YAML config file or shipped config name (`varinv configs`); optional with --data."),
    ] = None,
    run: Annotated[str, typer.Option(help="Run folder for checkpoints, logs and results.")] = ...,
    data: Annotated[
        Optional[Path], typer.Option(help="Dataset folder: replaces data.path, or, without a config, trains the "
                                          "method's generic config on it.", show_default=False)
    ] = None,
    method: Annotated[
        Optional[str], typer.Option(help="Without a config: the method (default v3).", show_default=False)
    ] = None,
    k: Annotated[
        Optional[int], typer.Option("--k", help="Codebook size model.n_atoms (data.n_clusters for methods without "
                                                "a codebook); default without a config: the dataset's number of "
                                                "content names.", show_default=False)
    ] = None,
    steps: Annotated[Optional[int], typer.Option(help="train.steps.", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="train.batch_size.", show_default=False)] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last checkpoint.")] = False,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override a config value: section.key=value (repeatable).")
    ] = None,
    progress: Annotated[
        bool, typer.Option(help="Show progress (a bar in a terminal, plain lines otherwise).")
    ] = True,
):
    """Train a method on a dataset (help: _TRAIN_HELP)."""
    from varinv import config as config_mod
    from varinv.train.trainer import train as run_train

    if not run.strip():
        raise ConfigError("--run is empty; give the run folder to write, e.g. --run runs/v3")
    run = Path(run)
    cfg = config_mod.compose(config, data, method=method, k=k, steps=steps, batch_size=batch_size,
                             overrides=set_)
    state = run_train(cfg, run, resume=resume, progress="auto" if progress else False)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line rather than one per process
        typer.echo(f"trained {cfg.method} to step {state['step']} in {state['train_seconds']:.0f} s; run folder {run}")


def list_configs():
    """List the shipped configs: name, method, dataset path and description.

    The configs live in the package (src/varinv/configs, also ./configs in a checkout); the description
    is the config's first comment line. Train one with `varinv train NAME --run RUN`."""
    import shutil

    from varinv import config as config_mod

    rows = [config_mod.describe(p) for p in config_mod.shipped().values()]
    head = {"name": "NAME", "method": "METHOD", "data": "DATA", "description": "DESCRIPTION"}
    widths = {key: max(len(r[key]) for r in [head, *rows]) for key in ("name", "method", "data")}
    width = shutil.get_terminal_size((10_000, 24)).columns if sys.stdout.isatty() else 10_000
    for r in [head, *rows]:
        line = "  ".join(r[key].ljust(widths[key]) for key in ("name", "method", "data")) + "  " + r["description"]
        if len(line) > width:
            line = line[:max(0, width - 1)] + "…"
        typer.echo(line.rstrip())
    typer.echo(f"{len(rows)} configs in {config_mod.SHIPPED_DIR}")


_COPY_TO_HELP = ("RUN = pretrained:NAME only: the writable run folder the packaged model is copied into and the "
                 "results written to (default runs/pretrained/NAME; an earlier copy of the same model is reused).")


def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder made by `varinv train`, or pretrained:NAME (copied, "
                                             "see --copy-to).")],
    what: Annotated[
        Optional[str],
        typer.Option(help="Comma-separated parts: core, ood, probes, mi, swap, judged, eer (default: core)."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Run every part.")] = False,
    n_eval: Annotated[
        Optional[int], typer.Option(help="Fragments for retrieval and for the evaluation subset (default data.n_eval).")
    ] = None,
    split: Annotated[Optional[str], typer.Option(help="Split to evaluate on (default: test).")] = None,
    max_fragments: Annotated[
        Optional[int], typer.Option(help="Cap the fragments the core part embeds (default: the whole split).")
    ] = None,
    draws: Annotated[int, typer.Option(help="Few-shot draws per shot count (mean ± std over them).")] = 5,
    shots: Annotated[str, typer.Option(help="Few-shot sizes, comma-separated.")] = "1,5,10",
    classifier_steps: Annotated[
        int, typer.Option(help="Training steps of the judge / supervised classifier (cached in RUN/eval_cache).")
    ] = 300,
    threads: Annotated[int, typer.Option(help="Torch threads (0 = torch default).")] = 0,
    tsne: Annotated[bool, typer.Option(help="Also make the 3-D t-SNE views (core part).")] = True,
    data: Annotated[
        Optional[Path], typer.Option(help="The run's dataset, when it is no longer at the config's data.path.")
    ] = None,
    copy_to: Annotated[Optional[Path], typer.Option("--copy-to", help=_COPY_TO_HELP, show_default=False)] = None,
):
    """Evaluate a run into RUN/metrics.json and RUN/plots/.

    core: PR-AUC of the four (embedding, label) pairs, codebook purity, one-to-one accuracy, atom usage,
    reconstruction MSE, confusion matrix and t-SNE plots. ood: zero-shot and 1/5/10-shot OOD accuracy with a
    supervised counterpart. probes: linear/MLP probes. mi: MI matrix, MIG, DCI, SAP. swap: TS-DSAE swap F1s.
    judged: DSAE-style judged generation. eer: equal error rates.

    RUN may be pretrained:NAME (a model shipped in the package, `varinv pretrained`): it is copied to a
    writable run folder first (--copy-to, default runs/pretrained/NAME) and the results go there."""
    from varinv.errors import ConfigError
    from varinv.eval.evaluate import EvalOptions, parse_parts
    from varinv.eval.evaluate import evaluate as run_eval
    from varinv.eval.parts import headline_rows, metric_value

    parts = parse_parts(what, all_)
    try:
        shot_list = tuple(int(s) for s in shots.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--shots must be comma-separated integers, got {shots!r}") from None
    if draws < 1 or classifier_steps < 0:
        raise ConfigError("--draws must be >= 1 and --classifier-steps >= 0")
    if n_eval is not None and n_eval < 1:
        raise ConfigError(f"--n-eval must be >= 1 fragments, got {n_eval}; leave it out for the run's data.n_eval")
    if max_fragments is not None and max_fragments < 1:
        raise ConfigError(f"--max-fragments must be >= 1, got {max_fragments}; leave it out for the whole split")
    if threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0 = torch default), got {threads}")
    if not shot_list or min(shot_list) < 1:
        raise ConfigError(f"--shots must be positive integers, e.g. 1,5,10, got {shots!r}")
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    run = _writable_run(run, copy_to, data, "evaluate")
    opts = EvalOptions(max_fragments=max_fragments, draws=draws, shots=shot_list, classifier_steps=classifier_steps,
                       data=data)
    with RunLock.acquire(run, "evaluate", create=False):
        _check_eval_data(run, data, split)
        m = run_eval(run, n_eval=n_eval, split=split, tsne=tsne, what=parts, options=opts,
                     progress=lambda p: typer.echo(f"evaluate: {p}", err=True))
    summary = {}
    missing = object()  # a present null (a NaN metric) is still shown
    for row in headline_rows(parts):  # the headline metrics of the parts that ran, in registry order
        value = metric_value(m, row.key, missing)
        if value is not missing:
            summary[row.key] = value
    for p in parts:
        if p != "core" and p in m:
            summary[p] = _brief(p, m[p])
    summary["eval_seconds_by_part"] = m.get("eval_seconds_by_part")
    typer.echo(json.dumps(summary, indent=1))
    typer.echo(f"wrote {run / METRICS_FILE} and {run / PLOTS_DIR}")
    if m.get("errors"):
        typer.echo("error: evaluation part(s) failed: " + "; ".join(f"{k}: {v}" for k, v in m["errors"].items()),
                   err=True)
        sys.exit(1)


def _writable_run(run: Path, copy_to: Optional[Path], data: Optional[Path], command: str) -> Path:
    """RUN itself, or for pretrained:NAME a writable copy of it (the installed package is never written)."""
    from varinv import pretrained

    if not pretrained.is_ref(run):
        if copy_to is not None:
            raise ConfigError(f"--copy-to applies when RUN is pretrained:NAME; {run} is a run folder, written in "
                              "place: leave out --copy-to")
        return run
    earlier = Path(copy_to) if copy_to is not None else pretrained.DEFAULT_COPY_DIR / pretrained.name_of(run)
    # An earlier copy may be in use: refuse before copy_run rewrites its config.yaml. (The lock cannot be
    # held across copy_run, which may replace the whole folder; the caller locks the result.)
    RunLock.acquire(earlier, command, create=False).release()
    dest = pretrained.copy_run(run, copy_to, data=data)
    typer.echo(f"{run}: working on a copy in {dest} (the installed package is never written)", err=True)
    return dest


def _check_eval_data(run: Path, data: Optional[Path], split: Optional[str]) -> None:
    """Before `evaluate` writes anything: the split exists and the dataset matches its checksums."""
    from varinv import config as config_mod
    from varinv.data.store import open_dataset

    if not (run / CONFIG_FILE).is_file():
        return  # evaluate itself says what is wrong with the run folder
    where = Path(data) if data is not None else Path(config_mod.load(run / CONFIG_FILE).data.path)
    if not (where / "manifest.json").is_file():
        return  # evaluate itself says where the dataset should be
    ds = open_dataset(where)
    if split is not None and split not in ds.splits:
        ds.split(split)  # raises, naming the splits there are
    ds.verify_cached()


def _brief(part: str, res: dict) -> dict:
    """A few headline numbers of one evaluation part for the terminal (metrics.json has everything)."""
    if part == "ood":
        out = {"zero_shot": (res.get("zero_shot") or {}).get("accuracy")}
        for k, v in (res.get("few_shot") or {}).items():
            if isinstance(v, dict) and "unsupervised" in v:
                out[f"{k}shot"] = {t: (f"{v[t]['mean']:.3f} ± {v[t]['std']:.3f}" if v[t]["mean"] is not None else None)
                                   for t in ("unsupervised", "supervised")}
        if "note" in res:
            out["note"] = res["note"]
        return out
    if part == "probes":
        return {lat: {f: d for f, d in v.items()} for lat, v in res.items() if lat in ("z_c", "z_s", "both")}
    if part == "mi":
        return {"mig": res["mig"]["score"], "dci": res["dci"], "sap": res["sap"]["score"]}
    if part == "swap":
        return {k: res[k] for k in ("pre_swap", "style_swap", "content_swap")}
    if part == "judged":
        return {k: res[k] for k in ("fixed_content", "fixed_style")}
    return res


def recombine(
    run: Annotated[Path, typer.Argument(help="A run folder made by `varinv train`, or pretrained:NAME (copied, "
                                             "see --copy-to).")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default RUN/recombine).")] = None,
    data: Annotated[
        Optional[Path], typer.Option(help="The run's dataset, when it is no longer at the config's data.path.")
    ] = None,
    copy_to: Annotated[Optional[Path], typer.Option("--copy-to", help=_COPY_TO_HELP, show_default=False)] = None,
):
    """Recombine content and style: "fix an atom, traverse all styles" and "fix a style, traverse all atoms"
    grids (PNG) from the codebook atoms and the mean style vector of each style class; for audio datasets
    also WAVs (Griffin-Lim) of every strip and cell. RUN may be pretrained:NAME: it is copied to a writable
    run folder first (--copy-to, default runs/pretrained/NAME), whose recombine/ is the default output."""
    from varinv.eval.recombine import recombine as run_recombine

    run = _writable_run(run, copy_to, data, "recombine")
    with RunLock.acquire(run, "recombine", create=False):
        res = run_recombine(run, out, data=data)
    typer.echo(f"wrote {res['files']['grid']} and {len(res['files']['atoms']) + len(res['files']['styles'])} strips")
    if "audio" in res["files"]:
        audio = res["files"]["audio"]
        typer.echo(f"wrote {len(audio['atoms']) + len(audio['styles'])} WAV strips and "
                   f"{sum(map(len, audio['cells']))} cell WAVs (index {audio['index']})")


def register(app: typer.Typer) -> None:
    app.command(help=_TRAIN_HELP)(train)
    app.command("configs")(list_configs)
    app.command()(evaluate)
    app.command()(recombine)
