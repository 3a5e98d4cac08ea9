"""Training throughput on this CPU: our V3 step against a re-implementation of the original code's step.

    python benchmarks/bench_speed.py                      # paper size and CPU-small, write the report
    python benchmarks/bench_speed.py --configs configs/phonenums_v3_paper.yaml --rounds 3

Each variant runs in its own worker process (so that each has its own allocator state: the
reference keeps glibc's default malloc, ours sets what the trainer sets) and only one worker
computes at a time. After warm-up the parent runs rounds; in every round each variant takes
``--steps-per-round`` training steps, in an order rotated from round to round, so that load from
other processes on the machine hits all variants alike. Reported: the median over rounds of the
per-step time, as fragments (B × L) per second.

Variants
  ref            benchmarks/reference_v3.py: the original code's per-step path (fp32, NCHW,
                 (b, n, n, d) MPD, einsum EMA-VQ, AdamW, default malloc)
  ours           varinv.train.trainer.train_step with the trainer's set-up, config as given
  ours+cl        ... with train.channels_last = true
  ours+bf16      ... with train.precision = bf16
  ours+cl+bf16   ... both
  ours-malloc    (diagnostic, on request) ours without the trainer's glibc malloc settings

Batches are real training batches (make_batch of the trainer's batch_indices), prepared before
timing; the trainer prepares them in a background thread while the previous step runs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

VARIANTS = {
    "ref": None,
    "ours": [],
    "ours+cl": ["train.channels_last=true"],
    "ours+bf16": ["train.precision=bf16"],
    "ours+cl+bf16": ["train.channels_last=true", "train.precision=bf16"],
    "ours-malloc": [],  # diagnostic, not run by default: ours without the trainer's malloc settings
}
DEFAULT_VARIANTS = ["ref", "ours", "ours+cl", "ours+bf16", "ours+cl+bf16"]


def _batches(cfg, n: int):
    """(batches, fragment shape, source, kind): n real training batches of the config's dataset, or random
    images if it is missing."""
    import torch

    try:
        from varinv.data.batching import batch_indices, make_batch
        from varinv.data.store import open_dataset

        ds = open_dataset(cfg.data.path)
        split = ds.split("train")
        out = [make_batch(split, batch_indices(len(split), cfg.train.batch_size, cfg.train.seed, s)) for s in range(n)]
        return out, tuple(ds.fragment_shape), str(ds.root), ds.kind
    except Exception as e:  # noqa: BLE001 - the benchmark still times the step on random data
        g = torch.Generator().manual_seed(0)
        shape = (3, 48, 32)
        out = [{"x": torch.rand(cfg.train.batch_size, 10, *shape, generator=g)} for _ in range(n)]
        return out, shape, f"random ({e})", "image"


def worker(conn, variant: str, config: str, threads: int, n_batches: int, overrides: list[str] | None = None,
           start_step: int = 0) -> None:
    """One variant's process. ``overrides``: its config overrides (default: VARIANTS[variant]; another
    benchmark brings its own variants); ``start_step``: the step number the timed steps begin at."""
    import torch

    from varinv import config as config_mod

    if overrides is None:
        overrides = [] if VARIANTS[variant] is None else list(VARIANTS[variant])
    overrides = list(overrides)
    overrides.append(f"train.threads={threads}")
    cfg = config_mod.load(config, overrides)
    t = cfg.train
    batches, shape, source, kind = _batches(cfg, n_batches)
    if variant == "ref":
        from reference_v3 import ReferenceTrainer

        torch.set_num_threads(threads)
        torch.manual_seed(t.seed)
        ref = ReferenceTrainer(cfg.model, shape, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
        n_params = sum(p.numel() for p in ref.model.parameters())

        def one(step: int) -> None:
            ref.step(batches[step % len(batches)]["x"])

        def final() -> dict:
            return {}

    else:
        from varinv.methods import build_method
        from varinv.train import speed
        from varinv.train import trainer as tr

        # the set-up lines of trainer._train, in its order (no run folder, no data-parallel context)
        tr.set_threads(t.threads)
        if variant != "ours-malloc":
            tr.keep_freed_memory()
        tr._seed_all(t.seed)
        from varinv.config import for_data

        model = build_method(cfg.method, for_data(cfg, kind).model, shape, seed=t.seed)  # as build_for_dataset
        speed.setup(model, t)
        opt = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
        model.train()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=t.precision == "bf16")
        n_params = sum(p.numel() for p in model.parameters())
        ck = Path("/nonexistent")

        def one(step: int) -> None:
            for g in opt.param_groups:
                g["lr"] = t.lr * tr.lr_factor(step, t)
            tr.train_step(model, opt, batches[step % len(batches)], step, autocast, t.grad_clip, ck)

        def final() -> dict:
            return {"compile": speed.compile_summary(model)}

    conn.send({"params": n_params, "threads": torch.get_num_threads(), "data": source,
               "fragments": int(batches[0]["x"].shape[0] * batches[0]["x"].shape[1])})
    step = start_step
    while True:
        msg = conn.recv()
        if msg is None:
            conn.send(final())
            break
        times = []
        for _ in range(msg):
            t0, c0 = time.perf_counter(), time.process_time()
            one(step)
            times.append((time.perf_counter() - t0, time.process_time() - c0))
            step += 1
        conn.send(times)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def uptime() -> str:
    """`uptime`'s line (the load when a benchmark started goes into its report)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {loadavg()}"


def bench_config(config: str, variants: list[str], threads: int, warmup: int, rounds: int, per_round: int, log,
                 overrides: dict[str, list[str]] | None = None, start_step: int = 0):
    """Warm up each variant's worker, then time ``rounds`` rotated rounds. ``overrides``: variant ->
    config overrides (default VARIANTS). Returns (info, times, cpu, loads); info[v] holds the worker's
    set-up facts, its warm-up step times and what it reported on exit (e.g. ``compile``)."""
    ctx = mp.get_context("spawn")
    procs, conns, info = {}, {}, {}
    try:
        for v in variants:  # start and warm up one at a time
            a, b = ctx.Pipe()
            p = ctx.Process(target=worker, daemon=True,
                            args=(b, v, config, threads, 4, None if overrides is None else overrides[v], start_step))
            p.start()
            procs[v], conns[v] = p, a
            info[v] = a.recv()
            a.send(warmup)
            info[v]["warmup_s"] = [w for w, _ in a.recv()]
            log(f"  {v:14s} ready: {info[v]['params']:,} params, warm-up steps {[round(x, 2) for x in info[v]['warmup_s']]} s")
        times = {v: [] for v in variants}
        cpu = {v: [] for v in variants}
        loads = []
        for r in range(rounds):
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for v in order:
                conns[v].send(per_round)
                got = conns[v].recv()
                times[v].append(statistics.median(w for w, _ in got))
                cpu[v].append(statistics.median(c for _, c in got))
            loads.append(loadavg())
            log(f"  round {r + 1}/{rounds} ({' → '.join(order)}): "
                + ", ".join(f"{v} {times[v][-1]:.2f}s (cpu {cpu[v][-1]:.2f}s)" for v in variants)
                + f"; load {loads[-1]}")
    finally:
        for v, c in conns.items():
            try:
                c.send(None)
                if v in info and c.poll(30):
                    info[v].update(c.recv())
            except (BrokenPipeError, EOFError, OSError):
                pass
        for p in procs.values():
            p.join(timeout=30)
    return info, times, cpu, loads


def report_log():
    """(lines, log): log prints a line and keeps it for the report."""
    lines: list[str] = []

    def log(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    return lines, log


def write_report(out: Path, head: list[str], summary: list[str], lines: list[str]) -> None:
    """Head, tables and the run's log into ``out``; the tables also to stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(head + summary + ["## Log", "", "```", *lines, "```", ""]))
    print("\n".join(summary))
    print(f"wrote {out}")


def report_head(title: str, threads: int) -> list[str]:
    """The first lines of a speed report: title, command, machine, torch and load."""
    import torch

    from machine import cpu_model

    return [
        f"# {title}",
        "",
        f"command: `python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`".replace("  ", " "),
        "",
        f"* machine: {cpu_model()}, {os.cpu_count()} logical CPUs",
        f"* torch {torch.__version__}, threads per worker: {threads}",
        f"* `uptime` at start: {uptime()}",
    ]


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["configs/phonenums_v3_paper.yaml", "configs/phonenums_v3_small.yaml"])
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps-per-round", type=int, nargs="+", default=[1, 4],
                    help="steps each variant takes per round, one value per config (the last repeats)")
    ap.add_argument("--out", default=None, help="report path (default benchmarks/results/<date>-speed.md)")
    args = ap.parse_args()

    out = Path(args.out) if args.out else HERE / "results" / f"{date.today().isoformat()}-speed.md"
    lines, log = report_log()
    head = report_head(f"Training throughput: V3 on this CPU ({date.today().isoformat()})", args.threads) + [
        f"* warm-up {args.warmup} steps per variant, then {args.rounds} rounds (variants rotated each round); "
        "the figure per variant is the median over rounds of its per-step time",
        "",
    ]
    summary = []
    for i, config in enumerate(args.configs):
        per_round = args.steps_per_round[min(i, len(args.steps_per_round) - 1)]
        log(f"{config}: {per_round} step(s) per variant per round")
        t0 = time.time()
        info, times, cpu, loads = bench_config(config, args.variants, args.threads, args.warmup, args.rounds, per_round, log)
        log(f"  ({time.time() - t0:.0f} s)")
        frags = next(iter(info.values()))["fragments"]
        med = {v: statistics.median(times[v]) for v in args.variants}
        medc = {v: statistics.median(cpu[v]) for v in args.variants}
        summary.append(f"## {config}")
        summary.append("")
        summary.append(f"batch: {frags} fragments per step; data: {next(iter(info.values()))['data']}; "
                       f"load average after each round: {', '.join(loads)}")
        summary.append("")
        summary.append("| variant | params | wall s/step per round | median wall s/step | fragments/s (wall) | × ref (wall) "
                       "| × ref per round: median [min–max] | median CPU s/step | fragments per CPU-s | × ref (CPU) |")
        summary.append("|---|---:|---|---:|---:|---:|---|---:|---:|---:|")
        for v in args.variants:
            ratio = f"{med['ref'] / med[v]:.2f}" if "ref" in med else "–"
            ratio_c = f"{medc['ref'] / medc[v]:.2f}" if "ref" in medc else "–"
            paired = "–"
            if "ref" in times:  # ratios within a round, where the variants ran back to back
                rs = [a / b for a, b in zip(times["ref"], times[v])]
                paired = f"{statistics.median(rs):.2f} [{min(rs):.2f}–{max(rs):.2f}]"
            summary.append(f"| {v} | {info[v]['params']:,} | {', '.join(f'{x:.2f}' for x in times[v])} | "
                           f"{med[v]:.2f} | {frags / med[v]:.1f} | {ratio} | {paired} | {medc[v]:.2f} | "
                           f"{frags / medc[v]:.1f} | {ratio_c} |")
        summary.append("")
    write_report(out, head, summary, lines)


if __name__ == "__main__":
    main()
