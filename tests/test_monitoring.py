"""Monitoring a run (src/varinv/train/monitor.py): plain progress lines outside a terminal, grouped
TensorBoard scalars, atom usage and checkpoint images, and no effect of any of it on the numbers."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch
import yaml

from conftest import TOY_CFG
from varinv import config as config_mod
from varinv.train import checkpoint as ckpt
from varinv.train import monitor
from varinv.train.trainer import train


def _raw(ds, **train_over) -> dict:
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(ds.root)
    raw["train"].update(train_over)
    return raw


def _train_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    from varinv import cli as cli_mod

    monkeypatch.setattr(sys, "argv", ["varinv", "train", *map(str, args)])
    code = 0
    try:
        cli_mod.main()
    except SystemExit as ex:
        code = ex.code if isinstance(ex.code, int) else 1
    cap = capsys.readouterr()
    return code, cap.out, cap.err


LINE = re.compile(r"^step (\d+)/20  total=\S+  recon=\S+  content=\S+  style=\S+.*  \S+ steps/s  ETA (\d+h\d\dm|\d+m\d\ds|\d+s)$")


def test_plain_progress_lines_outside_a_terminal(toy_dataset, tmp_path, monkeypatch, capsys):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(_raw(toy_dataset, steps=20, log_every=5, ckpt_every=20)))
    code, out, err = _train_cli(monkeypatch, capsys, cfg_path, "--run", tmp_path / "a")
    assert code == 0, out + err
    assert not sys.stdout.isatty()  # captured: what nohup or a batch scheduler sees
    steps = [int(m.group(1)) for m in map(LINE.match, out.splitlines()) if m]
    assert steps == [5, 10, 15, 20], out
    assert "\x1b[" not in out  # no terminal control codes
    code, out, err = _train_cli(monkeypatch, capsys, cfg_path, "--run", tmp_path / "b", "--no-progress")
    assert code == 0 and not any(ln.startswith("step ") for ln in out.splitlines()), out


def test_tensorboard_groups_atoms_images_and_config(toy_dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config_mod.from_dict(_raw(toy_dataset, steps=20, log_every=5, ckpt_every=10))
    train(cfg, tmp_path / "r", progress=False, tensorboard=True)
    ea = EventAccumulator(str(tmp_path / "r" / "tb"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    ea.Reload()
    tags = ea.Tags()
    scalars = set(tags["scalars"])
    assert {"loss/total", "loss/recon", "loss/content", "loss/style", "stat/vs_samp", "stat/vc_frag", "opt/lr",
            "atoms/used", "atoms/perplexity"} <= scalars
    assert all(t.split("/")[0] in ("loss", "stat", "opt", "atoms") for t in scalars), scalars
    assert [e.step for e in ea.Scalars("loss/total")] == [5, 10, 15, 20]
    used = [e.value for e in ea.Scalars("atoms/used")]
    perplexity = [e.value for e in ea.Scalars("atoms/perplexity")]
    assert all(1 <= u <= 4 for u in used) and all(1 <= p <= u + 1e-6 for p, u in zip(perplexity, used))
    assert {"images/reconstruction", "images/recombination"} <= set(tags["images"])
    recon = ea.Images("images/reconstruction")
    assert [e.step for e in recon] == [10, 20] and recon[-1].width > recon[-1].height > 0
    assert ea.Images("images/recombination")[-1].height > 0
    assert "config/text_summary" in tags["tensors"]
    text = ea.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "n_atoms: 4" in text


def test_tensorboard_does_not_change_the_numbers(toy_dataset, tmp_path):
    raw = _raw(toy_dataset, steps=20, log_every=5, ckpt_every=10)
    raw["model"]["w_tilt"] = 0.1  # the loss draws random tilt curves from torch's RNG every step
    cfg = config_mod.from_dict(raw)
    train(cfg, tmp_path / "tb", progress=False, tensorboard=True)
    train(cfg, tmp_path / "plain", progress="plain", tensorboard=False)
    logs = [(tmp_path / r / "train_log.jsonl").read_text().splitlines() for r in ("tb", "plain")]
    assert logs[0] == logs[1]
    keys = set(json.loads(logs[0][0]))
    assert "lr" in keys and "stat_vs_samp" in keys and not any(k.startswith("atoms") for k in keys)
    wa = ckpt._load_tensors(ckpt.model_path(tmp_path / "tb" / "checkpoints", "final"), None)
    wb = ckpt._load_tensors(ckpt.model_path(tmp_path / "plain" / "checkpoints", "final"), None)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_helpers():
    assert monitor.format_duration(520) == "8m40s" and monitor.format_duration(3720) == "1h02m"
    assert monitor.format_duration(45.4) == "45s"
    used, perplexity = monitor.atom_usage(torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]]))
    assert used == 4 and perplexity == pytest.approx(4.0)
    assert monitor.atom_usage(torch.tensor([5, 5, 5]))[1] == pytest.approx(1.0)
    assert monitor.tb_tag("stat_vs_samp") == "stat/vs_samp" and monitor.tb_tag("lr") == "opt/lr"
    assert monitor.tb_tag("recon") == "loss/recon"
    assert monitor.progress_mode(True) == "bar" and monitor.progress_mode(False) is None
