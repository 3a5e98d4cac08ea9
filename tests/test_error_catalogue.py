"""Issue 18, part A: the catalogue of errors a user can cause, as data.

Every CLI case must give exit code 2, exactly one line starting ``error:`` (holding the case's expected
words), no traceback, leave every file that was there unchanged (the case's own temp folder and the
shared dataset/run are hashed before and after) and take at most 10 s. Every ``from_arrays`` case must
raise the project's error (``VarinvError``) with a one-line message and leave nothing on disk.

The cases share one tiny dataset and one 4-step run (session-scoped ``world``). A case's argv may hold
the placeholders ``{ds}``, ``{cfg}``, ``{run}``, ``{partial}`` (the shared dataset, config, finished and
half-trained runs) and ``{tmp}`` (its own temp folder, the working directory); ``files`` are written into
``{tmp}`` first (str: text with placeholders, bytes: as is, None: an empty folder); a ``setup`` callable
``setup(world, tmp) -> argv`` prepares anything else. Cases marked ``readme=True`` make the README's
"Errors you can cause" table (``tests/error_table.py`` renders it; a test below keeps README in step).

The cases of tests/test_hardening.py (items 1-6) are covered here by the same inputs: hang_seed_negative
-> train_seed_negative, hang_big_endian_x -> train_big_endian_x, resume_* -> resume_*, run_folder_in_use
-> train_run_in_use, overwrite_foreign_folder -> data_overwrite_foreign_folder, run_empty -> train_run_empty,
user_config_in_run -> train_user_config_in_run, evaluate_nosuch_split -> evaluate_split_nosuch,
flipped_byte_* -> train_flipped_byte / evaluate_flipped_byte.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml

from conftest import TOY_CFG, held_lock, run_varinv, toy_arrays

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"steps": 4, "batch_size": 16, "log_every": 1, "ckpt_every": 2, "threads": 1}


# -- the cases, as data -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    argv: list | Callable  # CLI arguments (placeholders allowed) or setup(world, tmp) -> argv
    expect: str  # words the error line must hold
    what: str = ""  # the input, in words (README table)
    readme: bool = False
    files: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ArrayCase:
    id: str
    call: Callable  # call(tmp): calls from_arrays with the bad input
    expect: str
    what: str = ""
    readme: bool = False


def T(id, *sets, expect, what="", readme=False):
    """`varinv train {cfg} --run {tmp}/run --set ...` (a bad config value)."""
    argv = ["train", "{cfg}", "--run", "{tmp}/run", "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    return Case(id, argv, expect, what, readme)


def C(id, argv, expect, what="", readme=False, files=None):
    return Case(id, argv, expect, what, readme, dict(files or {}))


# ---------------------------------------------------------------- setups that need more than argv
def copy_run(world, tmp: Path, *, src: str = "run", edit: dict | None = None, drop=(), flip=None) -> Path:
    """A copy of a shared run in ``tmp/run``; ``edit`` sets config.yaml keys {"model.n_atoms": 8}."""
    run = tmp / "run"
    shutil.copytree(world[src], run)
    if edit:
        raw = yaml.safe_load((run / "config.yaml").read_text())
        for dotted, value in edit.items():
            sec, key = dotted.split(".", 1)
            raw[sec][key] = value
        (run / "config.yaml").write_text(yaml.safe_dump(raw))
    for rel in drop:
        for p in run.glob(rel):
            p.unlink()
    if flip:
        flip_byte(next(run.glob(flip)))
    return run


def copy_ds(world, tmp: Path) -> Path:
    ds = tmp / "ds"
    shutil.copytree(world["ds"], ds, ignore=shutil.ignore_patterns(".verified.json"))  # varinv's own cache
    return ds


def flip_byte(path: Path, offset: int = -7) -> None:
    b = bytearray(path.read_bytes())
    b[offset] ^= 0xFF
    path.write_bytes(bytes(b))


def cfg_for(world, tmp: Path, ds: Path, name: str = "cfg.yaml", **train) -> Path:
    raw = yaml.safe_load(Path(world["cfg"]).read_text())
    raw["data"]["path"] = str(ds)
    raw["train"].update(train)
    path = tmp / name
    path.write_text(yaml.safe_dump(raw))
    return path


def s_big_endian(world, tmp):
    from varinv.data.store import sha256_file

    ds = copy_ds(world, tmp)
    path = ds / "train" / "x.npy"
    np.save(path, np.load(path).astype(">f4"))
    man = json.loads((ds / "manifest.json").read_text())
    man["splits"]["train"]["files"]["x.npy"]["sha256"] = sha256_file(path)
    (ds / "manifest.json").write_text(json.dumps(man))
    return ["train", cfg_for(world, tmp, ds), "--run", tmp / "run"]


def s_flipped_train(world, tmp):
    ds = copy_ds(world, tmp)
    flip_byte(ds / "train" / "x.npy")
    return ["train", cfg_for(world, tmp, ds), "--run", tmp / "run"]


def s_flipped_eval(world, tmp):
    ds = copy_ds(world, tmp)
    flip_byte(ds / "test" / "x.npy")
    run = copy_run(world, tmp)
    return ["evaluate", run, "--data", ds]


def s_truncated_ds(world, tmp):
    ds = copy_ds(world, tmp)
    from varinv.data.store import sha256_file

    p = ds / "train" / "content.npy"
    p.write_bytes(p.read_bytes()[:60])
    man = json.loads((ds / "manifest.json").read_text())  # a manifest that agrees with the short file
    man["splits"]["train"]["files"]["content.npy"]["sha256"] = sha256_file(p)
    (ds / "manifest.json").write_text(json.dumps(man))
    return ["train", cfg_for(world, tmp, ds), "--run", tmp / "run"]


def s_manifest_not_json(world, tmp):
    ds = copy_ds(world, tmp)
    (ds / "manifest.json").write_text("{not json")
    return ["train", cfg_for(world, tmp, ds), "--run", tmp / "run"]


def s_manifest_format(world, tmp):
    ds = copy_ds(world, tmp)
    man = json.loads((ds / "manifest.json").read_text())
    man["format"] = "other/9"
    (ds / "manifest.json").write_text(json.dumps(man))
    return ["train", cfg_for(world, tmp, ds), "--run", tmp / "run"]


def s_missing_file(world, tmp):
    ds = copy_ds(world, tmp)
    (ds / "train" / "style.npy").unlink()
    return ["train", cfg_for(world, tmp, ds), "--run", tmp / "run"]


def s_resume(**kw):
    def setup(world, tmp):
        run = copy_run(world, tmp)
        cfg = cfg_for(world, tmp, Path(world["ds"]))
        return ["train", cfg, "--run", run, "--resume", "--no-progress", *kw.get("extra", [])]
    return setup


def s_resume_other_data(world, tmp):
    run = copy_run(world, tmp)
    other = copy_ds(world, tmp)
    return ["train", world["cfg"], "--run", run, "--resume", "--data", other]


def s_resume_torn(world, tmp):
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(world["cfg"], run / "config.yaml")
    (run / "checkpoints" / "last-00000002.safetensors.tmp").write_bytes(b"\0" * 100)
    return ["train", world["cfg"], "--run", run, "--resume"]


def s_run_in_use(world, tmp):
    return ["train", world["cfg"], "--run", held_lock(tmp / "run")]


def s_in_use(command, holder="train", *extra):
    """`varinv COMMAND` on a copy of the shared run while another `varinv HOLDER` holds its lock."""
    def setup(world, tmp):
        return [command, held_lock(copy_run(world, tmp), holder), *extra]
    return setup


def s_train_in_use_by(holder):
    def setup(world, tmp):
        return ["train", world["cfg"], "--run", held_lock(tmp / "run", holder)]
    return setup


def s_flipped_recombine(world, tmp):
    ds = copy_ds(world, tmp)
    flip_byte(ds / "test" / "x.npy")
    return ["recombine", copy_run(world, tmp), "--data", ds]


def s_user_config_in_run(world, tmp):
    run = tmp / "run"
    run.mkdir()
    cfg = cfg_for(world, run, Path(world["ds"]), name="config.yaml")
    return ["train", cfg, "--run", run]


def s_existing_run(world, tmp):
    run = copy_run(world, tmp)
    return ["train", world["cfg"], "--run", run]


def s_nan(world, tmp):
    return ["train", cfg_for(world, tmp, Path(world["huge"])), "--run", tmp / "run", "--no-progress"]


def s_eval(*extra, **kw):
    def setup(world, tmp):
        run = copy_run(world, tmp, **kw)
        return ["evaluate", run, "--no-tsne", *extra]
    return setup


def s_raw_folder_split(world, tmp):
    raw = tmp / "raw"
    raw.mkdir()
    (raw / "notes.txt").write_text("no images here\n")
    return ["encode", world["run"], raw, "--split", "test", "-o", tmp / "c.csv"]


def s_grid(text: str):
    def setup(world, tmp):
        path = tmp / "grid.yaml"
        path.write_text(text.replace("{cfg}", str(world["cfg"])).replace("{tmp}", str(tmp)))
        return ["benchmark", path, "--results", tmp / "results"]
    return setup


def s_grid_file(content):
    def setup(world, tmp):
        path = tmp / "grid.yaml"
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        return ["benchmark", path, "--results", tmp / "results"]
    return setup


def s_images(*extra):
    def setup(world, tmp):
        from PIL import Image

        src = tmp / "imgs"
        src.mkdir()
        for i in range(3):
            Image.new("RGB", (24, 8), (10 * i, 20, 30)).save(src / f"s{i}.png")
        return ["data", "images", src, "--out", tmp / "out", *extra]
    return setup


BINARY = bytes(range(256)) * 4
GRID_CELL = "cells: [{config: {cfg}, k: [4]}]\n"

CLI_CASES: list[Case] = [
    # ---------------------------------------------------------------- train: config values (item 7)
    T("train_steps_zero", "train.steps=0", expect="train.steps = 0 is invalid: expected an integer >= 1"),
    T("train_steps_negative", "train.steps=-5", expect="train.steps = -5 is invalid"),
    T("train_steps_fraction", "train.steps=1.5", expect="train.steps = 1.5 has the wrong type: expected int"),
    T("train_steps_text", "train.steps=ten", expect="train.steps = 'ten' has the wrong type"),
    T("train_steps_bool", "train.steps=true", expect="train.steps = True has the wrong type"),
    T("train_batch_one", "train.batch_size=1", expect="train.batch_size = 1 is invalid: expected an integer >= 2",
      what="`train.batch_size` < 2", readme=False),
    T("train_batch_zero", "train.batch_size=0", expect="train.batch_size = 0 is invalid"),
    T("train_lr_zero", "train.lr=0", expect="train.lr = 0.0 is invalid: expected a positive number"),
    T("train_lr_negative", "train.lr=-1e-3", expect="train.lr = -0.001 is invalid"),
    T("train_lr_text", "train.lr=fast", expect="train.lr = 'fast' has the wrong type: expected float",
      what="a number field given text", readme=True),
    T("train_lr_nan", "train.lr=.nan", expect="train.lr = nan is invalid: expected a finite number"),
    T("train_lr_inf", "train.lr=.inf", expect="train.lr = inf is invalid: expected a finite number"),
    T("train_seed_negative", "train.seed=-1", expect="train.seed = -1 is invalid: expected an integer >= 0",
      what="`train.seed` < 0 (used to hang)", readme=True),
    T("train_threads_negative", "train.threads=-1", expect="train.threads = -1 is invalid: expected an integer >= 0"),
    T("train_log_every_zero", "train.log_every=0", expect="train.log_every = 0 is invalid: expected an integer >= 1"),
    T("train_ckpt_every_zero", "train.ckpt_every=0", expect="train.ckpt_every = 0 is invalid: expected an integer >= 1",
      what="`train.ckpt_every` or `train.log_every` = 0", readme=False),
    T("train_steps_per_epoch_zero", "train.steps_per_epoch=0",
      expect="train.steps_per_epoch = 0 is invalid: expected an integer >= 1",
      what="`train.steps_per_epoch` = 0 (used to abort)", readme=True),
    T("train_steps_per_epoch_negative", "train.steps_per_epoch=-2", expect="train.steps_per_epoch = -2 is invalid"),
    T("train_lr_decay_zero", "train.lr_decay=0", expect="train.lr_decay = 0.0 is invalid: expected a number in (0, 1]"),
    T("train_lr_decay_big", "train.lr_decay=1.5", expect="train.lr_decay = 1.5 is invalid"),
    T("train_lr_decay_every_zero", "train.lr_decay_every=0", expect="train.lr_decay_every = 0 is invalid"),
    T("train_lr_floor_negative", "train.lr_floor=-0.1", expect="train.lr_floor = -0.1 is invalid: expected a number in [0, 1]"),
    T("train_lr_floor_big", "train.lr_floor=2", expect="train.lr_floor = 2.0 is invalid"),
    T("train_lr_final_zero", "train.lr_final=0", expect="train.lr_final = 0.0 is invalid: expected a number in (0, 1]"),
    T("train_lr_anneal_from_one", "train.lr_anneal_from=1", expect="train.lr_anneal_from = 1.0 is invalid"),
    T("train_warmup_negative", "train.warmup_steps=-1", expect="train.warmup_steps = -1 is invalid"),
    T("train_weight_decay_negative", "train.weight_decay=-0.1",
      expect="train.weight_decay = -0.1 is invalid: expected a number >= 0", what="`train.weight_decay` < 0",
      readme=False),
    T("train_grad_clip_negative", "train.grad_clip=-1", expect="train.grad_clip = -1.0 is invalid"),
    T("train_betas_one", "train.betas=[1.0,0.999]", expect="train.betas = [1.0, 0.999] is invalid: expected two numbers in [0, 1)",
      what="`train.betas` outside [0, 1), `weight_decay` < 0, `ckpt_every` = 0, ...", readme=True),
    T("train_betas_negative", "train.betas=[0.9,-0.1]", expect="train.betas = [0.9, -0.1] is invalid"),
    T("train_betas_one_value", "train.betas=[0.9]", expect="train.betas = [0.9] has the wrong type"),
    T("train_betas_scalar", "train.betas=0.9", expect="train.betas = 0.9 has the wrong type"),
    T("train_precision", "train.precision=fp16", expect="train.precision = 'fp16' is invalid: expected 'fp32' or 'bf16'"),
    T("train_device", "train.device=tpu", expect="train.device = 'tpu' is invalid"),
    T("train_channels_last", "train.channels_last=maybe", expect="train.channels_last = 'maybe' is invalid: expected true or false or 'auto'"),
    T("train_compile_int", "train.compile=2", expect="train.compile = 2 has the wrong type"),
    T("train_unknown_key", "train.stpes=10", expect="unknown config key 'train.stpes' (did you mean 'steps'?)"),
    T("data_n_eval_small", "data.n_eval=5", expect="data.n_eval = 5 is invalid: expected an integer >= 10"),
    T("data_n_eval_zero", "data.n_eval=0", expect="data.n_eval = 0 is invalid"),
    T("data_n_clusters_negative", "data.n_clusters=-1", expect="data.n_clusters = -1 is invalid"),
    T("data_path_empty", "data.path=''", expect="data.path = '' is invalid: expected a dataset folder"),
    T("data_eval_split_empty", "data.eval_split=''", expect="data.eval_split = '' is invalid"),
    T("data_path_missing", "data.path=nowhere/ds", expect="no dataset at nowhere/ds (manifest.json missing)",
      what="missing dataset", readme=True),
    T("data_unknown_key", "data.pth=x", expect="unknown config key 'data.pth' (did you mean 'path'?)"),
    T("model_n_atoms_zero", "model.n_atoms=0", expect="model.n_atoms = 0 is invalid: expected an integer K >= 1"),
    T("model_n_atoms_negative", "model.n_atoms=-3", expect="model.n_atoms = -3 is invalid"),
    T("model_d_hidden_one", "model.d_hidden=1", expect="model.d_hidden = 1 is invalid: expected an integer >= 2",
      what="`model.d_hidden` = 1, `model.blocks_per_layer` = 0", readme=True),
    T("model_d_hidden_zero", "model.d_hidden=0", expect="model.d_hidden = 0 is invalid"),
    T("model_blocks_per_layer_zero", "model.blocks_per_layer=0",
      expect="model.blocks_per_layer = 0 is invalid: expected an integer >= 1"),
    T("model_d_content_zero", "model.d_content=0", expect="model.d_content = 0 is invalid"),
    T("model_d_style_zero", "model.d_style=0", expect="model.d_style = 0 is invalid"),
    T("model_n_channels_small", "model.n_channels=4", expect="model.n_channels = 4 is invalid"),
    T("model_n_layers_negative", "model.n_layers=-1", expect="model.n_layers = -1 is invalid"),
    T("model_kernel_even", "model.kernel=4", expect="model.kernel = 4 is invalid: expected an odd integer"),
    T("model_norm", "model.norm=layer", expect="model.norm = 'layer' is invalid"),
    T("model_relativity", "model.relativity=1.0", expect="model.relativity = 1.0 is invalid: expected a number r > 1",
      what="impossible model value (r ≤ 1, even kernel, K < 1)", readme=True),
    T("model_w_style_nce_negative", "model.w_style_nce=-1", expect="model.w_style_nce = -1.0 is invalid"),
    T("model_tilt_mode", "model.tilt_mode=cubic", expect="model.tilt_mode = 'cubic' is invalid"),
    T("model_unknown_key", "model.n_atom=4", expect="unknown config key 'model.n_atom' (did you mean 'n_atoms'?)",
      what="unknown / mistyped config key", readme=True),
    T("model_method_unknown", "model.method=nosuch", expect="nosuch"),
    T("override_unknown_section", "trian.steps=5", expect="unknown config section 'trian' (did you mean 'train'?)"),
    T("override_no_dot", "steps=5", expect="override 'steps=5' must look like section.key=value",
      what="`--set` not of the form section.key=value", readme=True),
    T("override_no_equals", "train.steps", expect="override 'train.steps' must look like section.key=value"),
    # ---------------------------------------------------------------- train: the config file (item 7)
    C("config_nosuch_name", ["train", "nosuch_config", "--run", "{tmp}/run"],
      expect="config 'nosuch_config' is neither an existing file nor a shipped config name"),
    C("config_close_name", ["train", "phonenums_v3_smal", "--run", "{tmp}/run"], expect="did you mean phonenums_v3_small"),
    C("config_missing_file", ["train", "cfgs/x.yaml", "--run", "{tmp}/run"], expect="config file cfgs/x.yaml does not exist",
      what="missing config file", readme=False),
    C("config_folder", ["train", "{tmp}/cfgdir", "--run", "{tmp}/run"], files={"cfgdir": None},
      expect="cfgdir is a folder; give a YAML file", what="a folder given as the config", readme=False),
    C("config_binary", ["train", "{tmp}/cfg.bin", "--run", "{tmp}/run"], files={"cfg.bin": BINARY},
      expect="cfg.bin is not a text file", what="a binary file or a folder given as the config", readme=True),
    C("config_nul_bytes", ["train", "{tmp}/cfg.yaml", "--run", "{tmp}/run"], files={"cfg.yaml": b"train:\x00 1\n"},
      expect="is not a text file (it holds NUL bytes)"),
    C("config_empty", ["train", "{tmp}/empty.yaml", "--run", "{tmp}/run"], files={"empty.yaml": ""},
      expect="empty.yaml is empty; give at least the sections you change", what="an empty config file",
      readme=True),
    C("config_comments_only", ["train", "{tmp}/c.yaml", "--run", "{tmp}/run"], files={"c.yaml": "# nothing\n"},
      expect="c.yaml is empty"),
    C("config_list", ["train", "{tmp}/c.yaml", "--run", "{tmp}/run"], files={"c.yaml": "- a\n- b\n"},
      expect="must be a mapping with sections data, model, train"),
    C("config_bad_yaml", ["train", "{tmp}/c.yaml", "--run", "{tmp}/run"], files={"c.yaml": "train: [1, 2\n"},
      expect="c.yaml is not valid YAML", what="config that is not valid YAML", readme=True),
    C("config_unknown_section", ["train", "{tmp}/c.yaml", "--run", "{tmp}/run"], files={"c.yaml": "trainn: {}\n"},
      expect="unknown config section 'trainn'"),
    C("config_section_scalar", ["train", "{tmp}/c.yaml", "--run", "{tmp}/run"], files={"c.yaml": "train: 5\n"},
      expect="config section 'train' must be a mapping"),
    C("config_lr_text_in_file", ["train", "{tmp}/c.yaml", "--run", "{tmp}/run"],
      files={"c.yaml": "data: {path: '{ds}'}\ntrain: {lr: 1e-4x}\n"}, expect="train.lr = '1e-4x' has the wrong type"),
    # ---------------------------------------------------------------- train: options and the run folder
    C("train_nothing", ["train", "--run", "{tmp}/run"], expect="give a config (a YAML file or a shipped name"),
    C("train_data_missing", ["train", "--data", "{tmp}/nods", "--run", "{tmp}/run"], expect="no dataset at"),
    C("train_method_unknown", ["train", "--data", "{ds}", "--method", "nosuch", "--run", "{tmp}/run"], expect="nosuch"),
    C("train_method_contradicts", ["train", "{cfg}", "--method", "betavae", "--run", "{tmp}/run"],
      expect="--method betavae contradicts the config's model.method (v3)"),
    C("train_k_zero", ["train", "{cfg}", "--k", "0", "--run", "{tmp}/run"], expect="--k must be >= 1, got 0"),
    C("train_steps_option_zero", ["train", "{cfg}", "--steps", "0", "--run", "{tmp}/run"], expect="train.steps = 0 is invalid"),
    C("train_batch_option_one", ["train", "{cfg}", "--batch-size", "1", "--run", "{tmp}/run"],
      expect="train.batch_size = 1 is invalid"),
    C("train_run_empty", ["train", "{cfg}", "--run", ""], expect="--run is empty", what="empty `--run`", readme=False),
    C("train_run_blank", ["train", "{cfg}", "--run", "  "], expect="--run is empty"),
    C("train_existing_run", s_existing_run, expect="already holds a checkpoint; pass --resume",
      what="existing run folder without `--resume`", readme=True),
    C("train_user_config_in_run", s_user_config_in_run, expect="config.yaml that varinv did not write",
      what="a `config.yaml` of yours in a fresh run folder", readme=False),
    C("train_run_in_use", s_run_in_use, expect="in use by another varinv train (pid 4242)",
      what="two `varinv train` into one run folder", readme=True),
    C("train_run_in_use_by_evaluate", s_train_in_use_by("evaluate"), expect="in use by another varinv evaluate (pid 4242)"),
    C("train_run_in_use_old_lock", s_train_in_use_by(""), expect="in use by another varinv process (pid 4242)"),
    C("train_big_endian_x", s_big_endian, expect="is stored big-endian", what="big-endian stored array (used to hang)",
      readme=True),
    C("train_flipped_byte", s_flipped_train, expect="does not match its manifest checksum",
      what="a flipped byte in a dataset file", readme=True),
    C("train_truncated_file", s_truncated_ds, expect="cannot be read"),
    C("train_manifest_not_json", s_manifest_not_json, expect="manifest.json is not valid JSON"),
    C("train_manifest_format", s_manifest_format, expect="has format 'other/9'"),
    C("train_missing_dataset_file", s_missing_file, expect="style.npy is missing"),
    C("train_nan_step0", s_nan, expect="no checkpoint had been written yet",
      what="NaN/Inf loss before the first checkpoint", readme=True),
    # ---------------------------------------------------------------- resume (item 3)
    C("resume_changed_settings", s_resume(extra=["--set", "model.d_style=4", "--set", "train.lr=0.01"]),
      expect="--resume with changed settings: model.d_style (8 -> 4)", what="`--resume` with changed settings", readme=True),
    C("resume_fewer_steps", s_resume(extra=["--steps", "2"]), expect="train.steps = 2 is fewer than the 4 steps"),
    C("resume_other_data", s_resume_other_data, expect="data.path"),
    C("resume_torn_first_checkpoint", s_resume_torn, expect="no complete checkpoint",
      what="`--resume` of a run killed in its first checkpoint", readme=False),
    # ---------------------------------------------------------------- data (items 5, 7)
    C("data_size_zero", ["data", "phonenums", "--out", "{tmp}/p", "--size", "0"],
      expect="--size 0 is too small: phonenums needs at least 10 rows", what="`varinv data ... --size 0`",
      readme=True),
    C("data_size_negative", ["data", "phonenums", "--out", "{tmp}/p", "--size", "-5"], expect="--size -5 is too small"),
    C("data_size_below_min", ["data", "phonenums", "--out", "{tmp}/p", "--size", "5"], expect="--size 5 is too small"),
    C("data_size_text", ["data", "phonenums", "--out", "{tmp}/p", "--size", "lots"], expect="--size 'lots' is not an integer"),
    C("data_size_fraction", ["data", "phonenums", "--out", "{tmp}/p", "--size", "1.5"], expect="--size '1.5' is not a whole count"),
    C("data_size_huge_e", ["data", "phonenums", "--out", "{tmp}/p", "--size", "1e9"],
      expect="--size 1000000000 would need about", what="`--size 1e9` (checked before allocating)", readme=True),
    C("data_size_huge_int", ["data", "phonenums", "--out", "{tmp}/p", "--size", "100000000000"], expect="GB of memory"),
    C("data_size_absurd", ["data", "phonenums", "--out", "{tmp}/p", "--size", "1e300"], expect="is not a whole count"),
    C("data_waveforms_size_small", ["data", "waveforms", "--out", "{tmp}/w", "--size", "2"],
      expect="waveforms needs at least 3 samples"),
    C("data_waveforms_size_huge", ["data", "waveforms", "--out", "{tmp}/w", "--size", "1e10"], expect="GB of memory"),
    C("data_insnotes_size_zero", ["data", "insnotes", "--out", "{tmp}/i", "--size", "0"],
      expect="insnotes needs at least 1 files per instrument"),
    C("data_insnotes_size_huge", ["data", "insnotes", "--out", "{tmp}/i", "--size", "1e8"], expect="GB of memory"),
    C("data_seed_negative", ["data", "phonenums", "--out", "{tmp}/p", "--seed", "-1", "--size", "10"],
      expect="--seed must be >= 0"),
    C("data_out_empty", ["data", "phonenums", "--out", ""], expect="--out must name a dataset folder"),
    C("data_fragments_on_phonenums", ["data", "phonenums", "--out", "{tmp}/p", "--fragments", "5"],
      expect="--fragments and --frames apply to waveforms only"),
    C("data_waveforms_fragments_zero", ["data", "waveforms", "--out", "{tmp}/w", "--fragments", "0"],
      expect="--fragments must be a positive integer"),
    C("data_waveforms_fragments_many", ["data", "waveforms", "--out", "{tmp}/w", "--fragments", "30", "--size", "3"],
      expect="n_fragments = 30 must be 2..21"),
    C("data_waveforms_bins_zero", ["data", "waveforms", "--out", "{tmp}/w", "--n-bins", "0"],
      expect="--n-bins must be a positive integer"),
    C("data_waveforms_frames_negative", ["data", "waveforms", "--out", "{tmp}/w", "--frames", "-1"],
      expect="--frames must be a positive integer"),
    C("data_benchmark_with_dir", ["data", "phonenums", "{tmp}", "--out", "{tmp}/p"],
      expect="DIR apply to `varinv data images|audio DIR` only"),
    C("data_images_no_dir", ["data", "images", "--out", "{tmp}/o"], expect="varinv data images needs the folder to import"),
    C("data_images_soundfont", ["data", "images", "{tmp}", "--out", "{tmp}/o", "--soundfont", "x.sf2"],
      expect="--soundfont do(es) not apply to `varinv data images`"),
    C("data_audio_size", ["data", "audio", "{tmp}", "--out", "{tmp}/o", "--size", "8x8"],
      expect="--size do(es) not apply to `varinv data audio`"),
    C("data_images_size_zero_height", s_images("--size", "0x8"), expect="--size '0x8' is not HxW",
      what="fragment height 0 (`--size 0x8`)", readme=False),
    C("data_images_size_words", s_images("--size", "12by4"), expect="--size '12by4' is not HxW"),
    C("data_existing_out", ["data", "phonenums", "--out", "{ds}", "--size", "10"], expect="already exists"),
    C("data_overwrite_foreign_folder", ["data", "phonenums", "--out", "{tmp}/thesis", "--overwrite", "--size", "10"],
      files={"thesis/chapter1.tex": "my own work\n"}, expect="not a varinv dataset (no manifest.json)",
      what="`--overwrite` on a folder that is not a varinv dataset", readme=True),
    C("data_overwrite_file", ["data", "phonenums", "--out", "{tmp}/notes.txt", "--overwrite", "--size", "10"],
      files={"notes.txt": "mine\n"}, expect="exists and is not a dataset folder"),
    # ---------------------------------------------------------------- evaluate (items 5, 7, 9)
    C("evaluate_no_run", ["evaluate", "{tmp}/nosuch"], expect="run folder", what="missing run folder"),
    C("evaluate_not_run", ["evaluate", "{tmp}/empty"], files={"empty": None}, expect="is not a run folder (config.yaml missing)"),
    C("evaluate_split_nosuch", s_eval("--split", "nosuch"), expect="has no split 'nosuch' (it has: train, test)",
      what="`evaluate --split S` that the dataset lacks", readme=True),
    C("evaluate_n_eval_zero", s_eval("--n-eval", "0"), expect="--n-eval must be >= 1 fragments, got 0",
      what="`evaluate --n-eval 0`", readme=True),
    C("evaluate_n_eval_negative", s_eval("--n-eval", "-3"), expect="--n-eval must be >= 1"),
    C("evaluate_max_fragments_negative", s_eval("--max-fragments", "-5"), expect="--max-fragments must be >= 1, got -5",
      what="`evaluate --max-fragments -5`", readme=False),
    C("evaluate_max_fragments_zero", s_eval("--max-fragments", "0"), expect="--max-fragments must be >= 1"),
    C("evaluate_draws_zero", s_eval("--draws", "0"), expect="--draws must be >= 1"),
    C("evaluate_classifier_steps_negative", s_eval("--classifier-steps", "-1"), expect="--classifier-steps >= 0"),
    C("evaluate_shots_text", s_eval("--shots", "a,b"), expect="--shots must be comma-separated integers"),
    C("evaluate_shots_zero", s_eval("--shots", "0,5"), expect="--shots must be positive integers"),
    C("evaluate_threads_negative", s_eval("--threads", "-1"), expect="--threads must be >= 0"),
    C("evaluate_what_unknown", s_eval("--what", "core,nosuch"), expect="unknown evaluation part(s) nosuch"),
    C("evaluate_data_missing", s_eval("--data", "/nonexistent/ds"), expect="no dataset at /nonexistent/ds"),
    C("evaluate_other_k", s_eval(edit={"model.n_atoms": 8}),
      expect="holds K = 4 atoms but the run's config asks for K = 8",
      what="a run's config edited to another K", readme=True),
    C("evaluate_other_d_style", s_eval(edit={"model.d_style": 5}), expect="in the checkpoint but"),
    C("evaluate_flipped_checkpoint", s_eval(flip="checkpoints/final-*.safetensors"),
      expect="does not match its recorded checksum", what="truncated / tampered checkpoint", readme=True),
    C("evaluate_no_checkpoint", s_eval(drop=("checkpoints/*.json",)), expect="no checkpoint 'last'"),
    C("evaluate_checkpoint_json_corrupt", lambda w, t: ["evaluate", _corrupt_json(copy_run(w, t))],
      expect="is corrupt (invalid JSON)"),
    C("evaluate_config_corrupt", lambda w, t: ["evaluate", _corrupt_config(copy_run(w, t))], expect="is not valid YAML"),
    C("evaluate_flipped_byte", s_flipped_eval, expect="test/x.npy does not match its manifest checksum"),
    # ---------------------------------------------------------------- writers of a run folder share its lock (part B)
    C("evaluate_run_in_use", s_in_use("evaluate", "train", "--no-tsne"),
      expect="is in use by another varinv train (pid 4242); wait for it to finish or stop it, then run varinv "
             "evaluate again", what="`evaluate` / `recombine` of a run folder another varinv is writing", readme=True),
    C("evaluate_run_in_use_by_evaluate", s_in_use("evaluate", "evaluate", "--no-tsne"),
      expect="in use by another varinv evaluate (pid 4242)"),
    C("evaluate_run_in_use_by_recombine", s_in_use("evaluate", "recombine", "--what", "probes"),
      expect="in use by another varinv recombine (pid 4242)"),
    C("recombine_run_in_use", s_in_use("recombine", "train"), expect="then run varinv recombine again"),
    C("recombine_run_in_use_by_evaluate", s_in_use("recombine", "evaluate", "--out", "{tmp}/rc"),
      expect="in use by another varinv evaluate (pid 4242)"),
    # ---------------------------------------------------------------- encode / transfer / recombine
    C("encode_bad_suffix", ["encode", "{run}", "{ds}", "-o", "{tmp}/codes.txt"], expect="must end in .csv or .npz"),
    C("encode_batch_zero", ["encode", "{run}", "{ds}", "-o", "{tmp}/c.csv", "--batch-size", "0"],
      expect="--batch-size must be >= 1"),
    C("encode_threads_negative", ["encode", "{run}", "{ds}", "-o", "{tmp}/c.csv", "--threads", "-2"],
      expect="--threads must be >= 0"),
    C("encode_no_run", ["encode", "{tmp}/nosuch", "{ds}", "-o", "{tmp}/c.csv"], expect="nosuch"),
    C("encode_split_nosuch", ["encode", "{run}", "{ds}", "--split", "nosuch", "-o", "{tmp}/c.csv"],
      expect="has no split 'nosuch'"),
    C("encode_raw_with_split", s_raw_folder_split, expect="--split applies to dataset folders"),
    C("transfer_bad_suffix", ["transfer", "{run}", "--content", "test:0", "--style", "test:1", "-o", "{tmp}/t.jpg"],
      expect="must end in .png or .wav"),
    C("transfer_upscale_zero", ["transfer", "{run}", "--content", "test:0", "--style", "test:1", "-o", "{tmp}/t.png",
                                "--upscale", "0"], expect="--upscale and --griffin-lim-iters must be >= 1"),
    C("transfer_iters_zero", ["transfer", "{run}", "--content", "test:0", "--style", "test:1", "-o", "{tmp}/t.png",
                              "--griffin-lim-iters", "0"], expect="must be >= 1"),
    C("transfer_threads_negative", ["transfer", "{run}", "--content", "test:0", "--style", "test:1", "-o",
                                    "{tmp}/t.png", "--threads", "-1"], expect="--threads must be >= 0"),
    C("transfer_wav_image_run", ["transfer", "{run}", "--content", "test:0", "--style", "test:1", "-o", "{tmp}/t.wav"],
      expect="which has no audio"),
    C("transfer_content_nosuch", ["transfer", "{run}", "--content", "nosuch", "--style", "test:1", "-o", "{tmp}/t.png"],
      expect="--content 'nosuch' is neither an existing file or folder nor a dataset sample"),
    C("transfer_index_out_of_range", ["transfer", "{run}", "--content", "test:999", "--style", "test:1", "-o",
                                      "{tmp}/t.png"], expect="999"),
    C("transfer_split_nosuch", ["transfer", "{run}", "--content", "nosuch:0", "--style", "test:1", "-o",
                                "{tmp}/t.png"], expect="nosuch"),
    C("transfer_data_missing", ["transfer", "{run}", "--content", "test:0", "--style", "test:1", "-o", "{tmp}/t.png",
                                "--data", "{tmp}/nods"], expect="no dataset at"),
    C("recombine_no_run", ["recombine", "{tmp}/nosuch"], expect="nosuch"),
    C("recombine_flipped_byte", s_flipped_recombine, expect="test/x.npy does not match its manifest checksum",
      what="a flipped byte in the dataset at `evaluate` / `recombine`", readme=False),
    C("encode_output_exists", ["encode", "{run}", "{ds}", "-o", "{tmp}/codes.csv"], files={"codes.csv": "mine\n"},
      expect="codes.csv already exists; pass --overwrite to replace it",
      what="`encode` / `transfer` onto an existing output without `--overwrite`", readme=True),
    C("encode_output_npz_exists", ["encode", "{run}", "{ds}", "-o", "{tmp}/c.npz"], files={"c.npz": b"PK"},
      expect="c.npz already exists; pass --overwrite"),
    C("encode_output_folder", ["encode", "{run}", "{ds}", "-o", "{tmp}/c.csv", "--overwrite"], files={"c.csv": None},
      expect="c.csv is a folder; give a file name"),
    C("transfer_output_exists", ["transfer", "{run}", "--content", "test:0", "--style", "test:1", "-o", "{tmp}/t.png"],
      files={"t.png": b"\x89PNG mine"}, expect="t.png already exists; pass --overwrite"),
    # ---------------------------------------------------------------- usage mistakes click catches (part A)
    C("usage_bad_int", ["train", "{cfg}", "--steps", "abc", "--run", "{tmp}/run"], expect="invalid value for '--steps'",
      what="a usage mistake: unknown command or option, missing argument, `--steps abc`", readme=True),
    C("usage_bad_int_help", ["train", "{cfg}", "--steps", "abc", "--run", "{tmp}/run"],
      expect="; see `varinv train --help`"),
    C("usage_no_such_command", ["nosuchcommand"], expect="no such command 'nosuchcommand'; see `varinv --help`"),
    C("usage_no_such_option", ["train", "{cfg}", "--stpes", "3", "--run", "{tmp}/run"], expect="no such option: --stpes"),
    C("usage_no_such_group_option", ["--bogus", "train"], expect="no such option: --bogus; see `varinv --help`"),
    C("usage_missing_argument", ["evaluate"], expect="missing argument"),
    C("usage_missing_argument_help", ["evaluate"], expect="see `varinv evaluate --help`"),
    C("usage_missing_option", ["train", "{cfg}"], expect="missing option '--run'; see `varinv train --help`"),
    C("usage_option_without_value", ["evaluate", "{run}", "--what"],
      expect="option '--what' requires an argument; see `varinv evaluate --help`"),
    C("usage_extra_argument", ["evaluate", "{run}", "extra"], expect="unexpected extra argument"),
    C("usage_bad_choice", ["data", "nosuchset", "--out", "{tmp}/x"], expect="nosuchset"),
    C("usage_bad_float", ["encode", "{run}", "{ds}", "-o", "{tmp}/c.csv", "--batch-size", "1.5"],
      expect="invalid value for '--batch-size'"),
    # ---------------------------------------------------------------- benchmark grids (item 7)
    C("grid_missing", ["benchmark", "{tmp}/nosuch.yaml"], expect="benchmark grid", what="missing benchmark grid"),
    C("grid_folder", s_grid_file(None), expect="is a folder; give a YAML grid file"),
    C("grid_binary", s_grid_file(BINARY), expect="is not a text file"),
    C("grid_empty", s_grid_file(b""), expect="grid.yaml is empty"),
    C("grid_bad_yaml", s_grid("cells: [\n"), expect="is not valid YAML"),
    C("grid_list", s_grid("- a\n"), expect="must be a YAML mapping"),
    C("grid_unknown_key", s_grid("celss: []\n"), expect="unknown benchmark key(s) ['celss']"),
    C("grid_no_cells", s_grid("name: x\n"), expect="has no cells"),
    C("grid_cells_mapping", s_grid("cells: {config: a}\n"), expect="benchmark key 'cells' must be a list",
      what="malformed benchmark grid (cells not a list, a cell not a mapping, bad k, ...)", readme=True),
    C("grid_cell_string", s_grid("cells: [a.yaml]\n"), expect="cells[0] must be a mapping"),
    C("grid_cell_unknown_key", s_grid("cells: [{config: '{cfg}', kk: [4]}]\n"), expect="unknown key(s) ['kk'] in benchmark cells[0]"),
    C("grid_cell_no_config", s_grid("cells: [{k: [4]}]\n"), expect="cells[0] needs config"),
    C("grid_cell_config_missing", s_grid("cells: [{config: nosuch.yaml}]\n"), expect="config file nosuch.yaml does not exist"),
    C("grid_k_zero", s_grid("cells: [{config: '{cfg}', k: [0]}]\n"), expect="cells[0].k must be a non-empty list of integers >= 1"),
    C("grid_k_text", s_grid("cells: [{config: '{cfg}', k: ten}]\n"), expect="cells[0].k must be"),
    C("grid_k_empty", s_grid("cells: [{config: '{cfg}', k: []}]\n"), expect="cells[0].k must be"),
    C("grid_seeds_negative", s_grid("seeds: [-1]\n" + GRID_CELL), expect="'seeds' must be a non-empty list of integers >= 0"),
    C("grid_seeds_text", s_grid("seeds: a\n" + GRID_CELL), expect="'seeds' must be"),
    C("grid_seeds_twice", s_grid("seeds: [1, 1]\n" + GRID_CELL), expect="lists a value twice"),
    C("grid_parallel_zero", s_grid("parallel: 0\n" + GRID_CELL), expect="'parallel' must be an integer >= 1"),
    C("grid_parallel_text", s_grid("parallel: two\n" + GRID_CELL), expect="'parallel' must be an integer >= 1"),
    C("grid_set_scalar", s_grid("set: 5\n" + GRID_CELL), expect="'set' must be a list of section.key=value strings"),
    C("grid_set_bad_override", s_grid("set: [steps=5]\n" + GRID_CELL), expect="must look like section.key=value"),
    C("grid_cell_set_bad_value", s_grid("cells: [{config: '{cfg}', set: [train.steps=0]}]\n"), expect="train.steps = 0 is invalid"),
    C("grid_name_dotdot", s_grid("name: ../../evil\n" + GRID_CELL), expect="benchmark name '../../evil' must be a plain name",
      what="benchmark names containing `../`", readme=True),
    C("grid_name_slash", s_grid("name: a/b\n" + GRID_CELL), expect="must be a plain name"),
    C("grid_cell_name_dotdot", s_grid("cells: [{config: '{cfg}', name: ../x}]\n"), expect="cells[0].name '../x' must be a plain name"),
    C("grid_duplicate_runs", s_grid("cells: [{config: '{cfg}', k: [4]}, {config: '{cfg}', k: [4]}]\n"),
      expect="a second time; give the cell its own name"),
    C("grid_evaluate_unknown", s_grid("evaluate: [nosuch]\n" + GRID_CELL), expect="unknown evaluation part(s) nosuch"),
    C("grid_evaluate_number", s_grid("evaluate: 5\n" + GRID_CELL), expect="'evaluate' must be a list of part names"),
    C("grid_slurm_scalar", s_grid("slurm: 5\n" + GRID_CELL), expect="'slurm' must be a mapping"),
    C("grid_slurm_unknown", s_grid("slurm: {parition: gpu}\n" + GRID_CELL), expect="unknown slurm key 'parition'"),
    C("grid_out_number", s_grid("out: 5\n" + GRID_CELL), expect="'out' must be a folder path"),
    C("grid_launcher_unknown", ["benchmark", "{tmp}/g.yaml", "--launcher", "cloud"], expect="unknown --launcher 'cloud'"),
    C("grid_no_wait_local", ["benchmark", "{tmp}/g.yaml", "--no-wait"], expect="--no-wait, --slurm-partition"),
]


def _corrupt_json(run: Path) -> Path:
    (run / "checkpoints" / "final.json").write_text("{oops")
    return run


def _corrupt_config(run: Path) -> Path:
    (run / "config.yaml").write_text("data: [\n")
    return run


# ---------------------------------------------------------------- from_arrays (item 8)
def _fa(tmp: Path, splits=None, out="ds", **kw):
    from varinv.data.store import from_arrays

    if splits is None:
        splits = {"train": toy_arrays(6), "test": toy_arrays(4, seed=1)}
    return from_arrays(tmp / out, splits, **kw)


def _tr(**repl):
    """A valid train split (6 samples of 4 fragments, 4 content and 3 style classes) with parts replaced."""
    x, c, s = toy_arrays(6)
    parts = {"x": x, "content": c, "style": s}
    parts.update(repl)
    return parts["x"], parts["content"], parts["style"]


def _with(name, value):
    return lambda tmp: _fa(tmp, {"train": toy_arrays(6), name: value})


def _file_parent(tmp: Path):
    (tmp / "afile").write_text("x")
    return _fa(tmp, out="afile/ds")


def _exists(tmp: Path):
    (tmp / "ds").mkdir()
    (tmp / "ds" / "keep.txt").write_text("mine")
    return _fa(tmp)


def _foreign_overwrite(tmp: Path):
    (tmp / "ds").mkdir()
    (tmp / "ds" / "keep.txt").write_text("mine")
    return _fa(tmp, overwrite=True)


X, CON, STY = toy_arrays(6)
ARRAY_CASES: list[ArrayCase] = [
    ArrayCase("split_name_dotdot", _with("../evil", toy_arrays(4)), "split name '../evil' is not allowed",
              "`from_arrays` split name with `../`", readme=True),
    ArrayCase("split_name_slash", _with("a/b", toy_arrays(4)), "split name 'a/b' is not allowed"),
    ArrayCase("split_name_empty", _with("", toy_arrays(4)), "split name '' is not allowed"),
    ArrayCase("split_name_dots", _with("..", toy_arrays(4)), "split name '..' is not allowed"),
    ArrayCase("split_name_int", _with(5, toy_arrays(4)), "split name 5 is not allowed"),
    ArrayCase("label_below_minus_one", lambda t: _fa(t, {"train": _tr(content=CON - 2)}),
              "content labels must be >= -1 (-1 = unknown), got -2", "`from_arrays` labels below −1", readme=False),
    ArrayCase("style_below_minus_one", lambda t: _fa(t, {"train": _tr(style=STY - 5)}), "style labels must be >= -1"),
    ArrayCase("float_labels", lambda t: _fa(t, {"train": _tr(content=CON + 0.5)}),
              "content labels must be whole numbers, got 2.5", "`from_arrays` fractional labels (used to be truncated), labels below −1, string labels",
              readme=True),
    ArrayCase("float_style_labels", lambda t: _fa(t, {"train": _tr(style=STY * 0.5)}), "style labels must be whole numbers"),
    ArrayCase("nan_labels", lambda t: _fa(t, {"train": _tr(content=np.where(CON == 0, np.nan, CON))}),
              "content labels must be whole numbers, got nan"),
    ArrayCase("content_names_short", lambda t: _fa(t, content_names=["a", "b"]),
              "content label 3 has no name: content_names lists 2 names", "`from_arrays` names list shorter than the "
              "classes", readme=True),
    ArrayCase("style_names_short", lambda t: _fa(t, style_names=["red"]), "style label 2 has no name: style_names lists 1"),
    ArrayCase("split_style_names_short", lambda t: _fa(t, split_style_names={"test": ["x"]}),
              "split_style_names['test'] lists 1 names"),
    ArrayCase("split_style_names_unknown_split", lambda t: _fa(t, split_style_names={"ood": ["x"]}),
              "split_style_names names split(s) 'ood' that splits lacks"),
    ArrayCase("kind_unknown", lambda t: _fa(t, kind="video"), "kind 'video' is unknown",
              "`from_arrays` unknown `kind`", readme=False),
    ArrayCase("val_shape_differs", _with("val", toy_arrays(4, length=3)),
              "split 'val' has samples of shape (L, C, H, W) = (3, 3, 16, 16) but train's are (4, 3, 16, 16)",
              "`from_arrays` a split shaped unlike train", readme=True),
    ArrayCase("val_height_differs", _with("val", (np.zeros((4, 4, 3, 8, 16), np.uint8), None, None)),
              "split 'val' has samples of shape"),
    ArrayCase("val_dtype_differs", _with("val", (np.zeros((4, 4, 3, 16, 16), np.float32), None, None)),
              "split 'val' holds float32 but train holds uint8"),
    ArrayCase("label_huge", lambda t: _fa(t, {"train": _tr(content=np.where(CON == 0, 10**7, CON))}),
              "content label 10000000 is too large", "`from_arrays` a huge label (10^7)", readme=True),
    ArrayCase("label_2_40", lambda t: _fa(t, {"train": _tr(style=np.where(STY == 0, 2**40, STY))}),
              "style label 1099511627776 is too large"),
    ArrayCase("label_above_fragments", lambda t: _fa(t, {"train": _tr(content=np.where(CON == 0, 5000, CON))}),
              "content label 5000 is too large"),
    ArrayCase("string_labels", lambda t: _fa(t, {"train": _tr(content=CON.astype(str))}),
              "content labels must be integers", "`from_arrays` string labels", readme=False),
    ArrayCase("string_style_labels", lambda t: _fa(t, {"train": _tr(style=np.array(list("abcabc")))}),
              "style labels must be integers"),
    ArrayCase("bool_labels", lambda t: _fa(t, {"train": _tr(style=STY > 0)}), "got booleans"),
    ArrayCase("object_labels", lambda t: _fa(t, {"train": _tr(style=np.array([None, 1, 2, 0, 1, 2], object))}),
              "got objects"),
    ArrayCase("ragged_labels", lambda t: _fa(t, {"train": _tr(content=[[0, 1], [1]])}), "content labels"),
    ArrayCase("n_zero", lambda t: _fa(t, {"train": (X[:0], CON[:0], STY[:0])}),
              "split 'train' has no samples (N = 0)", "`from_arrays` N = 0, a 2-tuple, an unknown `kind`, a file as the parent", readme=False),
    ArrayCase("n_zero_test", _with("test", (X[:0], None, None)), "split 'test' has no samples"),
    ArrayCase("two_tuple", lambda t: _fa(t, {"train": (X, CON)}),
              "split 'train' must be a 3-tuple (x, content, style), got a 2-tuple", "`from_arrays` a 2-tuple",
              readme=False),
    ArrayCase("four_tuple", lambda t: _fa(t, {"train": (X, CON, STY, STY)}), "got a 4-tuple"),
    ArrayCase("bare_array", lambda t: _fa(t, {"train": X}), "got ndarray"),
    ArrayCase("parent_is_file", _file_parent, "afile is a file, not a folder",
              "`from_arrays` a file as the parent folder", readme=False),
    ArrayCase("no_train", lambda t: _fa(t, {"test": toy_arrays(4)}), "needs at least a 'train' split"),
    ArrayCase("splits_list", lambda t: _fa(t, [toy_arrays(4)]), "splits must be a dict"),
    ArrayCase("splits_empty", lambda t: _fa(t, {}), "splits must be a dict"),
    ArrayCase("x_four_dims", lambda t: _fa(t, {"train": _tr(x=X[:, :, 0])}), "fragments must be (N, L, C, H, W)"),
    ArrayCase("x_height_zero", lambda t: _fa(t, {"train": _tr(x=X[:, :, :, :0])}),
              "fragments of shape (C, H, W) = (3, 0, 16) are empty", "fragment height 0", readme=False),
    ArrayCase("x_int64", lambda t: _fa(t, {"train": _tr(x=X.astype(np.int64))}), "fragments must be uint8, float16 or float32"),
    ArrayCase("x_strings", lambda t: _fa(t, {"train": _tr(x=X.astype(str))}), "fragments must be uint8, float16 or float32"),
    ArrayCase("x_nan", lambda t: _fa(t, {"train": _tr(x=np.full(X.shape, np.nan, np.float32))}), "contain NaN or Inf"),
    ArrayCase("length_one", lambda t: _fa(t, {"train": (X[:, :1], CON[:, :1], STY)}), "samples need at least 2 fragments (L >= 2)",
              "samples with fewer than 2 fragments", readme=True),
    ArrayCase("content_shape", lambda t: _fa(t, {"train": _tr(content=CON[:, :2])}), "content labels must be (N, L)"),
    ArrayCase("style_shape", lambda t: _fa(t, {"train": _tr(style=STY[:3])}), "style labels must be (N,) or (N, L)"),
    ArrayCase("out_exists", _exists, "already exists; pass overwrite=True"),
    ArrayCase("overwrite_foreign", _foreign_overwrite, "is not a varinv dataset (no manifest.json)"),
    ArrayCase("names_string", lambda t: _fa(t, content_names="abcd"), "content_names must be a list of names"),
    ArrayCase("out_blank", lambda t: _blank_out(), "out must be a folder path"),
]


def _blank_out():
    from varinv.data.store import from_arrays

    return from_arrays(" ", {"train": toy_arrays(4)})


def all_cases() -> list:
    return [*CLI_CASES, *ARRAY_CASES]


# -- the shared world --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def world(tmp_path_factory):
    import torch

    from varinv import config as config_mod
    from varinv.data.store import from_arrays
    from varinv.train.trainer import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("world")
    x, c, s = toy_arrays(48)
    xt, ct, st = toy_arrays(16, seed=1)
    ds = from_arrays(root / "toy", {"train": (x, c, s), "test": (xt, ct, st)}, content_names=list("abcd"),
                     style_names=["red", "green", "blue"])
    ds.verify_cached()
    huge = from_arrays(root / "huge", {"train": (np.full((16, 4, 3, 16, 16), 3e38, np.float32), None, None)})
    huge.verify_cached()
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"]["path"] = str(ds.root)
    raw["train"].update(SMALL)
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    train(config_mod.from_dict(raw), root / "run", progress=False, tensorboard=False)
    train(config_mod.from_dict(raw), root / "partial", progress=False, tensorboard=False, stop_after=2)
    (root / "g.yaml").write_text(f"cells: [{{config: '{cfg}', k: [4]}}]\n")
    return {"root": root, "ds": ds.root, "huge": huge.root, "cfg": cfg, "run": root / "run",
            "partial": root / "partial"}



def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def fill(text: str, world, tmp: Path) -> str:
    for key in ("ds", "cfg", "run", "partial"):
        text = text.replace("{" + key + "}", str(world[key]))
    return text.replace("{tmp}", str(tmp))


def test_catalogue_size_and_ids():
    ids = [c.id for c in all_cases()]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    assert len(ids) >= 160, len(ids)
    assert 20 <= sum(c.readme for c in all_cases()) <= 40


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_case(case: Case, world, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.yaml").write_text(Path(world["root"], "g.yaml").read_text())
    for rel, content in case.files.items():
        path = tmp_path / rel
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(fill(content, world, tmp_path))
    if callable(case.argv):
        argv = [str(a) for a in case.argv(world, tmp_path)]
    else:
        argv = [fill(str(a), world, tmp_path) for a in case.argv]
    capsys.readouterr()
    before = {"tmp": hashes(tmp_path), "world": hashes(world["root"])}
    t0 = time.time()
    code, out, err = run_varinv(monkeypatch, capsys, *argv)
    seconds = time.time() - t0
    text = out + err
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert "Traceback" not in text, text
    assert code == 2, (code, text)
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert case.expect in lines[0], (case.expect, lines[0])
    after = {"tmp": hashes(tmp_path), "world": hashes(world["root"])}
    for where in before:
        changed = [k for k, h in before[where].items() if after[where].get(k) != h]
        assert not changed, f"{where}: files changed or removed: {changed}"
    assert seconds <= 10, f"{case.id} took {seconds:.1f} s"


@pytest.mark.parametrize("case", ARRAY_CASES, ids=[c.id for c in ARRAY_CASES])
def test_from_arrays_case(case: ArrayCase, tmp_path, monkeypatch):
    from varinv.errors import VarinvError

    monkeypatch.chdir(tmp_path)
    t0 = time.time()
    before = None
    # a case may create its own pre-existing files; what is there after its setup must stay
    with pytest.raises(VarinvError) as info:
        before = tree(tmp_path)
        case.call(tmp_path)
    message = str(info.value)
    assert "\n" not in message and message, message
    assert case.expect in message, (case.expect, message)
    assert not any(p.name.endswith(".tmp-writing") for p in tmp_path.rglob("*")), "temporary folder left behind"
    left = tree(tmp_path)
    assert "ds/x.npy" not in left and not (tmp_path / "ds" / "manifest.json").exists()
    assert left <= (before or set()) | {"afile", "ds", "ds/keep.txt"}, left - (before or set())
    assert time.time() - t0 <= 10


# -- what the fixes must keep or say ------------------------------------------------------------------
def test_partial_run_is_evaluated_with_one_warning(world, tmp_path, monkeypatch, capsys):
    run = tmp_path / "partial"
    shutil.copytree(world["partial"], run)
    code, out, err = run_varinv(monkeypatch, capsys, "evaluate", run, "--no-tsne", "--n-eval", "16")
    assert code == 0, out + err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "is at step 2 of 4" in warnings[0], err
    assert json.loads((run / "metrics.json").read_text())["step"] == 2


def test_partial_note_wording():
    from varinv.eval.evaluate import partial_note

    assert partial_note(Path("r"), 4, 4) is None
    assert "at step 1 of 4" in partial_note(Path("r"), 1, 4)


def test_numbers_without_a_dot_are_floats(world, tmp_path):
    from varinv import config as config_mod

    cfg = config_mod.compose(world["cfg"], overrides=["train.lr=1e-4", "train.weight_decay=5E-2", "train.lr_floor=1"])
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.weight_decay == 0.05 and cfg.train.lr_floor == 1.0
    path = tmp_path / "c.yaml"
    raw = yaml.safe_load(Path(world["cfg"]).read_text())
    raw["train"]["lr"] = "LR"
    text = yaml.safe_dump(raw).replace("lr: LR", "lr: 3e-4")
    assert "lr: 3e-4" in text
    path.write_text(text)
    assert config_mod.load(path).train.lr == 3e-4


def test_from_arrays_still_accepts_good_input(tmp_path):
    from varinv.data.store import from_arrays, open_dataset

    x, c, s = toy_arrays(6)
    ds = from_arrays(tmp_path / "ok", {"train": (x, c.astype(np.float64), s), "val": (x[:2], None, None)},
                     content_names=list("abcd"))
    assert open_dataset(ds.root).split("train").content.dtype == np.int64
    assert ds.style_names == ["0", "1", "2"]
    assert not (tmp_path / "ok.tmp-writing").exists()


def test_readme_table_is_generated_from_the_catalogue():
    import error_table

    readme = (ROOT / "README.md").read_text()
    start, end = error_table.START, error_table.END
    assert start in readme and end in readme, "README lacks the error table markers"
    current = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert current == error_table.render().strip(), "README error table is stale: run python tests/error_table.py --write"
