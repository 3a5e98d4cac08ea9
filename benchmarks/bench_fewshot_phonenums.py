"""Few-shot OOD on PhoneNums: V3 (unsupervised fine-tuning, codebook frozen) vs the supervised counterpart.

Takes a trained V3 run folder (e.g. runs/bench-v3-phonenums/K10-seed0), runs the `ood` part of
`varinv evaluate` for the 10-shot split (5 draws by default; the protocol and the meaning of a draw are
in src/varinv/eval/ood.py), and writes benchmarks/results/<date>-fewshot-phonenums.md. It does not
touch RUN/metrics.json; the supervised counterpart and the judge are cached in RUN/eval_cache/.

    python benchmarks/bench_fewshot_phonenums.py RUN [--shots 10] [--draws 5] [--ood-fragments 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a trained V3 run folder")
    ap.add_argument("--shots", default="10", help="comma-separated shot counts (default 10)")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--ood-fragments", type=int, default=0, help="ood_test fragments scored (0 = all)")
    ap.add_argument("--n-eval", type=int, default=None, help="ID fragments for the atom→class map (default data.n_eval)")
    ap.add_argument("--classifier-steps", type=int, default=300, help="ID training steps of the supervised counterpart")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="output .md (default benchmarks/results/<date>-fewshot-phonenums.md)")
    args = ap.parse_args()

    import torch

    from varinv.eval.evaluate import EvalOptions, evaluate

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    run = Path(args.run)
    shots = tuple(int(s) for s in args.shots.split(","))
    opts = EvalOptions(draws=args.draws, shots=shots, ood_fragments=args.ood_fragments,
                       classifier_steps=args.classifier_steps)
    load0 = os.getloadavg()[0]
    t0 = time.time()
    m = evaluate(run, n_eval=args.n_eval, what=["ood"], options=opts, raise_errors=True, write=False, plots=False)
    wall = time.time() - t0
    load1 = os.getloadavg()[0]
    ood = m["ood"]
    few = ood["few_shot"]
    sup = ood["supervised_counterpart"]
    date = datetime.date.today().isoformat()
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"{date}-fewshot-phonenums.md"
    lines = [
        f"# Few-shot OOD on PhoneNums ({date})",
        "",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"Run: `{run}` (method {m['method']}, K = {m['n_atoms']}, trained {m['step']} steps, "
        f"dataset `{m['dataset']}`)",
        f"Machine: {platform.machine()}, nproc={os.cpu_count()}, torch threads {torch.get_num_threads()}, "
        f"load average {load0:.1f} before / {load1:.1f} after; wall time {wall:.0f} s.",
        "",
        "Protocol (papers.md §1.8, item 4): deep copy of the model, codebook frozen, one epoch of the model's own "
        "unsupervised loss over the shot set (AdamW lr 1e-4, train() mode), then every `ood_test` fragment is "
        "classified through the in-distribution atom→class map. The supervised counterpart is "
        f"`{sup.get('kind')}` trained {opts.classifier_steps} steps on the ID train split "
        "(cached in RUN/eval_cache/), fine-tuned on the same shot batches with content labels (1 epoch, lr 1e-4). "
        f"Draw 0 is the stored `ood_<N>shot` split; draws 1.. pick N rows per colour from `{few['draw_pool']}` "
        "(for N = 10 that is every row, so those draws differ only in batch order). Mean ± sample std over draws.",
        "",
        f"ood_test fragments scored: {ood['n_ood_fragments']}. Zero-shot (no fine-tuning): V3 "
        f"{ood['zero_shot']['accuracy']:.3f} (atoms mapped one-to-one: {ood['zero_shot']['one_to_one_fraction']:.2f}); "
        f"supervised {sup['zero_shot_ood_accuracy']:.3f} (its ID test accuracy {sup['id_test_accuracy']:.3f}).",
    ]
    if "note" in ood:
        lines += ["", f"Note: {ood['note']}."]
    lines += ["", "| shots | draws | distinct shot sets | V3 accuracy | supervised accuracy |", "|---|---|---|---|---|"]
    for n in shots:
        f = few.get(str(n))
        if not f:
            continue
        u, s = f["unsupervised"], f["supervised"]
        lines.append(f"| {n} | {u['n']} | {f['distinct_subsets']} | **{u['mean']:.3f} ± {u['std']:.3f}** | "
                     f"**{s['mean']:.3f} ± {s['std']:.3f}** |")
    lines += ["", "Per-draw values:", "", "```json",
              json.dumps({n: {k: few[n][k]["values"] for k in ("unsupervised", "supervised")}
                          for n in map(str, shots) if n in few}, indent=1), "```", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
