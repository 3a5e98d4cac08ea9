"""The configs shipped inside the package (src/varinv/configs, ./configs in a checkout), `varinv configs`,
`varinv train NAME` and `varinv train --data DS` without a config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from varinv import config as config_mod
from varinv.errors import ConfigError
from conftest import run_varinv

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "train.threads=1", "--set", "data.n_eval=50", "--no-progress"]


cli = run_varinv


def one_error_line(code: int, out: str, err: str, *needles: str) -> str:
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert code == 2, out + err
    assert len(lines) == 1 and lines[0].startswith("error: "), out + err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def run_config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def test_every_shipped_config_loads_and_validates():
    names = config_mod.shipped()
    assert {"v3", "tsdsae", "supervised", "phonenums_v3_small", "phonenums_v3_demo"} <= set(names)
    for name, path in names.items():
        cfg = config_mod.load(path)
        assert cfg.method == config_mod.describe(path)["method"], name
        assert config_mod.describe(path)["description"], f"{name} has no first comment line"
    # ./configs of a checkout is the package folder, so every configs/NAME.yaml path keeps working
    if (ROOT / "configs").exists():
        assert (ROOT / "configs").is_symlink()
        assert (ROOT / "configs").resolve() == config_mod.SHIPPED_DIR
        assert sorted(p.name for p in (ROOT / "configs").glob("*.yaml")) == sorted(p.name for p in names.values())
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"configs/*.yaml"' in pyproject  # package data: a wheel installs them too


def test_configs_that_keep_the_former_settings_name_every_one():
    # a field the recipe changes later must not slip into the paper's settings by default
    from varinv.methods.v3 import V3Config

    claiming = [p for p in config_mod.shipped().values() if "V3Config.FORMER" in p.read_text()]
    assert len(claiming) >= 3
    for path in claiming:
        model = yaml.safe_load(path.read_text())["model"]
        assert set(V3Config.FORMER) <= set(model), (path.name, set(V3Config.FORMER) - set(model))


def test_varinv_configs_lists_them(monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "configs")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "METHOD", "DATA", "DESCRIPTION"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:-1]}
    assert set(rows) == set(config_mod.shipped())
    assert rows["phonenums_v3_small"][1:3] == ["v3", "data/phonenums-10k"]
    assert rows["insnotes_mine_small"][1:3] == ["mine", "data/insnotes"]
    assert "V3 on PhoneNums, CPU-small setting" in out
    assert lines[-1].startswith(f"{len(rows)} configs in ")


def test_resolve_name_path_and_unknown(tmp_path, monkeypatch):
    shipped = config_mod.SHIPPED_DIR
    assert config_mod.resolve("phonenums_v3_small") == shipped / "phonenums_v3_small.yaml"
    assert config_mod.resolve("v3.yaml") == shipped / "v3.yaml"
    # a path that exists always wins over a name
    monkeypatch.chdir(tmp_path)
    Path("v3").write_text("data: {path: mine}\n")
    assert config_mod.resolve("v3") == Path("v3")
    with pytest.raises(ConfigError, match="did you mean phonenums_v3_small"):
        config_mod.resolve("phonenums_v3_smal")
    with pytest.raises(ConfigError, match="`varinv train v3`"):
        config_mod.resolve("elsewhere/v3.yaml")


def test_train_shipped_name(toy_dataset, tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    code, out, err = cli(monkeypatch, capsys, "train", "phonenums_v3_small", "--run", run,
                         "--set", f"data.path={toy_dataset.root}", "--set", "train.steps=2",
                         "--set", "train.batch_size=8", "--set", "model.n_atoms=4", *TINY)
    assert code == 0, out + err
    assert "trained v3 to step 2" in out
    cfg = run_config(run)
    shipped = yaml.safe_load((config_mod.SHIPPED_DIR / "phonenums_v3_small.yaml").read_text())
    # a benchmark's config names only data, K, steps and batch: the rest is the recipe (V3Config's defaults)
    assert set(shipped["model"]) == {"method", "n_atoms"} and set(shipped["train"]) == {"steps", "batch_size"}
    assert cfg["model"]["w_reassign"] == 0.3 and cfg["model"]["decoder"] == "gain"
    assert cfg["model"]["pose"] == "similarity"  # "auto", fixed for image data when training started
    assert cfg["data"]["path"] == str(toy_dataset.root) and cfg["train"]["steps"] == 2


def test_train_with_data_only(toy_dataset, tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    code, out, err = cli(monkeypatch, capsys, "train", "--data", toy_dataset.root, "--run", run, "--steps", 2,
                         "--batch-size", 8, *TINY)
    assert code == 0, out + err
    cfg = run_config(run)
    assert cfg["model"]["method"] == "v3"
    assert cfg["model"]["n_atoms"] == len(toy_dataset.content_names) == 4  # K = the content names
    assert cfg["model"]["n_layers"] == 0 and cfg["model"]["n_channels"] == 0  # from the fragment shape
    assert cfg["data"]["path"] == str(toy_dataset.root)
    assert cfg["train"]["steps"] == 2 and cfg["train"]["batch_size"] == 8
    assert (run / "checkpoints" / "final.json").exists()


def test_compose_methods_k_and_overrides(toy_dataset):
    root = toy_dataset.root
    sup = config_mod.compose(None, root, method="supervised")
    assert (sup.model.n_content_classes, sup.model.n_style_classes) == (4, 3)
    ts = config_mod.compose(None, root, method="tsdsae")
    assert ts.data.n_clusters == 4 and ts.model.d_feature == 64  # the generic configs/tsdsae.yaml
    beta = config_mod.compose(None, root, method="betavae", k=7)  # no generic config: the defaults
    assert beta.data.n_clusters == 7 and beta.model.n_layers == 0
    mine = config_mod.compose(None, root, method="mine", overrides=["model.n_atoms=6"])  # --set applies last
    assert mine.model.n_atoms == 6
    # a config and --data: --data replaces data.path, the config's K stays unless --k is given
    small = config_mod.compose("phonenums_v3_small", root)
    assert small.data.path == str(root) and small.model.n_atoms == 10 and small.model.n_layers == 0
    assert config_mod.compose("phonenums_v3_small", root, k=5, steps=3).model.n_atoms == 5


@pytest.mark.parametrize("args, needles", [
    (["phonenums_v3_smal"], ["phonenums_v3_small", "varinv configs"]),
    ([], ["--data DS"]),
    (["v3", "--method", "tsdsae"], ["--method tsdsae", "v3"]),
    (["--data", "NOWHERE"], ["manifest.json missing"]),
])
def test_train_errors_are_one_line(args, needles, tmp_path, monkeypatch, capsys):
    args = [str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in args]
    code, out, err = cli(monkeypatch, capsys, "train", *args, "--run", tmp_path / "r")
    one_error_line(code, out, err, *needles)
    assert not (tmp_path / "r").exists()
