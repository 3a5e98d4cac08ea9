"""Issue-3 acceptance: V3 on InsNotes (K = 12 over 3 seeds, median; K = 24 and 48, one seed) and on
Waveforms (K = 21 over 3 seeds, median).

Generates the datasets if missing (InsNotes at the paper size, 100 files per instrument, 128 bins;
Waveforms with the generator's defaults: 1000 samples of all 21 tones, 256 bins, 8 frames), trains each run as its own process (``--parallel`` at a time, one
thread each), evaluates, writes the recombination WAVs of the first InsNotes run, and writes
benchmarks/results/<date>-v3-insnotes.md with every number, the targets and the command.

    python benchmarks/bench_v3_insnotes.py [--config configs/insnotes_v3_small.yaml] [--parallel 2]

Smoke test (minutes): ``--seeds 0 --extra-k '' --wf-seeds 0 --set train.steps=100 --data data/insnotes-f10
--files 10 --wf-samples 200 --wf-data /tmp/wf-200 --out /tmp/bench-smoke --report /tmp/smoke.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from varinv.bench import Job, run_commands, target_text, train_then_evaluate, verdict

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["codebook_purity", "one_to_one_accuracy", "prauc_zc_content", "prauc_zs_style",
        "prauc_zs_content", "prauc_zc_style", "atoms_used", "recon_mse", "train_seconds"]
TARGETS = {"codebook_purity": (">=", 0.90), "one_to_one_accuracy": (">=", 0.85), "prauc_zc_content": (">=", 0.85),
           "prauc_zs_style": (">=", 0.80), "prauc_zs_content": ("<=", 0.30), "prauc_zc_style": ("<=", 0.30),
           "train_seconds": ("<=", 1800)}
WF_KEYS = ["prauc_zc_content", "prauc_zs_style", "prauc_zs_content", "prauc_zc_style", "codebook_purity",
           "one_to_one_accuracy", "atoms_used", "train_seconds"]
WF_TARGETS = {"prauc_zc_content": (">=", 0.80), "prauc_zs_style": (">=", 0.80)}
LABELS = {"prauc_zc_content": "PR-AUC(z_c, content)", "prauc_zs_style": "PR-AUC(z_s, style)",
          "prauc_zs_content": "PR-AUC(z_s, content) (cross)", "prauc_zc_style": "PR-AUC(z_c, style) (cross)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/insnotes_v3_small.yaml")
    ap.add_argument("--data", default="data/insnotes")
    ap.add_argument("--files", type=int, default=100, help="InsNotes files per instrument if generated")
    ap.add_argument("--n-bins", type=int, default=128, help="InsNotes bins if generated")
    ap.add_argument("--wf-config", default="configs/waveforms_v3_small.yaml")
    ap.add_argument("--wf-data", default="data/waveforms")
    ap.add_argument("--wf-samples", type=int, default=1000, help="Waveforms samples if generated")
    ap.add_argument("--wf-seeds", default="0,1,2", help="Waveforms seeds ('' skips Waveforms)")
    ap.add_argument("--out", default="runs/bench-v3-insnotes")
    ap.add_argument("--report", default=None, help="default benchmarks/results/<date>-v3-insnotes.md")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--extra-k", default="24,48")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides for every run")
    ap.add_argument("--no-recombine", action="store_true", help="skip the WAVs of the first InsNotes run")
    args = ap.parse_args()
    os.chdir(ROOT)
    varinv = [sys.executable, "-m", "varinv"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t_data = time.time()
    if (args.seeds or args.extra_k) and not (Path(args.data) / "manifest.json").exists():
        subprocess.run(varinv + ["data", "insnotes", "--out", args.data, "--size", str(args.files),
                                 "--n-bins", str(args.n_bins)], check=True, env=env)
    wf_seeds = [int(s) for s in args.wf_seeds.split(",") if s]
    if wf_seeds and not (Path(args.wf_data) / "manifest.json").exists():
        subprocess.run(varinv + ["data", "waveforms", "--out", args.wf_data, "--size", str(args.wf_samples)],
                       check=True, env=env)
    t_data = time.time() - t_data
    # (tag, dataset, config, K, seed); K = None keeps the config's K (Waveforms: 21)
    cells = [("insnotes", args.data, args.config, 12, int(s)) for s in args.seeds.split(",") if s]
    cells += [("insnotes", args.data, args.config, int(k), 0) for k in args.extra_k.split(",") if k]
    cells += [("waveforms", args.wf_data, args.wf_config, None, s) for s in wf_seeds]
    threads = max(1, (os.cpu_count() or 2) // args.parallel)

    def steps(run: Path, data: str, config: str, k, seed: int):
        sets = [f"data.path={data}", f"train.seed={seed}", *([f"model.n_atoms={k}"] if k is not None else []),
                *args.set]
        return train_then_evaluate(varinv, config, run, sets, threads)

    # the scheduler of `varinv benchmark`: --parallel runs at once, each run's evaluation in its slot
    jobs = []
    for tag, data, config, k, seed in dict.fromkeys(cells):  # a run listed twice is trained once
        run = run_dir(args, tag, k, seed)
        if not (run / "metrics.json").exists():
            jobs.append(Job(run.name, steps(run, data, config, k, seed), run.parent / f"{run.name}.log"))
    t0 = time.time()
    run_commands(jobs, args.parallel, env)
    audio = {tag: recombine_first(args, cells, tag, varinv, env) for tag in ("insnotes", "waveforms")}
    rows = {}
    for tag, _, _, k, seed in cells:
        p = run_dir(args, tag, k, seed) / "metrics.json"
        if p.exists():
            rows.setdefault(tag, []).append((k, seed, json.loads(p.read_text())))
    write_report(args, rows, time.time() - t0, t_data, audio)


def recombine_first(args, cells, tag: str, varinv: list, env: dict):
    """The recombination WAV folder of the first run of ``tag`` (made now unless --no-recombine)."""
    first = next((run_dir(args, t, k, s) for t, _, _, k, s in cells if t == tag), None)
    if first is None:
        return None
    if (first / "recombine" / "audio").is_dir() and args.no_recombine:
        return first / "recombine" / "audio"  # from an earlier invocation
    if args.no_recombine or not (first / "metrics.json").exists():
        return None
    res = subprocess.run(varinv + ["recombine", str(first)], env=env, check=False, capture_output=True, text=True)
    return (first / "recombine" / "audio") if res.returncode == 0 else f"failed: {res.stderr.strip()[-300:]}"


def run_dir(args, tag: str, k, seed: int) -> Path:
    return Path(args.out) / (f"K{k}-seed{seed}" if tag == "insnotes" else f"waveforms-seed{seed}")


def _dataset_line(path: str) -> str:
    try:
        m = json.loads((Path(path) / "manifest.json").read_text())
    except (OSError, ValueError):
        return f"{path} (missing)"
    p = m.get("params", {})
    n = {s: m["splits"][s]["n"] for s in ("train", "val", "test") if s in m.get("splits", {})}
    size = (f"{p['files_per_instrument']} files/instrument" if "files_per_instrument" in p
            else f"{p.get('n_samples', '?')} samples")
    shape = f"{p.get('n_bins')} bins" + (f" x {p['fragment_frames']} frames, {p['n_fragments']} fragments/sample"
                                          if "n_fragments" in p else "")
    return f"{path} ({m.get('generator')}, {size}, {shape}, seed {m.get('seed')}; samples {n})"


def write_report(args, rows: dict, wall: float, t_data: float, audio) -> None:
    today = datetime.date.today().isoformat()
    cmd = "python benchmarks/bench_v3_insnotes.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [f"# V3 on InsNotes and Waveforms ({today})", "",
             f"Command: `{cmd.strip()}` (parallel {args.parallel}, wall {wall / 60:.1f} min training + evaluation, "
             f"{t_data / 60:.1f} min data generation)",
             f"Machine: {os.cpu_count()} CPU cores, no GPU; one thread per run.",
             f"InsNotes: config {args.config}; dataset {_dataset_line(args.data)}.",
             "Metrics on the test split: purity / one-to-one on all test fragments, PR-AUC on 1,000 of them "
             "(`varinv evaluate --no-tsne`).", ""]
    ins = rows.get("insnotes", [])
    lines += ["## InsNotes (content = pitch, 12 classes; style = instrument, 12 classes)", "",
              "| K | seed | " + " | ".join(KEYS) + " |", "|" + "---|" * (len(KEYS) + 2)]
    for k, seed, m in ins:
        lines.append(f"| {k} | {seed} | " + " | ".join(_fmt(m.get(key)) for key in KEYS) + " |")
    k12 = [m for k, _, m in ins if k == 12]
    if k12:
        lines += ["", f"**K = 12, median over {len(k12)} seed(s), against the issue-3 targets**", "",
                  "| metric | median | target | met |", "|---|---|---|---|"]
        for key in KEYS:
            vals = [m[key] for m in k12 if m.get(key) is not None]
            med = statistics.median(vals) if vals else None
            target = TARGETS.get(key)
            lines.append(f"| {LABELS.get(key, key)} | {_fmt(med)} | {target_text(target)} | {verdict(med, target)} |")
    if not ins:
        lines.append("(not run)")
    if audio["insnotes"] is not None:
        lines += ["", f"Recombination audio of the first K = 12 run (Griffin-Lim, `varinv recombine`): {audio['insnotes']}"]
    wf = rows.get("waveforms", [])
    lines += ["", "## Waveforms (content = frequency, 21 classes; style = waveform, 4 classes)", "",
              f"Config {args.wf_config}; dataset {_dataset_line(args.wf_data)}.", ""]
    if wf:
        lines += ["| seed | " + " | ".join(WF_KEYS) + " |", "|" + "---|" * (len(WF_KEYS) + 1)]
        for _, seed, m in wf:
            lines.append(f"| {seed} | " + " | ".join(_fmt(m.get(key)) for key in WF_KEYS) + " |")
        lines += ["", "| metric | median | target | met |", "|---|---|---|---|"]
        for key, target in WF_TARGETS.items():
            med = statistics.median(m[key] for _, _, m in wf)
            lines.append(f"| {LABELS[key]} | {_fmt(med)} | {target_text(target)} | {verdict(med, target)} |")
        if audio["waveforms"] is not None:
            lines += ["", f"Recombination audio of the first run (Griffin-Lim, `varinv recombine`): {audio['waveforms']}"]
    else:
        lines.append("(not run)")
    out = Path(args.report) if args.report else ROOT / "benchmarks" / "results" / f"{today}-v3-insnotes.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out}")


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


if __name__ == "__main__":
    main()
