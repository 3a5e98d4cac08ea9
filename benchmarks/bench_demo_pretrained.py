"""How long `varinv demo --pretrained` takes after install (issue 16's target: at most 60 s).

    python benchmarks/bench_demo_pretrained.py            # 3 rounds, writes benchmarks/results/DATE-demo-pretrained.md
    python benchmarks/bench_demo_pretrained.py --rounds 5

Each round runs the installed command in a fresh folder, as a user would. Timing belongs here rather than in a
unit test: a test on a shared machine fails whenever something else computes beside it. Run it while nothing
else runs; the report says the load average at the start so that a noisy run can be told apart.
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

TARGET_S = 60.0


def one_round(exe: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([exe, "demo", "--pretrained", "--out", str(Path(tmp) / "demo")], cwd=tmp,
                              capture_output=True, text=True, timeout=600)
        took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: varinv demo --pretrained failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    return took


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "results" / f"{date.today()}-demo-pretrained.md")
    a = p.parse_args(argv)
    if a.rounds < 1:
        print("error: --rounds must be at least 1; pass e.g. --rounds 3", file=sys.stderr)
        return 2
    from machine import cpu_model
    from make_pretrained import varinv_command

    exe = varinv_command()
    load = os.getloadavg()[0]
    times = [one_round(exe) for _ in range(a.rounds)]
    med = statistics.median(times)
    verdict = "meets" if med <= TARGET_S else "misses"
    lines = ["# `varinv demo --pretrained`: wall time after install", "",
             f"Date: {date.today()}. Machine: {cpu_model()}, {os.cpu_count()} cores; load average "
             f"{load:.2f} at the start. Command: `python benchmarks/bench_demo_pretrained.py --rounds {a.rounds}`.", "",
             "| round | seconds |", "|---|---|", *[f"| {i + 1} | {t:.1f} |" for i, t in enumerate(times)], "",
             f"Median {med:.1f} s: {verdict} the {TARGET_S:.0f}-second target.", ""]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines))
    print(f"median {med:.1f} s over {a.rounds} rounds ({verdict} {TARGET_S:.0f} s); wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
