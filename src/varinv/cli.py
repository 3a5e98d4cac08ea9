"""The `varinv` command line: data, train, evaluate, recombine.

Errors a user can cause print one line (`error: ...`) and exit non-zero; `--debug` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from varinv.errors import ConfigError, VarinvError

app = typer.Typer(
    help="Unsupervised content-style disentanglement of sequential data (V3 and peers).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False):
    _state["debug"] = debug


class DatasetName(str, Enum):
    phonenums = "phonenums"
    insnotes = "insnotes"
    waveforms = "waveforms"


@app.command()
def data(
    name: Annotated[DatasetName, typer.Argument(help="Which benchmark dataset to generate.")],
    out: Annotated[Path, typer.Option(help="Folder to write the dataset to.")],
    size: Annotated[
        Optional[int],
        typer.Option(help="phonenums: rows; insnotes: files per instrument; waveforms: samples. Default: paper size."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Generator seed: same seed, same bytes.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset folder.")] = False,
    soundfont: Annotated[Optional[Path], typer.Option(help="insnotes: a .sf2 soundfont (default TimGM6mb).")] = None,
    n_bins: Annotated[Optional[int], typer.Option(help="audio: frequency bins kept (512 = full STFT).")] = None,
    fragments: Annotated[
        Optional[int], typer.Option(help="waveforms: tones per sample, distinct frequencies (default: all 21).")
    ] = None,
    frames: Annotated[
        Optional[int], typer.Option(help="waveforms: frames per tone, averaged from the 32 STFT frames (default 8; 32 = full).")
    ] = None,
):
    """Generate a benchmark dataset (deterministic from --seed) in the varinv store format."""
    if (fragments or frames) and name != DatasetName.waveforms:
        raise ConfigError(f"--fragments and --frames apply to waveforms only; {name.value} fixes its fragment shape")
    kwargs: dict = {"seed": seed, "overwrite": overwrite}
    if name == DatasetName.phonenums:
        from varinv.data import phonenums as gen

        if size:
            kwargs["n_rows"] = size
    elif name == DatasetName.insnotes:
        from varinv.data import insnotes as gen

        if size:
            kwargs["files_per_instrument"] = size
        if soundfont:
            kwargs["soundfont"] = str(soundfont)
        if n_bins:
            kwargs["n_bins"] = n_bins
    else:
        from varinv.data import waveforms as gen

        if size:
            kwargs["n_samples"] = size
        if n_bins:
            kwargs["n_bins"] = n_bins
        if fragments:
            kwargs["n_fragments"] = fragments
        if frames:
            kwargs["n_frames"] = frames
    ds = gen.generate(out, **kwargs)
    typer.echo(f"wrote {name.value} to {ds.root}: " + ", ".join(f"{s} {ds.manifest['splits'][s]['n']}" for s in ds.splits))


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config (see configs/).")],
    run: Annotated[Path, typer.Option(help="Run folder for checkpoints, logs and results.")],
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last checkpoint.")] = False,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override a config value: section.key=value (repeatable).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
):
    """Train a method on a dataset. Writes checkpoints (safetensors), TensorBoard scalars and the resolved config."""
    from varinv import config as config_mod
    from varinv.train.trainer import train as run_train

    cfg = config_mod.load(config, set_)
    state = run_train(cfg, run, resume=resume, progress=progress and sys.stderr.isatty())
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line rather than one per process
        typer.echo(f"trained {cfg.method} to step {state['step']} in {state['train_seconds']:.0f} s; run folder {run}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder made by `varinv train`.")],
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
):
    """Evaluate a run into RUN/metrics.json and RUN/plots/.

    core: PR-AUC of the four (embedding, label) pairs, codebook purity, one-to-one accuracy, atom usage,
    reconstruction MSE, confusion matrix and t-SNE plots. ood: zero-shot and 1/5/10-shot OOD accuracy with a
    supervised counterpart. probes: linear/MLP probes. mi: MI matrix, MIG, DCI, SAP. swap: TS-DSAE swap F1s.
    judged: DSAE-style judged generation. eer: equal error rates."""
    from varinv.errors import ConfigError
    from varinv.eval.evaluate import EvalOptions, parse_parts
    from varinv.eval.evaluate import evaluate as run_eval

    parts = parse_parts(what, all_)
    try:
        shot_list = tuple(int(s) for s in shots.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--shots must be comma-separated integers, got {shots!r}") from None
    if draws < 1 or classifier_steps < 0:
        raise ConfigError("--draws must be >= 1 and --classifier-steps >= 0")
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    opts = EvalOptions(max_fragments=max_fragments, draws=draws, shots=shot_list, classifier_steps=classifier_steps)
    m = run_eval(run, n_eval=n_eval, split=split, tsne=tsne, what=parts, options=opts,
                 progress=lambda p: typer.echo(f"evaluate: {p}", err=True))
    summary = {}
    if "core" in parts:
        keys = ["codebook_purity", "one_to_one_accuracy", "prauc_zc_content", "prauc_zs_style",
                "prauc_zs_content", "prauc_zc_style", "atoms_used", "recon_mse"]
        summary.update({k: m[k] for k in keys if k in m})
    for p in parts:
        if p != "core" and p in m:
            summary[p] = _brief(p, m[p])
    summary["eval_seconds_by_part"] = m.get("eval_seconds_by_part")
    typer.echo(json.dumps(summary, indent=1))
    typer.echo(f"wrote {run / 'metrics.json'} and {run / 'plots'}")
    if m.get("errors"):
        typer.echo("error: evaluation part(s) failed: " + "; ".join(f"{k}: {v}" for k, v in m["errors"].items()),
                   err=True)
        sys.exit(1)


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


@app.command()
def recombine(
    run: Annotated[Path, typer.Argument(help="A run folder made by `varinv train`.")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default RUN/recombine).")] = None,
):
    """Recombine content and style: "fix an atom, traverse all styles" and "fix a style, traverse all atoms"
    grids (PNG) from the codebook atoms and the mean style vector of each style class; for audio datasets
    also WAVs (Griffin-Lim) of every strip and cell."""
    from varinv.eval.recombine import recombine as run_recombine

    res = run_recombine(run, out)
    typer.echo(f"wrote {res['files']['grid']} and {len(res['files']['atoms']) + len(res['files']['styles'])} strips")
    if "audio" in res["files"]:
        audio = res["files"]["audio"]
        typer.echo(f"wrote {len(audio['atoms']) + len(audio['styles'])} WAV strips and "
                   f"{sum(map(len, audio['cells']))} cell WAVs (index {audio['index']})")


# Commands living beside their subsystem: each module defines register(app).
_EXTENSIONS: list[str] = ["varinv.report.cli", "varinv.bench"]


def _register_extensions() -> None:
    import importlib

    for name in _EXTENSIONS:
        importlib.import_module(name).register(app)


_register_extensions()


def main() -> None:
    try:
        app()
    except VarinvError as e:
        if _state["debug"]:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted; the last checkpoint is kept (resume with --resume)", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
