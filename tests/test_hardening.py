"""Issue 18, part A: bad inputs that used to hang, inject markup, resume the wrong run, share a run
folder, delete foreign files or use corrupt data. A catalogue of cases: each bad input gives exactly
one `error:` line, exit code 2, no traceback, leaves every file that was there unchanged, and takes at
most 10 s. The cases that used to hang run in a subprocess with a timeout, so a regression fails."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import TOY_CFG, held_lock, one_error_line, run_varinv, toy_arrays
from varinv import config as config_mod
from varinv.data.store import from_arrays, open_dataset, sha256_file
from varinv.errors import DataError
from varinv.train.trainer import train

SMALL = {"steps": 4, "batch_size": 16, "log_every": 1, "ckpt_every": 2, "threads": 1}


# -- helpers -------------------------------------------------------------------------------------
def make_ds(root: Path, name: str = "toy", **kw):
    x, c, s = toy_arrays(48)
    xt, ct, st = toy_arrays(16, seed=1)
    return from_arrays(root / name, {"train": (x, c, s), "test": (xt, ct, st)},
                       content_names=list("abcd"), style_names=["red", "green", "blue"], **kw)


def raw_cfg(ds_root: Path, **train) -> dict:
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(ds_root)
    raw["train"].update({**SMALL, **train})
    return raw


def write_cfg(path: Path, ds_root: Path, **train) -> Path:
    path.write_text(yaml.safe_dump(raw_cfg(ds_root, **train)))
    return path


def trained(tmp: Path, **train_kw) -> tuple[Path, Path, Path]:
    """(dataset root, config file, run folder) of a finished 4-step toy run."""
    ds = make_ds(tmp)
    cfg_path = write_cfg(tmp / "cfg.yaml", ds.root)
    run = tmp / "run"
    train(config_mod.from_dict(raw_cfg(ds.root, **train_kw)), run, progress=False, tensorboard=False)
    return ds.root, cfg_path, run


def flip_byte(path: Path, offset: int = -7) -> None:
    b = bytearray(path.read_bytes())
    b[offset] ^= 0xFF
    path.write_bytes(bytes(b))


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def cli(monkeypatch, capsys, argv) -> tuple[int, str]:
    code, out, err = run_varinv(monkeypatch, capsys, *argv)
    return code, out + err


def cli_subprocess(argv, cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    try:
        p = subprocess.run([sys.executable, "-m", "varinv", *map(str, argv)], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"varinv {' '.join(map(str, argv))} hung (no answer in 30 s)")
    return p.returncode, p.stdout + p.stderr


# -- the situations ------------------------------------------------------------------------------
def s_seed_negative(tmp):
    ds = make_ds(tmp)
    return ["train", write_cfg(tmp / "cfg.yaml", ds.root), "--run", tmp / "run", "--set", "train.seed=-1"]


def s_big_endian(tmp):
    ds = make_ds(tmp)
    path = ds.root / "train" / "x.npy"
    np.save(path, np.load(path).astype(">f4"))
    man = json.loads((ds.root / "manifest.json").read_text())  # a manifest that agrees with the file
    man["splits"]["train"]["files"]["x.npy"]["sha256"] = sha256_file(path)
    (ds.root / "manifest.json").write_text(json.dumps(man))
    return ["train", write_cfg(tmp / "cfg.yaml", ds.root), "--run", tmp / "run"]


def s_resume_changed(tmp):
    _, cfg, run = trained(tmp)
    return ["train", cfg, "--run", run, "--resume", "--set", "model.d_style=4", "--set", "train.lr=0.01"]


def s_resume_fewer_steps(tmp):
    _, cfg, run = trained(tmp)
    return ["train", cfg, "--run", run, "--resume", "--steps", "2"]


def s_resume_other_data(tmp):
    ds, cfg, run = trained(tmp)
    shutil.copytree(ds, tmp / "other")
    return ["train", cfg, "--run", run, "--resume", "--data", tmp / "other"]


def s_resume_killed_in_first_checkpoint(tmp):
    ds = make_ds(tmp)
    cfg = write_cfg(tmp / "cfg.yaml", ds.root)
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(cfg.read_text())
    (run / "checkpoints" / "last-00000002.safetensors.tmp").write_bytes(b"\0" * 100)  # torn
    return ["train", cfg, "--run", run, "--resume"]


def s_run_in_use(tmp):
    ds = make_ds(tmp)
    return ["train", write_cfg(tmp / "cfg.yaml", ds.root), "--run", held_lock(tmp / "run")]


def s_overwrite_foreign_folder(tmp):
    mine = tmp / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("my own work\n")
    return ["data", "phonenums", "--out", mine, "--overwrite", "--size", "10"]


def s_run_empty(tmp):
    ds = make_ds(tmp)
    return ["train", write_cfg(tmp / "cfg.yaml", ds.root), "--run", ""]


def s_user_config_in_run(tmp):
    ds = make_ds(tmp)
    run = tmp / "run"
    run.mkdir()
    cfg = write_cfg(run / "config.yaml", ds.root)  # the user's own file, in the folder they name as --run
    return ["train", cfg, "--run", run]


def s_evaluate_nosuch_split(tmp):
    _, _, run = trained(tmp)
    return ["evaluate", run, "--split", "nosuch"]


def s_flipped_byte_train(tmp):
    ds = make_ds(tmp)
    flip_byte(ds.root / "train" / "x.npy")
    return ["train", write_cfg(tmp / "cfg.yaml", ds.root), "--run", tmp / "run"]


def s_flipped_byte_evaluate(tmp):
    ds, _, run = trained(tmp)
    flip_byte(ds / "test" / "x.npy")
    return ["evaluate", run]


# (name, setup, words the error line must hold, run in a subprocess)
CASES = [
    ("hang_seed_negative", s_seed_negative, ["train.seed", ">= 0"], True),
    ("hang_big_endian_x", s_big_endian, ["x.npy", "big-endian"], True),
    ("resume_changed_settings", s_resume_changed, ["model.d_style", "train.lr", "new --run"], False),
    ("resume_fewer_steps", s_resume_fewer_steps, ["train.steps = 2", "4 steps"], False),
    ("resume_other_data", s_resume_other_data, ["data.path", "--data"], False),
    ("resume_killed_in_first_checkpoint", s_resume_killed_in_first_checkpoint, ["no complete checkpoint", "new --run"],
     False),
    ("run_folder_in_use", s_run_in_use, ["in use by another varinv train (pid 4242)"], False),
    ("overwrite_foreign_folder", s_overwrite_foreign_folder, ["thesis", "not a varinv dataset"], False),
    ("run_empty", s_run_empty, ["--run is empty"], False),
    ("user_config_in_run", s_user_config_in_run, ["config.yaml", "varinv did not write"], False),
    ("evaluate_nosuch_split", s_evaluate_nosuch_split, ["nosuch", "it has: train, test"], False),
    ("flipped_byte_train", s_flipped_byte_train, ["train/x.npy", "checksum", "regenerate"], False),
    ("flipped_byte_evaluate", s_flipped_byte_evaluate, ["test/x.npy", "checksum", "regenerate"], False),
]


@pytest.mark.parametrize("name,setup,needles,isolated", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(name, setup, needles, isolated, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = setup(tmp_path)
    capsys.readouterr()
    before = hashes(tmp_path)
    files_before = set(before)
    t0 = time.time()
    if isolated:
        code, text = cli_subprocess(argv, tmp_path)
    else:
        code, text = cli(monkeypatch, capsys, argv)
    seconds = time.time() - t0
    one_error_line(code, text, *needles)
    after = hashes(tmp_path)
    assert {k: after.get(k) for k in before} == before, "a file that was there changed"
    if name == "evaluate_nosuch_split":
        assert set(after) == files_before, set(after) - files_before
    assert seconds <= 10, f"{name} took {seconds:.1f} s"


# -- what must keep working -----------------------------------------------------------------------
def test_resume_with_more_steps_logs_each_step_once(tmp_path, monkeypatch, capsys):
    ds, cfg, run = trained(tmp_path)
    with open(run / "train_log.jsonl", "a") as f:  # a run killed after logging step 5, before its checkpoint
        f.write(json.dumps({"step": 5, "total": 1.0}) + "\n" + '{"step": 6, "tot')
    code, text = cli(monkeypatch, capsys, ["train", cfg, "--run", run, "--resume", "--steps", "7",
                                           "--set", "train.threads=1", "--no-progress"])
    assert code == 0, text
    steps = [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8)), steps
    import fcntl

    fd = os.open(run / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when training ended
    finally:
        os.close(fd)


def test_prefetcher_forwards_loader_errors():
    from varinv.data.batching import Prefetcher
    from varinv.data.store import Split

    x, c, s = toy_arrays(8)
    split = Split(x=x, content=c, style=s, scale=255.0)
    bad = Prefetcher(split, 4, -1, 0, 5)  # a negative seed makes the loading thread fail
    t0 = time.time()
    with pytest.raises(DataError, match="loading a training batch failed"):
        next(bad)
    assert time.time() - t0 < 5
    good = Prefetcher(split, 4, 0, 0, 3)
    assert len([b for b in good]) == 3
    early = Prefetcher(split, 4, 0, 0, 1000)
    next(early)
    early.close()
    early.thread.join(timeout=5)
    assert not early.thread.is_alive()


def test_verify_cached_hashes_changed_files_only(tmp_path, monkeypatch):
    from varinv.data import store

    ds = make_ds(tmp_path)
    ds.verify_cached()
    assert (ds.root / store.VERIFIED_FILE).is_file()
    calls = []
    real = store.sha256_file
    monkeypatch.setattr(store, "sha256_file", lambda p, *a: calls.append(p) or real(p, *a))
    store._MEMORY_VERIFIED.clear()
    open_dataset(ds.root).verify_cached()
    assert calls == []
    flip_byte(ds.root / "test" / "style.npy")
    with pytest.raises(DataError, match="style.npy does not match"):
        open_dataset(ds.root).verify_cached()
    assert [Path(p).name for p in calls] == ["style.npy"]


def test_page_escapes_user_names(tmp_path):
    from varinv.report.build import build_site, fill_template, script_json

    evil = "<img src=x onerror=alert(1)>"
    x, c, s = toy_arrays(12)
    names = ["{{NAV}}", "{{RUNS}}", "{{SECTIONS}}", "</script><img src=x onerror=alert(2)>"]
    ds = from_arrays(tmp_path / evil, {"train": (x, c, s), "test": (x, c, s)}, content_names=names,
                     style_names=["{{SECTIONS}}", "a&b", "<b>"])
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(raw_cfg(ds.root)))
    index = build_site([run], tmp_path / "site", log=lambda m: None)
    page = index.read_text()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("</script>") == page.count("<script")  # no name ends a script early
    manifest = page.split('id="varinv-manifest" type="application/json">', 1)[1].split("</script>", 1)[0]
    meta = json.loads(manifest)["datasets"][0]
    assert meta["content_names"] == names and meta["name"] == evil
    assert fill_template("{{A}}|{{B}}", {"A": "{{B}}", "B": "b"}) == "{{B}}|b"
    assert "<" not in script_json({"k": "</script>&"})


def test_training_does_not_hang_when_batch_loading_fails(tmp_path):
    """End to end: a failure inside the loading thread ends `train` with the error (in a subprocess
    with a timeout, so a regression fails instead of hanging)."""
    ds = make_ds(tmp_path)
    script = f"""
import sys, torch
torch.set_num_threads(1)
from varinv import config as config_mod
from varinv.data import batching
from varinv.errors import VarinvError
from varinv.train.trainer import train
def broken(*a, **k):
    raise OSError("disk went away")
batching.make_batch = broken
raw = {raw_cfg(ds.root)!r}
try:
    train(config_mod.from_dict(raw), {str(tmp_path / 'run')!r}, progress=False, tensorboard=False)
except VarinvError as e:
    print("error:", e)
    sys.exit(2)
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    try:
        p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("training hung after the batch-loading thread failed")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "loading a training batch failed (OSError: disk went away)" in p.stdout
