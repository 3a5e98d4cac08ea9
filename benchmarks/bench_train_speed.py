"""Training steps per second of the CPU-small configs under each speed option (tracker issue 19).

    python benchmarks/bench_train_speed.py                         # all configs and variants, the report
    python benchmarks/bench_train_speed.py --configs configs/phonenums_v3_small.yaml --variants default compile

The machinery is bench_speed.py's (imported, not copied): one worker process per variant running
the trainer's own ``train_step`` on real training batches, warm-up steps, then rounds in which each
variant takes ``--steps-per-round`` steps in an order rotated from round to round, so that load from
other processes hits all variants alike. Reported per variant: the median over rounds of the median
per-step time, steps/s, and the speed-up against ``former`` (overall and within each round).

Compilation is paid once per input shape and mode, in the first steps, so it is reported apart from
the step time: the first warm-up step's time, and the warm-up steps' excess over the median step time
as the compile cost. Each run starts from an empty inductor cache (a fresh TORCHINDUCTOR_CACHE_DIR)
unless ``--keep-cache``, so that is what a first run on a machine pays; later runs reuse the cache.

Step-gated terms are off before their step (Waveforms' reassignment until 150, TS-DSAE's stage 2
until 1000): ``--start-step 1000`` times the steps that make up most of a run, and puts the stage-2
recompilation into the warm-up.

Variants (config overrides); the speed-up column is against ``former`` when it runs, else ``default``
  former           the defaults before issue 19: NCHW, the decoder's full-size last block (nearest)
  default          the configs as shipped (fp32; channels_last auto: NHWC on one thread, NCHW on more; V3's
                   decoder ends in a sub-pixel layer)
  cl               default but channels_last=true (NHWC whatever the thread count)
  bf16             default plus precision=bf16 (autocast; different arithmetic)
  nchw             default but channels_last=false
  nearest          default but model.decoder_upsample=nearest
  compile          default plus compile=true (the conv trunks through torch.compile, src/varinv/train/speed.py)
  posed            default plus model.w_posed_nce=0.1 (V3's posed InfoNCE: an extra encoder pass on a quarter of
                   the fragments), the cost of a regulariser rather than a speed option
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_speed import bench_config, report_head, report_log, write_report  # noqa: E402

CONFIGS = [
    "configs/phonenums_v3_small.yaml",
    "configs/insnotes_v3_small.yaml",
    "configs/waveforms_v3_small.yaml",
    "configs/phonenums_tsdsae_small.yaml",
]
NCHW, NEAREST = "train.channels_last=false", "model.decoder_upsample=nearest"
VARIANTS = {
    "former": [NCHW, NEAREST],
    "default": [],
    "bf16": ["train.precision=bf16"],
    "nchw": [NCHW],
    "cl": ["train.channels_last=true"],
    "nearest": [NEAREST],
    "compile": ["train.compile=true"],
    "posed": ["model.w_posed_nce=0.1"],
}
DEFAULT_VARIANTS = ["former", "default", "bf16", "nchw", "nearest", "compile"]


def data_override(config: str, data_root: str | None) -> str:
    """``data.path=<absolute folder>`` for ``config``: its own data.path, or the folder of that name under
    ``data_root``. A folder without a dataset is a ValueError saying how to make one."""
    from varinv import config as config_mod

    path = Path(str((config_mod.read_yaml(config).get("data") or {}).get("path", "")))
    if data_root is not None:
        path = Path(data_root) / path.name
    if not (path / "manifest.json").is_file():
        kind = path.name.split("-")[0]
        known = kind in ("phonenums", "insnotes", "waveforms")
        how = f"varinv data {kind} --out {path}" if known else "varinv data --help"
        raise ValueError(f"no dataset at {path} (needed by {config}); generate it (`{how}`) or point --data-root "
                         "at the folder that holds it")
    return f"data.path={path.resolve()}"


def table(config: str, variants: list[str], info, times, cpu, loads) -> list[str]:
    """The markdown section of one config."""
    first = info[variants[0]]
    med = {v: statistics.median(times[v]) for v in variants}
    base = next((b for b in ("former", "default") if b in med), None)
    out = [f"## {config}", "",
           f"{first['params']:,} parameters; batch {first['fragments']} fragments per step; data: {first['data']}; "
           f"load average after each round: {', '.join(loads)}", "",
           f"| variant | median s/step | steps/s | × {base} | × {base} per round: median [min–max] "
           "| s/step per round | median CPU s/step | first step s | compile s (warm-up − median) |",
           "|---|---:|---:|---:|---|---|---:|---:|---:|"]
    for v in variants:
        ratio, paired = "–", "–"
        if base is not None:
            ratio = f"{med[base] / med[v]:.2f}"
            rs = [a / b for a, b in zip(times[base], times[v])]
            paired = f"{statistics.median(rs):.2f} [{min(rs):.2f}–{max(rs):.2f}]"
        warm = info[v].get("warmup_s") or [float("nan")]
        compiled = "compile" in v
        excess = sum(max(w - med[v], 0.0) for w in warm)  # a recompile may fall on a later warm-up step
        out.append(f"| {v} | {med[v]:.3f} | {1 / med[v]:.2f} | {ratio} | {paired} | "
                   f"{', '.join(f'{x:.3f}' for x in times[v])} | {statistics.median(cpu[v]):.3f} | {warm[0]:.2f} | "
                   f"{f'{excess:.1f}' if compiled else '–'} |")
    notes = [f"* {v}: {info[v]['compile']}" for v in variants if info[v].get("compile", "off") != "off"]
    if notes:
        out += ["", "torch.compile, per worker at exit:", "", *notes]
    return out + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=CONFIGS)
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (train.threads)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant (the first ones compile)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps-per-round", type=int, nargs="+", default=[5],
                    help="steps each variant takes per round, one value per config (the last repeats)")
    ap.add_argument("--start-step", type=int, default=0,
                    help="step number of the first step (step-gated terms, e.g. waveforms' reassign_start 150, "
                         "TS-DSAE's switch_step 1000, are off before theirs)")
    ap.add_argument("--data-root", default=None,
                    help="folder holding the datasets: each config's data.path becomes DATA_ROOT/<its last part>")
    ap.add_argument("--keep-cache", action="store_true",
                    help="use the default inductor cache instead of an empty one (compile times then shrink)")
    ap.add_argument("--out", default=None, help="report path (default benchmarks/results/<date>-train-speed.md)")
    args = ap.parse_args()

    try:
        data = {c: data_override(c, args.data_root) for c in args.configs}
    except Exception as e:  # noqa: BLE001 - a missing config or dataset: one line, before any worker starts
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    out = Path(args.out) if args.out else HERE / "results" / f"{date.today().isoformat()}-train-speed.md"
    cache = None
    if not args.keep_cache:  # the workers inherit the environment
        cache = tempfile.mkdtemp(prefix="bench-train-speed-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    lines, log = report_log()
    head = report_head(f"Training speed options on this CPU ({date.today().isoformat()})", args.threads) + [
        f"* warm-up {args.warmup} steps per variant, then {args.rounds} rounds (variants rotated each round) from "
        f"step {args.start_step}; the figure per variant is the median over rounds of its median per-step time",
        f"* inductor cache: {'the default one (--keep-cache)' if cache is None else 'empty at start'}",
        "",
    ]
    summary: list[str] = []
    try:
        for i, config in enumerate(args.configs):
            per_round = args.steps_per_round[min(i, len(args.steps_per_round) - 1)]
            log(f"{config}: {per_round} step(s) per variant per round ({data[config]})")
            t0 = time.time()
            overrides = {v: [data[config], *VARIANTS[v]] for v in args.variants}
            res = bench_config(config, args.variants, args.threads, args.warmup, args.rounds, per_round, log,
                               overrides=overrides, start_step=args.start_step)
            log(f"  ({time.time() - t0:.0f} s)")
            summary += table(config, args.variants, *res)
    finally:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
    write_report(out, head, summary, lines)


if __name__ == "__main__":
    main()
