"""Issue 18, part B: the run folder (varinv.runs) — its layout names, its writer lock, loading it."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import held_lock, one_error_line, run_varinv, train_toy_run
from varinv import runs

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "varinv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step toy run and its dataset (shared: tests copy the run before writing into it)."""
    run, ds = train_toy_run(tmp_path_factory.mktemp("runs"), data={"n_eval": 16}, tensorboard=True,
                            steps=4, batch_size=16, log_every=1, ckpt_every=2)
    return {"run": run, "ds": ds}


def _copy(trained, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    return run


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- layout
def test_training_writes_the_layout_runs_names(trained):
    run = trained["run"]
    for name in (runs.CONFIG_FILE, runs.MODEL_FILE, runs.PROVENANCE_FILE, runs.TRAIN_LOG_FILE, runs.HEALTH_FILE,
                 runs.LOCK_FILE):
        assert (run / name).is_file(), name
    for name in (runs.CHECKPOINTS_DIR, runs.TB_DIR):
        assert (run / name).is_dir(), name
    assert (run / runs.CHECKPOINTS_DIR / "final.json").is_file()
    meta = runs.read_model_meta(run)
    assert meta["format"] == runs.MODEL_FORMAT and meta["fragment_shape"] == [3, 16, 16]
    assert yaml.safe_load((run / runs.CONFIG_FILE).read_text())["train"]["steps"] == 4


# A run folder (run, cell.run, run.path, folder, dest, src, p) joined with a literal run-folder name, in the
# modules that now take the names from varinv.runs (a site's own "recombine" sprite is no run folder).
_LITERAL_JOIN = re.compile(r"""\b(\w*(run|path|folder|dest|src)\w*|p)\s*/\s*["'](config\.yaml|model\.json|"""
                           r"""provenance\.json|metrics\.json|health\.json|train_log\.jsonl|checkpoints|plots|tb|"""
                           r"""eval_cache|recombine)["']""")
_MIGRATED = ["train/trainer.py", "api.py", "cli.py", "eval/parts/context.py", "eval/recombine.py", "report/collect.py",
             "report/build.py", "pretrained/__init__.py", "bench.py", "demo.py"]


@pytest.mark.parametrize("rel", _MIGRATED)
def test_callers_use_the_layout_constants(rel):
    text = (SRC / rel).read_text()
    assert not _LITERAL_JOIN.findall(text), f"{rel} joins a literal run-folder name; use varinv.runs"


def test_trainer_keeps_load_run_importable():
    from varinv.train import trainer

    assert trainer.load_run is runs.load_run  # benchmarks/ import it from there


# ---------------------------------------------------------------- loading
def test_a_moved_run_folder_still_loads(trained, tmp_path):
    import torch

    from varinv import load_model

    moved = tmp_path / "elsewhere" / "my-run"
    shutil.copytree(trained["run"], moved)
    cfg0, ds0, model0, state0 = runs.load_run(trained["run"])
    cfg, ds, model, state = runs.load_run(moved, verify=True)
    assert state["step"] == state0["step"] == 4 and cfg.to_dict() == cfg0.to_dict()
    assert ds.root == ds0.root
    for (k, a), (_, b) in zip(model0.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), k
    m = load_model(moved)  # model.json: no dataset needed
    assert m.fragment_shape == (3, 16, 16) and m.run == moved


def test_missing_run_folder_message(tmp_path):
    from varinv.errors import TrainingError

    with pytest.raises(TrainingError, match="does not exist; train one with `varinv train`"):
        runs.load_run(tmp_path / "nosuch")


def test_load_run_verifies_the_dataset_when_asked(trained, tmp_path):
    from varinv.errors import DataError

    ds = tmp_path / "ds"
    shutil.copytree(trained["ds"], ds, ignore=shutil.ignore_patterns(".verified.json"))
    b = bytearray((ds / "test" / "x.npy").read_bytes())
    b[-7] ^= 0xFF
    (ds / "test" / "x.npy").write_bytes(bytes(b))
    runs.load_run(trained["run"], data=ds)  # a plain load does not hash the data
    with pytest.raises(DataError, match="test/x.npy does not match its manifest checksum"):
        runs.load_run(trained["run"], data=ds, verify=True)


# ---------------------------------------------------------------- the lock
def test_lock_names_its_holder_and_restores_the_file(tmp_path):
    from varinv.errors import TrainingError

    run = tmp_path / "run"
    run.mkdir()
    (run / runs.LOCK_FILE).write_text("123 train\n")
    first = runs.RunLock.acquire(run, "evaluate")
    assert (run / runs.LOCK_FILE).read_text().split()[1] == "evaluate"
    with pytest.raises(TrainingError, match=r"in use by another varinv evaluate \(pid \d+\); wait for it to finish "
                                            "or stop it, then run varinv recombine again"):
        runs.RunLock.acquire(run, "recombine")
    with pytest.raises(TrainingError, match="or choose another --run folder"):
        runs.RunLock.acquire(run, "train")
    first.release()
    assert (run / runs.LOCK_FILE).read_text() == "123 train\n"
    with runs.RunLock.acquire(run, "train"):
        pass


def test_lock_of_a_path_that_is_no_run_folder_makes_nothing(tmp_path):
    lock = runs.RunLock.acquire(tmp_path / "nosuch", "evaluate", create=False)
    assert lock.fd is None and not (tmp_path / "nosuch").exists()
    (tmp_path / "empty").mkdir()
    runs.RunLock.acquire(tmp_path / "empty", "evaluate", create=False).release()
    assert not any((tmp_path / "empty").iterdir())


def test_demo_refuses_a_held_output_folder(tmp_path, monkeypatch, capsys):
    from varinv import pretrained

    if "phonenums" not in pretrained.names():
        pytest.skip("no packaged pretrained:phonenums (benchmarks/make_pretrained.py)")
    out = held_lock(tmp_path / "demo", "demo")  # another `varinv demo` writing the same folder
    code, stdout, err = run_varinv(monkeypatch, capsys, "demo", "--pretrained", "--out", out)
    one_error_line(code, stdout + err, f"run folder {out} is in use by another varinv demo (pid 4242)",
                   "then run varinv demo again")
    assert sorted(p.name for p in out.iterdir()) == [runs.LOCK_FILE]  # nothing generated, copied or built
    assert (out / runs.LOCK_FILE).read_text() == "4242 demo\n"


def test_evaluate_refuses_a_held_run_and_readers_do_not(trained, tmp_path, monkeypatch, capsys):
    run = held_lock(_copy(trained, tmp_path), "train")
    before = _hashes(run)
    code, out, err = run_varinv(monkeypatch, capsys, "evaluate", run, "--no-tsne")
    line = one_error_line(code, out + err, f"run folder {run} is in use by another varinv train (pid 4242)",
                          "then run varinv evaluate again")
    assert line.startswith("error: run folder")
    code, out, err = run_varinv(monkeypatch, capsys, "recombine", run)
    one_error_line(code, out + err, "in use by another varinv train (pid 4242)")
    assert _hashes(run) == before and not (run / runs.METRICS_FILE).exists()
    # readers take no lock: a model is read while another process writes its folder
    code, out, err = run_varinv(monkeypatch, capsys, "encode", run, trained["ds"], "--split", "test",
                                "-o", tmp_path / "codes.csv")
    assert code == 0, out + err
    assert (tmp_path / "codes.csv").is_file()


def test_evaluate_then_recombine_write_and_release(trained, tmp_path, monkeypatch, capsys):
    import fcntl
    import os

    run = _copy(trained, tmp_path)
    lock_text = (run / runs.LOCK_FILE).read_bytes()
    code, out, err = run_varinv(monkeypatch, capsys, "evaluate", run, "--no-tsne", "--n-eval", "16")
    assert code == 0, out + err
    assert (run / runs.METRICS_FILE).is_file() and (run / runs.PLOTS_DIR).is_dir()
    code, out, err = run_varinv(monkeypatch, capsys, "recombine", run)
    assert code == 0, out + err
    assert (run / runs.RECOMBINE_DIR / "atoms_x_styles.png").is_file()
    assert (run / runs.LOCK_FILE).read_bytes() == lock_text
    fd = os.open(run / runs.LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when each command ended
    finally:
        os.close(fd)


def test_encode_and_transfer_replace_only_with_overwrite(trained, tmp_path, monkeypatch, capsys):
    codes = tmp_path / "codes.csv"
    codes.write_text("mine\n")
    code, out, err = run_varinv(monkeypatch, capsys, "encode", trained["run"], trained["ds"], "-o", codes)
    one_error_line(code, out + err, "already exists; pass --overwrite")
    assert codes.read_text() == "mine\n"
    code, out, err = run_varinv(monkeypatch, capsys, "encode", trained["run"], trained["ds"], "-o", codes,
                                "--overwrite")
    assert code == 0, out + err
    assert codes.read_text().startswith("sample,")
    png = tmp_path / "t.png"
    png.write_bytes(b"mine")
    args = ["transfer", trained["run"], "--content", "test:0", "--style", "test:1", "-o", png]
    code, out, err = run_varinv(monkeypatch, capsys, *args)
    one_error_line(code, out + err, "t.png already exists")
    code, out, err = run_varinv(monkeypatch, capsys, *args, "--overwrite")
    assert code == 0, out + err
    assert png.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- usage errors keep --help and --version
def test_help_and_version_still_exit_zero(monkeypatch, capsys):
    from varinv import __version__

    code, out, _ = run_varinv(monkeypatch, capsys, "--version")
    assert code == 0 and out.strip() == f"varinv {__version__}"
    code, out, _ = run_varinv(monkeypatch, capsys, "--help")
    assert code == 0 and "evaluate" in out
    code, out, _ = run_varinv(monkeypatch, capsys, "evaluate", "--help")
    assert code == 0 and "--what" in out


def test_usage_errors_are_one_line(monkeypatch, capsys):
    for args, needles in [
        (["train", "--steps", "abc", "--run", "r"], ["'--steps'", "see `varinv train --help`"]),
        (["evaluate"], ["missing argument", "see `varinv evaluate --help`"]),
        (["nosuchcommand"], ["no such command 'nosuchcommand'", "see `varinv --help`"]),
        (["encode", "r", "ds", "-o"], ["'-o' requires an argument", "see `varinv encode --help`"]),
    ]:
        code, out, err = run_varinv(monkeypatch, capsys, *args)
        one_error_line(code, out + err, *needles)
