"""The registry of evaluation parts: one module per part, in the order they run and are listed.

A part module declares::

    NAME = "eer"                  # the --what name and its metrics.json key
    HEADLINE = (Headline(...),)   # its headline metrics (key, label, direction, ...); may be empty
    TOP_LEVEL = False             # optional: True merges the result into metrics.json's top level (core)
    NO_GRAD = False               # optional: True runs it under torch.no_grad()
    def run(ctx) -> dict: ...     # ctx: varinv.eval.parts.context.EvalContext

and is listed in ``REGISTRY``. Every consumer of headline metrics (``varinv evaluate``'s summary, the
report table, the benchmark table, the demo line, ``varinv pretrained``) reads :func:`headline_rows`,
so a new metric touches its part module (and a test) only.

The registry is explicit rather than discovered: the order is part of the output (CLI, tables).
Importing this package loads no numpy/torch: the part modules import their tools inside ``run``.
"""

from __future__ import annotations

from types import ModuleType

from varinv.eval.parts import core, eer, judged, mi, ood, probes, swap
from varinv.eval.parts.base import Headline, metric_value

__all__ = ["REGISTRY", "Headline", "metric_value", "names", "get", "headline_rows", "top_level", "no_grad"]

REGISTRY: list[ModuleType] = [core, ood, probes, mi, swap, judged, eer]


def names() -> tuple[str, ...]:
    return tuple(p.NAME for p in REGISTRY)


def get(name: str) -> ModuleType:
    for p in REGISTRY:
        if p.NAME == name:
            return p
    raise KeyError(f"no evaluation part {name!r}; parts: {', '.join(names())}")


def top_level(part: ModuleType) -> bool:
    return bool(getattr(part, "TOP_LEVEL", False))


def no_grad(part: ModuleType) -> bool:
    return bool(getattr(part, "NO_GRAD", False))


def headline_rows(parts=None) -> list[Headline]:
    """The headline rows of every part (or of the part names in ``parts``), in registry order."""
    return [Headline(*row) for p in REGISTRY if parts is None or p.NAME in parts
            for row in getattr(p, "HEADLINE", ())]
