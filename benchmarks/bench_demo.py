"""Wall time of the demo (`make demo`: data → training → evaluation → recombination → page), stage by stage,
for one or more checkouts of varinv side by side (issue 19: "make demo timed before and after").

    python benchmarks/bench_demo.py                                   # this checkout, 1 round
    python benchmarks/bench_demo.py --trees /path/to/before . --rounds 2   # rounds alternate the trees

Each tree runs the Makefile's demo commands with its own source (PYTHONPATH=<tree>/src, this venv's packages)
and its own demo config, in a fresh temporary folder, so that nothing of one tree's run is reused by the
other. Run it while nothing else runs; the report gives the load average at the start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_speed import loadavg  # noqa: E402


def stages(tree: Path, work: Path, extra: list[str]) -> list[tuple[str, list[str]]]:
    """The Makefile's demo target as (stage, varinv arguments), with the data and run under ``work``."""
    data, run = str(work / "phonenums-demo"), str(work / "demo")
    sets = [a for s in [f"data.path={data}", *extra] for a in ("--set", s)]
    return [
        ("data", ["data", "phonenums", "--out", data, "--size", "3000", "--seed", "0", "--overwrite"]),
        ("train", ["train", str(tree / "configs/phonenums_v3_demo.yaml"), "--run", run, "--no-progress", *sets]),
        ("evaluate", ["evaluate", run]),
        ("recombine", ["recombine", run]),
        ("report", ["report", run, "-o", str(work / "demo" / "site")]),
    ]


def one_round(tree: Path, extra: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in stages(tree, Path(tmp), extra):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "varinv", *args], cwd=tmp, env=env, capture_output=True,
                                  text=True)
            out[name] = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.exit(f"error: {tree}: varinv {name} failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    out["total"] = sum(out.values())
    return out


def git_rev(tree: Path) -> str:
    proc = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (proc.stdout.strip() or "?") + (" (modified)" if dirty else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", nargs="+", default=[str(HERE.parent)], help="varinv checkouts to time")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="extra training override (e.g. for a quick check)")
    ap.add_argument("--out", default=None, help="report path (default benchmarks/results/<date>-demo-time.md)")
    a = ap.parse_args(argv)
    trees = [Path(t).resolve() for t in a.trees]
    for t in trees:
        if not (t / "configs/phonenums_v3_demo.yaml").is_file() or not (t / "src/varinv").is_dir():
            print(f"error: {t} is not a varinv checkout (no configs/phonenums_v3_demo.yaml or src/varinv); "
                  "pass --trees with checkout folders", file=sys.stderr)
            return 2
    start = loadavg()
    times: dict[Path, list[dict]] = {t: [] for t in trees}
    for r in range(a.rounds):
        order = trees if r % 2 == 0 else trees[::-1]
        for t in order:
            times[t].append(one_round(t, a.set))
            print(f"round {r + 1}: {t} {times[t][-1]['total']:.0f} s (load {loadavg()})", flush=True)
    names = list(times[trees[0]][0])
    lines = [f"# Demo wall time ({date.today().isoformat()})", "",
             f"command: `python benchmarks/bench_demo.py {' '.join(sys.argv[1:] if argv is None else argv)}`", "",
             f"* load average at start: {start}; at end: {loadavg()}",
             f"* {a.rounds} round(s), trees alternating; median seconds per stage", "",
             "| tree | commit | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for t in trees:
        med = {n: statistics.median(x[n] for x in times[t]) for n in names}
        lines.append(f"| {t} | {git_rev(t)} | " + " | ".join(f"{med[n]:.0f}" for n in names) + " |")
    out = Path(a.out) if a.out else HERE / "results" / f"{date.today().isoformat()}-demo-time.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
