"""Pretrained models inside the package (`pretrained:NAME`, `varinv demo --pretrained`, benchmarks/make_pretrained.py).

Most tests package a tiny model (a 4-step run on a 100-row PhoneNums) into a temporary package folder
(``varinv.pretrained.ROOT`` monkeypatched, made read-only like an installed package) and check that
nothing inside it changes. The last test runs the real packaged model, when there is one, as a user
would after install: `varinv demo --pretrained` in a fresh process within 60 s, and its page in chromium.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import one_error_line, run_varinv

ROOT = Path(__file__).resolve().parents[1]
REAL_MODEL = ROOT / "src" / "varinv" / "pretrained" / "phonenums"


def _make_pretrained_module():
    spec = importlib.util.spec_from_file_location("make_pretrained", ROOT / "benchmarks" / "make_pretrained.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _set_writable(folder: Path, writable: bool) -> None:
    for p in [folder, *folder.rglob("*")]:
        mode = p.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        os.chmod(p, (mode | stat.S_IWUSR) if writable else (mode & ~bits))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(package root holding phonenums/, its dataset, the run it was made from)."""
    import torch

    from varinv import config as config_mod
    from varinv.data import phonenums
    from varinv.eval.evaluate import evaluate
    from varinv.train.trainer import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pretrained")
    ds = phonenums.generate(root / "data" / "pn", n_rows=100, seed=0, progress=False)
    run = root / "runs" / "pn-tiny"
    cfg = config_mod.compose(ROOT / "configs" / "phonenums_v3_small.yaml", ds.root, steps=4, batch_size=8,
                             overrides=["train.threads=1", "train.ckpt_every=2", "data.n_eval=100"])
    train(cfg, run, progress=False, tensorboard=False)
    evaluate(run, tsne=False)
    pkg = root / "package"
    _make_pretrained_module().package("phonenums", run, pkg)
    _set_writable(pkg, False)  # like a package installed read-only
    yield pkg, ds.root, run
    _set_writable(pkg, True)


@pytest.fixture
def pkg(tiny, monkeypatch):
    import varinv.pretrained as P

    root, data, run = tiny
    monkeypatch.setattr(P, "ROOT", root)
    before = _snapshot(root)
    yield root, data, run
    assert _snapshot(root) == before, "a file inside the package folder changed"


def test_package_holds_only_what_inference_needs(pkg):
    from safetensors.torch import load_file

    import varinv

    root, _, run = pkg
    folder = root / "phonenums"
    files = set(_snapshot(folder))
    weights = [f for f in files if f.startswith("checkpoints/final-") and f.endswith(".safetensors")]
    assert len(weights) == 1
    assert files == {"README.md", "config.yaml", "metrics.json", "model.json", "checkpoints/final.json", *weights}
    assert sum((folder / f).stat().st_size for f in files) <= 5_000_000
    state = json.loads((folder / "checkpoints" / "final.json").read_text())
    assert not {"optimizer", "optim_file", "optim_sha256", "torch_rng"} & set(state)
    assert state["step"] == 4 and state["model_file"] == Path(weights[0]).name
    model = varinv.load_model("pretrained:phonenums")
    assert model.n_atoms == 10 and model.fragment_shape == (3, 48, 32)
    assert set(load_file(str(folder / weights[0]))) == set(model.module.state_dict())
    text = (folder / "README.md").read_text()
    assert "varinv train configs/phonenums_v3_small.yaml" in text  # the command it was trained with
    assert "seed 0" in text and "codebook purity" in text and "pretrained:phonenums" in text


def test_encode_pretrained_matches_the_run(pkg, tmp_path, monkeypatch, capsys):
    root, data, run = pkg
    monkeypatch.chdir(tmp_path)
    code, out, err = run_varinv(monkeypatch, capsys, "encode", "pretrained:phonenums", data, "--split", "test",
                                "-o", "codes.csv")
    assert code == 0, err
    code, _, err = run_varinv(monkeypatch, capsys, "encode", run, data, "--split", "test", "-o", "run.csv")
    assert code == 0, err
    rows = list(csv.DictReader(open("codes.csv")))
    assert len(rows) == 10 * 10 and rows[0]["sample"] == "test:0"
    assert Path("codes.csv").read_text() == Path("run.csv").read_text()
    code, out, err = run_varinv(monkeypatch, capsys, "transfer", "pretrained:phonenums", "--content", "test:0",
                                "--style", "test:1", "--data", data, "-o", "t.png")
    assert code == 0 and Path("t.png").is_file(), err
    code, out, err = run_varinv(monkeypatch, capsys, "pretrained")
    assert code == 0 and "phonenums" in out and "v3" in out, out
    code, out, err = run_varinv(monkeypatch, capsys, "report", "pretrained:phonenums", "-o", "site")
    assert code == 0 and (tmp_path / "site" / "index.html").is_file(), err


def test_evaluate_and_recombine_work_on_a_copy(pkg, tmp_path, monkeypatch, capsys):
    root, data, _ = pkg
    monkeypatch.chdir(tmp_path)
    code, out, err = run_varinv(monkeypatch, capsys, "evaluate", "pretrained:phonenums", "--data", data,
                                "--no-tsne")
    assert code == 0, err
    copy = tmp_path / "runs" / "pretrained" / "phonenums"
    assert (copy / "metrics.json").is_file() and (copy / "plots" / "confusion.svg").is_file()
    assert (copy / "pretrained_metrics.json").is_file()  # the packaged metrics, kept apart
    code, out, err = run_varinv(monkeypatch, capsys, "recombine", "pretrained:phonenums")  # reuses the copy
    assert code == 0, err
    assert (copy / "recombine" / "atoms_x_styles.png").is_file() and (copy / "metrics.json").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    code, out, err = run_varinv(monkeypatch, capsys, "recombine", "pretrained:phonenums", "--copy-to", "mine")
    one_error_line(code, err, "mine", "not a copy of pretrained:phonenums")
    assert (tmp_path / "mine" / "keep.txt").read_text() == "x"


def test_demo_pretrained_end_to_end(pkg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_varinv(monkeypatch, capsys, "demo", "--pretrained", "--out", "demo", "--size", "100")
    assert code == 0, err
    index = tmp_path / "demo" / "site" / "index.html"
    assert out.strip() == f"demo page: {index.resolve()}"
    assert index.is_file()
    run = tmp_path / "demo" / "phonenums"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dataset"].endswith("phonenums") and metrics["n_fragments"] == 100
    for f in ("plots/confusion.svg", "plots/latents.json", "recombine/atoms_x_styles.png"):
        assert (run / f).is_file(), f
    html = index.read_text()
    assert 'id="ds-phonenums"' in html and "confusion.svg" in html
    _check_page(index)


def test_errors(tmp_path, monkeypatch, capsys):
    import varinv.pretrained as P

    monkeypatch.setattr(P, "ROOT", tmp_path / "empty")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_varinv(monkeypatch, capsys, "demo", "--pretrained")
    one_error_line(code, err, "benchmarks/make_pretrained.py")
    assert not (tmp_path / "runs").exists()
    code, out, err = run_varinv(monkeypatch, capsys, "encode", "pretrained:phonenums", tmp_path, "-o", "c.csv")
    one_error_line(code, err, "benchmarks/make_pretrained.py")
    code, out, err = run_varinv(monkeypatch, capsys, "demo")
    one_error_line(code, err, "--pretrained")
    code, out, err = run_varinv(monkeypatch, capsys, "pretrained")
    assert code == 0 and "benchmarks/make_pretrained.py" in out


def test_make_pretrained_refuses_unfinished_runs(tiny, tmp_path):
    import shutil

    mp = _make_pretrained_module()
    _, _, run = tiny
    bad = tmp_path / "run"
    shutil.copytree(run, bad)
    (bad / "metrics.json").unlink()
    with pytest.raises(mp.PackError, match="varinv evaluate"):
        mp.package("phonenums", bad, tmp_path / "pkg")
    assert not (tmp_path / "pkg" / "phonenums").exists()
    assert mp.main(["phonenums", "--train", "--dry-run"]) == 0


# -- the page in a browser ------------------------------------------------------------------------


def _check_page(index: Path) -> None:
    """The demo page in headless chromium (the helpers of tests/test_report_browser.py): it loads fast,
    logs no error, shows every image, draws the 3-D view and the swaps. Skipped locally without a
    browser, failing under CI (as the report's browser test)."""
    from test_report_browser import _driver, _need_browser, _severe, open_page

    chromium, chromedriver = _need_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _driver(chromium, chromedriver)
    try:
        open_page(driver, index)
        section = driver.find_element(By.ID, "ds-phonenums")
        assert section.find_element(By.CSS_SELECTOR, 'tr[data-method="v3"] img.confusion')
        driver.execute_script("document.getElementById('ds-phonenums').scrollIntoView()")
        WebDriverWait(driver, 10).until(lambda d: d.execute_script(
            "return Array.prototype.every.call(document.images, function (i) {"
            "  return i.hidden || !i.getAttribute('src') || (i.complete && i.naturalWidth > 0); });"))
        time.sleep(0.5)
        painted = driver.execute_script(
            "var c = document.querySelector('#ds-phonenums canvas.scatter[data-space=\"zc\"]');"
            "if (!c) return false;"
            "var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "for (var i = 3; i < d.length; i += 4) if (d[i] > 0) return true; return false;")
        assert painted, "the 3-D z_c view is not drawn"
        assert section.find_elements(By.CSS_SELECTOR, "div.swaps img"), "no swaps of real samples"
        assert _severe(driver) == []
    finally:
        driver.quit()


# -- the real packaged model ----------------------------------------------------------------------


@pytest.mark.skipif(not (REAL_MODEL / "model.json").is_file(),
                    reason="no packaged model: python benchmarks/make_pretrained.py phonenums RUN")
def test_real_demo_from_the_package(tmp_path):
    """`varinv demo --pretrained` after install builds a page that passes the browser check and leaves the
    packaged model untouched. Its time (issue 16: <= 60 s) is measured by benchmarks/bench_demo_pretrained.py,
    not here: a timed test fails whenever something else computes beside it."""
    before = _snapshot(REAL_MODEL)
    cmd = [_make_pretrained_module().varinv_command(), "demo", "--pretrained", "--out", str(tmp_path / "demo")]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    index = tmp_path / "demo" / "site" / "index.html"
    assert index.is_file() and f"demo page: {index}" in proc.stdout
    assert _snapshot(REAL_MODEL) == before
    _check_page(index)
