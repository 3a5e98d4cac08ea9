"""`varinv report`: the static demo site (registered into the main CLI by varinv.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        runs: Annotated[
            list[Path],
            typer.Argument(help="Run folders (made by `varinv train`) and/or benchmark folders holding them; "
                                "pretrained:NAME for a model shipped in the package."),
        ],
        out: Annotated[
            Path, typer.Option("--out", "-o", help="Site folder to write (replaced if it is a previous report).")
        ] = Path("site"),
        audio_budget_mb: Annotated[
            float, typer.Option(help="Most megabytes of audio clips to copy into the site.")
        ] = 20.0,
    ):
        """Build a self-contained static demo site (opens from disk, no network): per dataset the example
        data, per method and K the confusion matrix, interactive 3-D latent views, the recombination
        traversals, swaps of real test samples (content of one, style of another), the metrics table (mean ±
        std over seeds) and the V3 paper / citation."""
        from varinv import pretrained
        from varinv.report.build import build_site

        runs = [pretrained.resolve(r) for r in runs]  # pretrained:NAME: the packaged folder, only read
        def log(msg: str) -> None:
            typer.echo(msg, err=msg.startswith("warning"))

        index = build_site(runs, out, audio_budget_mb=audio_budget_mb, log=log)
        typer.echo(f"demo page: {index.resolve()}")
