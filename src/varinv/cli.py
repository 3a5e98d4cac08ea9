"""The `varinv` command line: the Typer app, its options, and the error handling of :func:`main`.

Errors a user can cause print one line (`error: ...`) and exit non-zero; `--debug` shows the traceback.
The commands live in modules by subject, each with a ``register(app)`` called here in help order:
:mod:`varinv.cli_data` (data), :mod:`varinv.cli_runs` (train, configs, evaluate, recombine),
:mod:`varinv.cli_model` (encode, transfer), then the commands beside their subsystem (report, benchmark,
demo, pretrained).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from varinv.errors import VarinvError

app = typer.Typer(
    help="Unsupervised content-style disentanglement of sequential data (V3 and peers).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        from varinv import __version__

        typer.echo(f"varinv {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
):
    _state["debug"] = debug


# Each module defines register(app); the order here is the order of `varinv --help`.
_EXTENSIONS: list[str] = ["varinv.cli_data", "varinv.cli_runs", "varinv.cli_model",
                          "varinv.report.cli", "varinv.bench", "varinv.demo"]


def _register_extensions() -> None:
    import importlib

    for name in _EXTENSIONS:
        importlib.import_module(name).register(app)


_register_extensions()


def _usage_error_type() -> type:
    """click's UsageError (unknown option or command, missing argument, bad value): newer typer vendors
    click, older typer uses it directly; typer's public BadParameter derives from it either way."""
    return next(c for c in type.mro(typer.BadParameter) if c.__name__ == "UsageError")


def _usage_line(e: Exception, commands) -> str:
    """A click usage error as the one `error:` line every other mistake gets, pointing at the help of the
    command it concerns (click's own message spans a usage line and a boxed panel). Some errors (an option
    missing its value) come without a context: the command is then the first argument naming one."""
    ctx = getattr(e, "ctx", None)
    if ctx is not None:
        where = ctx.command_path
    else:
        named = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
        where = f"varinv {named}" if named in commands else "varinv"
    msg = " ".join(e.format_message().split()).rstrip(".")
    return f"error: {msg[:1].lower()}{msg[1:]}; see `{where} --help`"


def main() -> None:
    usage_error = _usage_error_type()
    group = typer.main.get_command(app)
    try:
        # standalone_mode=False: click raises its usage errors instead of printing them (caught below) and
        # returns the exit code of --help, --version and typer.Exit instead of exiting.
        code = group.main(prog_name="varinv", standalone_mode=False)
    except usage_error as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `varinv`: the help, as before
            text = e.ctx.get_help()  # typer's rich help prints itself and returns ""
            if text:
                typer.echo(text)
            sys.exit(e.exit_code)
        typer.echo(_usage_line(e, getattr(group, "commands", {})), err=True)
        sys.exit(2)
    except typer.Abort:  # what standalone mode printed for it
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    except VarinvError as e:
        if _state["debug"]:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted; the last checkpoint is kept (resume with --resume)", err=True)
        sys.exit(130)
    if isinstance(code, int) and code != 0:
        sys.exit(code)


if __name__ == "__main__":
    main()
