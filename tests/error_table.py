"""The README's "Errors you can cause" table, rendered from the error catalogue
(tests/test_error_catalogue.py, the cases marked ``readme=True``).

    python tests/error_table.py           # print the table
    python tests/error_table.py --write   # replace it in README.md, between the marker comments
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
START, END = "<!-- errors:start -->", "<!-- errors:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The markdown table: one row per catalogue case marked readme=True (input → message, abridged)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from test_error_catalogue import all_cases

    rows = ["| input | message (abridged) |", "|---|---|"]
    for case in all_cases():
        if case.readme:
            rows.append(f"| {_cell(case.what or case.id)} | `…{_cell(case.expect)}…` |")
    return "\n".join(rows) + "\n"


def write(readme: Path = README) -> None:
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{render()}{END}{tail}")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        sys.stdout.write(render())
