"""`varinv demo --pretrained` and `varinv pretrained`: the demo page from a model shipped in the package.

The demo trains nothing: it generates a small seeded PhoneNums dataset, copies the packaged
``pretrained:phonenums`` run into the output folder (the package is never written), evaluates it on
the small test split, recombines, and builds the static page (``varinv report``). Registered into the
main CLI by varinv.cli.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Callable

import typer

from varinv.errors import ConfigError
from varinv.eval.parts import headline_rows
from varinv.runs import MODEL_FILE, RunLock

DEMO_MODEL = "phonenums"
DEFAULT_OUT = Path("runs/demo-pretrained")
DEFAULT_SIZE = 400  # rows: 40 test rows = 400 fragments to evaluate; seconds to generate, t-SNE and recombine
DEFAULT_SEED = 0  # the packaged model's training data used seed 0: the same glyph bank, other rows

# (key, label) of the headline metrics that declare a short label (varinv.eval.parts)
_HEADLINE = tuple((row.key, row.short) for row in headline_rows() if row.short)


def _headline(metrics: dict) -> str:
    return ", ".join(f"{label} {metrics[key]:.3f}" for key, label in _HEADLINE
                     if isinstance(metrics.get(key), (int, float)))


def run_demo(out: str | Path = DEFAULT_OUT, *, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED,
             name: str = DEMO_MODEL, log: Callable[[str], None] = print) -> Path:
    """Dataset, copy of ``pretrained:NAME``, evaluation, recombination and page under ``out``; returns
    the page (``out/site/index.html``). Layout: out/data/phonenums (the dataset), out/NAME (the run
    copy: metrics.json, plots/, recombine/), out/site (the page)."""
    from varinv import pretrained
    from varinv.data import phonenums
    from varinv.data.store import check_replaceable, open_dataset
    from varinv.eval.evaluate import evaluate
    from varinv.eval.recombine import recombine
    from varinv.report.build import build_site

    t0 = time.time()
    src = pretrained.path(name)  # ConfigError naming benchmarks/make_pretrained.py when none is packaged
    meta = json.loads((src / MODEL_FILE).read_text())
    if meta.get("dataset_generator") != "varinv.data.phonenums":
        raise ConfigError(f"the demo generates PhoneNums, but {pretrained.PREFIX}{name} was trained on "
                          f"{meta.get('dataset_generator') or 'other data'}")
    if size < 10:
        raise ConfigError(f"--size must be at least 10 rows (1 test row), got {size}")
    out = Path(out)

    def step(msg: str) -> None:
        log(f"demo [{time.time() - t0:5.1f} s] {msg}")

    with RunLock.acquire(out, "demo"):  # the demo folder, as evaluate locks its run: one demo writes it at a time
        data = out / "data" / "phonenums"
        have = None
        if (data / "manifest.json").is_file():
            try:
                have = json.loads((data / "manifest.json").read_text())
            except (OSError, ValueError):
                have = None
        if have and have.get("generator") == "varinv.data.phonenums" and have.get("seed") == seed \
                and (have.get("params") or {}).get("n_rows") == size:
            step(f"dataset {data} ({size} rows, seed {seed}) is there already")
        else:
            check_replaceable(data)
            step(f"generating PhoneNums, {size} rows, seed {seed}, into {data}")
            phonenums.generate(data, n_rows=size, seed=seed, overwrite=True, progress=False)
        ds = open_dataset(data)
        # the copy may be in use (e.g. `varinv evaluate` on it): refuse before copy_run replaces it
        RunLock.acquire(out / name, "demo", create=False).release()
        run = pretrained.copy_run(f"{pretrained.PREFIX}{name}", out / name, data=data, fresh=True)
        step(f"copied {pretrained.PREFIX}{name} to {run} (the installed package is never written)")
        test = ds.split("test")
        n_eval = min(int(meta.get("config", {}).get("data", {}).get("n_eval") or 1000), len(test) * ds.n_fragments)
        step(f"evaluating on the {len(test)} test rows ({n_eval} fragments: metrics, confusion matrix, 3-D t-SNE)")
        with RunLock.acquire(run, "demo", create=False):
            metrics = evaluate(run, n_eval=n_eval, what=["core"], raise_errors=True)
            step("evaluated: " + _headline(metrics))
            recombine(run)
        step("recombined: atoms x styles grids")
        site = out / "site"
        index = build_site([run], site, log=lambda m: log(m) if m.startswith("warning") else None)
        packaged = run / pretrained.PACKAGED_METRICS
        if packaged.is_file():
            full = json.loads(packaged.read_text())
            n = (full.get("eval_subset") or {}).get("n_fragments") or full.get("n_fragments")
            step(f"the packaged metrics ({full.get('dataset', 'its test set')}"
                 + (f", {n} fragments" if n else "") + "): " + _headline(full))
        step(f"done: open {index.resolve()}")
        return index


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        pretrained_: Annotated[
            bool, typer.Option("--pretrained", help="Use the model shipped in the package (pretrained:phonenums): "
                                                    "no training, under a minute on a CPU.")
        ] = False,
        out: Annotated[Path, typer.Option(help="Output folder: the dataset, the run copy and the page (site/).")]
        = DEFAULT_OUT,
        size: Annotated[int, typer.Option(help="PhoneNums rows to generate (10% are the test rows evaluated).")]
        = DEFAULT_SIZE,
        seed: Annotated[int, typer.Option(help="Dataset seed.")] = DEFAULT_SEED,
    ):
        """The demo page without training: generate a small PhoneNums dataset, evaluate and recombine the
        packaged V3 model (pretrained:phonenums) on it and build the static page (OUT/site/index.html).

        The demo that trains from scratch is `make demo` (several minutes)."""
        if not pretrained_:
            raise ConfigError("`varinv demo` needs --pretrained (the packaged model, no training); the demo that "
                              "trains from scratch is `make demo` (several minutes)")
        if seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {seed}")
        index = run_demo(out, size=size, seed=seed, log=lambda m: typer.echo(m, err=True))
        typer.echo(f"demo page: {index.resolve()}")

    @app.command("pretrained")
    def list_pretrained():
        """List the models shipped in the package: name, method, K, training step, headline metrics (on
        their training dataset's test split). Use one as pretrained:NAME wherever a run folder is taken
        (`varinv encode pretrained:phonenums DS -o codes.csv`, `varinv.load_model("pretrained:phonenums")`)."""
        from varinv import pretrained

        have = pretrained.names()
        if not have:
            typer.echo(pretrained.missing_message())
            return
        rows = [pretrained.describe(n) for n in have]
        head = ["NAME", "METHOD", "K", "STEP", "PURITY", "PR-AUC zc/content", "PR-AUC zs/style", "SIZE", "DATASET"]
        table = [head]
        for r in rows:
            m = r["metrics"]

            def f(key):
                return f"{m[key]:.3f}" if key in m else "-"

            table.append([r["name"], r["method"], str(r["k"] or "-"), str(r["step"] or "-"), f("codebook_purity"),
                          f("prauc_zc_content"), f("prauc_zs_style"), f"{r['bytes'] / 1e6:.1f} MB",
                          str(r["dataset"] or "-")])
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for row in table:
            typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        typer.echo(f"{len(rows)} pretrained model(s) in {pretrained.root()}")
