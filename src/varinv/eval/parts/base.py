"""What a part declares about its headline metrics, and how a declared key is read back.

Kept free of numpy/torch so that the report, the benchmark table and the CLI can read the headline
declarations without loading the evaluation stack.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Headline", "metric_value"]


class Headline(NamedTuple):
    """One headline metric of a part.

    ``key`` is a path into metrics.json (dotted for parts whose result sits under their own name,
    e.g. ``"eer.style_zs"``). Every consumer (CLI summary, report table, benchmark table, demo line,
    ``varinv pretrained``) reads these rows, so a new headline metric is declared here only.
    """

    key: str
    label: str  # the report's column title (HTML)
    direction: str  # "up", "down" or "" (which way is better; "" = neither)
    short: str = ""  # plain label in one-line summaries (demo); "" = not in them
    score: bool = True  # a score in [0, 1], comparable across datasets and K (False: counts, errors)


def metric_value(metrics: dict, key: str, default=None):
    """``metrics[key]``, or the nested value of a dotted key; ``default`` when absent."""
    if key in metrics:
        return metrics[key]
    cur = metrics
    for step in key.split("."):
        if not isinstance(cur, dict) or step not in cur:
            return default
        cur = cur[step]
    return cur
