"""Time PhoneNums generation (10,000 rows by default) on one CPU core and record the result.

    python benchmarks/bench_phonenums.py [--rows 10000] [--no-ood] [--all-cores]

Pins the process to one core (unless --all-cores) and limits BLAS/OpenMP threads to 1, generates into
a temporary folder, prints the seconds and writes benchmarks/results/<YYYY-MM-DD>-phonenums-generation.md.
"""

from __future__ import annotations

import os
import sys

ONE_CORE = "--all-cores" not in sys.argv
if ONE_CORE:  # before numpy is imported, so its BLAS starts with one thread
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from varinv.data import phonenums  # noqa: E402
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

LIMIT_S = 30.0




def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ood", action="store_true", help="skip the OOD splits")
    ap.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    if ONE_CORE and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    with tempfile.TemporaryDirectory() as tmp:
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        t0, c0 = time.perf_counter(), time.process_time()
        ds = phonenums.generate(Path(tmp) / "phonenums", n_rows=args.rows, seed=args.seed, ood=not args.no_ood)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        sizes = {name: ds.manifest["splits"][name]["n"] for name in ds.splits}
        nbytes = sum(f.stat().st_size for f in Path(ds.root).rglob("*.npy"))

    n_id = sum(v for k, v in sizes.items() if not k.startswith("ood_"))
    n_ood = sizes.get("ood_test", 0) + sizes.get("ood_10shot", 0)  # the 1/5-shot rows are a subset of 10-shot
    total = n_id + n_ood
    ok = seconds < LIMIT_S
    print(
        f"PhoneNums: {n_id} in-distribution rows + {n_ood} OOD rows = {total} rows in {seconds:.1f} s "
        f"({total / seconds:.0f} rows/s; {cpu_seconds:.1f} s CPU) on {cores} core(s) -> {'OK' if ok else 'SLOWER THAN'} {LIMIT_S:.0f} s target"
    )

    today = datetime.date.today().isoformat()
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{today}-phonenums-generation.md"
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    out.write_text(
        f"# PhoneNums generation time ({today})\n\n"
        f"- command: `{command}`\n"
        f"- rows: {n_id} in-distribution ({', '.join(f'{k} {v}' for k, v in sizes.items() if not k.startswith('ood_'))})"
        f" + {n_ood} OOD rendered (ood_test {sizes.get('ood_test', 0)}, shot pool {sizes.get('ood_10shot', 0)};"
        f" 1/5-shot are subsets) = {total} rows, {nbytes / 2**20:.0f} MiB on disk\n"
        f"- time: **{seconds:.1f} s** wall, {cpu_seconds:.1f} s CPU ({total / seconds:.0f} rows/s), "
        f"target < {LIMIT_S:.0f} s: {'met' if ok else 'NOT met'}\n"
        f"- load average when started: {load_before:.2f} (the machine may be shared: wall > CPU means contention)\n"
        f"- cores used: {cores} ({'pinned to one core, BLAS/OpenMP threads = 1' if ONE_CORE else 'all cores'})\n"
        f"- machine: nproc {os.cpu_count()}, {cpu_model()}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}\n"
        f"- time covers glyph bank, rendering, writing the .npy files and their sha256 checksums\n"
    )
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
