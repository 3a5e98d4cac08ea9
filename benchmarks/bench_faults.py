"""Issue-7 fault bench: SIGKILL a training process N times (default 6) at random moments, resume each
time, and check that the final weights equal an uninterrupted run's bit for bit.

    python benchmarks/bench_faults.py [--kills 6] [--steps 120]

Writes benchmarks/results/<date>-faults.md. The same check runs in CI with 2 kills (tests/test_faults.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
import yaml  # noqa: E402
from conftest import TOY_CFG, toy_arrays  # noqa: E402
from test_faults import final_weights, kill_and_resume  # noqa: E402

from varinv import config as config_mod  # noqa: E402
from varinv.data.store import from_arrays  # noqa: E402
from varinv.train.trainer import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        x, c, s = toy_arrays(96)
        ds = from_arrays(tmp / "toy", {"train": (x, c, s)})
        raw = json.loads(json.dumps(TOY_CFG))
        raw["data"]["path"] = str(ds.root)
        raw["train"].update({"steps": args.steps, "ckpt_every": 4})
        cfg_path = tmp / "cfg.yaml"
        cfg_path.write_text(yaml.safe_dump(raw))
        t0 = time.time()
        train(config_mod.from_dict(raw), tmp / "clean", progress=False, tensorboard=False)
        kill_and_resume(cfg_path, tmp / "killed", n_kills=args.kills, seed=args.seed)
        a, b = final_weights(tmp / "clean"), final_weights(tmp / "killed")
        equal = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        log = [json.loads(line) for line in (tmp / "killed" / "train_log.jsonl").read_text().splitlines()]
        wall = time.time() - t0
    today = datetime.date.today().isoformat()
    text = (
        f"# Fault bench ({today})\n\n"
        f"Command: `python benchmarks/bench_faults.py --kills {args.kills} --steps {args.steps} --seed {args.seed}`\n\n"
        f"A toy V3 run of {args.steps} steps (checkpoint every 4) was SIGKILLed {args.kills} times at random moments "
        f"after a new checkpoint appeared (some inside the next checkpoint write) and resumed with `--resume` each "
        f"time. Final weights equal to an uninterrupted run's, bit for bit: **{'yes' if equal else 'NO'}**. "
        f"Log lines written across all attempts: {len(log)}. Wall time {wall:.0f} s.\n"
    )
    out = ROOT / "benchmarks" / "results" / f"{today}-faults.md"
    out.write_text(text)
    print(text)
    sys.exit(0 if equal else 1)


if __name__ == "__main__":
    main()
