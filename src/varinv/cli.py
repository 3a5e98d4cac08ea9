"""The `varinv` command line: data, train, evaluate, recombine.

Errors a user can cause print one line (`error: ...`) and exit non-zero; `--debug` shows the traceback.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from varinv.errors import VarinvError

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
):
    """Generate a benchmark dataset (deterministic from --seed) in the varinv store format."""
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
    typer.echo(f"trained {cfg.method} to step {state['step']} in {state['train_seconds']:.0f} s; run folder {run}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder made by `varinv train`.")],
    n_eval: Annotated[Optional[int], typer.Option(help="Test fragments for retrieval metrics (default 1000).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split to evaluate on (default: test).")] = None,
    tsne: Annotated[bool, typer.Option(help="Also make the 3-D t-SNE views.")] = True,
):
    """Evaluate a run: PR-AUC of the four (embedding, label) pairs, codebook purity, one-to-one accuracy,
    atom usage, reconstruction MSE, confusion matrix and t-SNE plots. Writes RUN/metrics.json and RUN/plots/."""
    from varinv.eval.evaluate import evaluate as run_eval

    m = run_eval(run, n_eval=n_eval, split=split, tsne=tsne)
    keys = ["codebook_purity", "one_to_one_accuracy", "prauc_zc_content", "prauc_zs_style",
            "prauc_zs_content", "prauc_zc_style", "atoms_used", "recon_mse"]
    typer.echo(json.dumps({k: m[k] for k in keys}, indent=1))
    typer.echo(f"wrote {run / 'metrics.json'} and {run / 'plots'}")


@app.command()
def recombine(
    run: Annotated[Path, typer.Argument(help="A run folder made by `varinv train`.")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default RUN/recombine).")] = None,
):
    """Recombine content and style: "fix an atom, traverse all styles" and "fix a style, traverse all atoms"
    grids (PNG) from the codebook atoms and the mean style vector of each style class."""
    from varinv.eval.recombine import recombine as run_recombine

    res = run_recombine(run, out)
    typer.echo(f"wrote {res['files']['grid']} and {len(res['files']['atoms']) + len(res['files']['styles'])} strips")


# Commands living beside their subsystem: each module defines register(app).
_EXTENSIONS: list[str] = []


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
