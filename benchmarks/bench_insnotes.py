"""Benchmark: render + features for the paper-sized InsNotes (12 instruments x 100 files x 120 notes + OOD).

Usage::

    python benchmarks/bench_insnotes.py                      # paper size, n_bins=128, 2 workers
    python benchmarks/bench_insnotes.py --files-per-instrument 10 --no-results   # quick look

Writes ``benchmarks/results/<date>-insnotes-generation.md`` and deletes the generated data unless
``--keep`` (it is written under /tmp, never into the repository). The disk size at the full 512
bins is computed from the float16 shapes (it is not generated).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"




def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/varinv-bench-insnotes")
    ap.add_argument("--files-per-instrument", type=int, default=100)
    ap.add_argument("--n-bins", type=int, default=None, help="default: the InsNotes CPU default (128)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--no-ood", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the generated dataset")
    ap.add_argument("--no-results", action="store_true", help="do not write the results Markdown")
    args = ap.parse_args()

    import numpy as np
    import torch

    from varinv.data import insnotes

    n_bins = args.n_bins or insnotes.DEFAULT_N_BINS
    out = Path(args.out)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    ds = insnotes.generate(out, files_per_instrument=args.files_per_instrument, seed=args.seed, n_bins=n_bins,
                           ood=not args.no_ood, workers=args.workers, overwrite=True, progress=True)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()[0]

    total = folder_bytes(out)
    split_rows, x_bytes, frag_total, label_bytes = [], 0, 0, 0
    for name, entry in ds.manifest["splits"].items():
        shape = entry["files"]["x.npy"]["shape"]
        n_frag = shape[0] * shape[1]
        frag_total += n_frag
        xb = (out / name / "x.npy").stat().st_size
        x_bytes += xb
        label_bytes += sum((out / name / f"{k}.npy").stat().st_size for k in ("content", "style"))
        split_rows.append((name, shape, entry["n"], n_frag, xb))
    other = total - x_bytes - label_bytes
    full_x = frag_total * 512 * 32 * 2  # float16, (1, 512, 32) per fragment
    params = ds.manifest["params"]
    unique_files = len({(f["program"], f["index"]) for v in json.loads((out / "files.json").read_text()).values()
                        for f in v})
    notes = unique_files * insnotes.NOTES_PER_FILE
    audio_hours = unique_files * insnotes.FILE_SAMPLES / 16000 / 3600

    lines = [
        f"# InsNotes generation benchmark ({dt.date.today().isoformat()})",
        "",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}` (run from the repository root)",
        "",
        f"Machine: {os.cpu_count()} CPU cores (`nproc` = {os.cpu_count()}), {cpu_model()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}; "
        f"FluidSynth via pyfluidsynth (Debian `libfluidsynth3`); soundfont {params['soundfont']}. "
        f"1-min load average {load_before:.1f} before and {load_after:.1f} after the run "
        f"(above ~{args.workers} means other processes shared the cores).",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| instruments x files | {len(params['programs'])} x {params['files_per_instrument']}"
        f" + OOD {len(params['ood_programs'])} x ({params['ood_files_per_instrument']} test + "
        f"{max(params['shots'] or [0])} shot pool) |",
        f"| files rendered | {unique_files} ({notes:,} notes, {audio_hours:.1f} h of 16-kHz audio) |",
        f"| workers | {args.workers} |",
        f"| **wall time (render + STFT + write)** | **{wall:.0f} s ({wall / 60:.1f} min)**, "
        f"{wall / unique_files * 1000:.0f} ms per file |",
        f"| n_bins | {n_bins} (fragments (1, {n_bins}, 32) float16) |",
        f"| fragments stored (shot splits included) | {frag_total:,} |",
        f"| **disk, this run** | **{gib(total)}** (x: {gib(x_bytes)}, labels: {gib(label_bytes)}, "
        f"MIDI + manifest + files.json: {gib(other)}) |",
        f"| disk at full 512 bins (arithmetic: fragments x 512 x 32 x 2 B + the rest) | "
        f"{gib(full_x + label_bytes + other)} |",
        "",
        "| split | x shape | samples | fragments | x size |",
        "|---|---|---|---|---|",
        *[f"| {n} | {tuple(s)} | {k} | {f:,} | {gib(b)} |" for n, s, k, f, b in split_rows],
        "",
        f"Soundfont tuning (measured median f0 deviation per program, semitones): "
        f"`{json.dumps(params['measured_transposition_semitones'])}`; key offsets applied: "
        f"`{json.dumps({k: v for k, v in params['key_offsets'].items() if v})}`.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_results:
        res = Path(__file__).resolve().parent / "results" / f"{dt.date.today().isoformat()}-insnotes-generation.md"
        res.parent.mkdir(parents=True, exist_ok=True)
        res.write_text(report)
        print(f"wrote {res}")
    if not args.keep:
        shutil.rmtree(out)
        print(f"deleted {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
