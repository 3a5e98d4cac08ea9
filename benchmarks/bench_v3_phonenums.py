"""Issue-2 acceptance: V3 on PhoneNums, K = 10 over 3 seeds (median), K = 20 and 40 (one seed).

Generates the dataset if missing, trains each run as its own process (two at a time, one thread
each, so both cores are used and runs do not disturb each other's thread pools), evaluates, and
writes benchmarks/results/<date>-v3-phonenums.md with every number and the command.

    python benchmarks/bench_v3_phonenums.py [--config configs/phonenums_v3_small.yaml] [--parallel 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from varinv.bench import Job, run_commands, target_text, train_then_evaluate, verdict

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["codebook_purity", "one_to_one_accuracy", "prauc_zc_content", "prauc_zs_style",
        "prauc_zs_content", "prauc_zc_style", "atoms_used", "train_seconds"]
TARGETS = {"codebook_purity": (">=", 0.90), "one_to_one_accuracy": (">=", 0.85), "prauc_zc_content": (">=", 0.85),
           "prauc_zs_style": (">=", 0.85), "prauc_zs_content": ("<=", 0.30), "prauc_zc_style": ("<=", 0.30),
           "train_seconds": ("<=", 1200)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/phonenums_v3_small.yaml")
    ap.add_argument("--data", default="data/phonenums-10k")
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--out", default="runs/bench-v3-phonenums")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--extra-k", default="20,40")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides for every run")
    args = ap.parse_args()
    os.chdir(ROOT)
    varinv = [sys.executable, "-m", "varinv"]
    if not (Path(args.data) / "manifest.json").exists():
        subprocess.run(varinv + ["data", "phonenums", "--out", args.data, "--size", str(args.rows)], check=True)
    cells = [(10, int(s)) for s in args.seeds.split(",")]
    cells += [(int(k), 0) for k in args.extra_k.split(",") if k]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    threads = max(1, (os.cpu_count() or 2) // args.parallel)

    def steps(run: Path, k: int, seed: int):
        sets = [f"data.path={args.data}", f"model.n_atoms={k}", f"train.seed={seed}", *args.set]
        return train_then_evaluate(varinv, args.config, run, sets, threads)

    # the scheduler of `varinv benchmark`: --parallel runs at once, each run's evaluation in its slot
    jobs = []
    for k, seed in dict.fromkeys(cells):  # a run listed twice (e.g. --extra-k 10) is trained once
        run = Path(args.out) / f"K{k}-seed{seed}"
        if not (run / "metrics.json").exists():
            jobs.append(Job(run.name, steps(run, k, seed), run.parent / f"{run.name}.log"))
    t0 = time.time()
    run_commands(jobs, args.parallel, env)
    rows = []
    for k, seed in cells:
        p = Path(args.out) / f"K{k}-seed{seed}" / "metrics.json"
        if p.exists():
            rows.append((k, seed, json.loads(p.read_text())))
    write_report(args, rows, time.time() - t0)


def write_report(args, rows, wall) -> None:
    today = datetime.date.today().isoformat()
    lines = [f"# V3 on PhoneNums ({today})", "",
             f"Command: `python benchmarks/bench_v3_phonenums.py --config {args.config} "
             + " ".join(f"--set {s}" for s in args.set) + f"` (parallel {args.parallel}, wall {wall / 60:.1f} min)",
             f"Machine: {os.cpu_count()} CPU cores, no GPU. Dataset: {args.data} ({args.rows} rows, seed 0).",
             "Metrics on the test split: purity/one-to-one on all test fragments, PR-AUC on 1,000 of them.", "",
             "| K | seed | " + " | ".join(KEYS) + " |", "|" + "---|" * (len(KEYS) + 2)]
    for k, seed, m in rows:
        lines.append(f"| {k} | {seed} | " + " | ".join(_fmt(m.get(key)) for key in KEYS) + " |")
    k10 = [m for k, _, m in rows if k == 10]
    if k10:
        lines += ["", f"**K = 10, median over {len(k10)} seeds**", "", "| metric | median | target | met |", "|---|---|---|---|"]
        for key in KEYS:
            med = statistics.median(m[key] for m in k10)
            target = TARGETS.get(key)
            lines.append(f"| {key} | {_fmt(med)} | {target_text(target)} | {verdict(med, target)} |")
    out = ROOT / "benchmarks" / "results" / f"{today}-v3-phonenums.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


if __name__ == "__main__":
    main()
