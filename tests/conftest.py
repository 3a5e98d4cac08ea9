import sys

import numpy as np
import pytest
import torch

from varinv.data.store import from_arrays


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


TOY_COLOURS = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 200, 20], [20, 200, 220]], np.uint8)


def toy_arrays(n: int, seed: int = 0, length: int = 4, styles=None):
    """Tiny image-like sequences: content = which quadrant is lit, style = the colour of the row.

    Styles are drawn at random from the first 3 colours, or cycle through ``styles`` (indices into
    TOY_COLOURS) when given.
    """
    rng = np.random.default_rng(seed)
    content = np.stack([rng.permutation(4)[:length] for _ in range(n)])
    style = rng.integers(0, 3, n) if styles is None else np.asarray(styles)[np.arange(n) % len(styles)]
    colours = TOY_COLOURS
    x = np.full((n, length, 3, 16, 16), 245, np.uint8)
    for q in range(4):
        r, c = divmod(q, 2)
        mask = content == q
        for ch in range(3):
            block = x[:, :, ch, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8]
            block[mask] = colours[style][:, None, ch].repeat(length, 1)[mask][:, None, None]
    return x, content, style


@pytest.fixture
def toy_dataset(tmp_path):
    x, c, s = toy_arrays(96)
    xt, ct, st = toy_arrays(24, seed=1)
    return from_arrays(tmp_path / "toy", {"train": (x, c, s), "test": (xt, ct, st)},
                       content_names=list("abcd"), style_names=["red", "green", "blue"])


TOY_CFG = {
    "model": {"method": "v3", "n_atoms": 4, "d_content": 8, "d_style": 8, "n_channels": 16, "n_layers": 2,
              "d_hidden": 64},
    "train": {"steps": 60, "batch_size": 16, "log_every": 10, "ckpt_every": 20, "threads": 1},
    "data": {"n_eval": 50},
}


def train_toy_run(root, data: dict | None = None, tensorboard: bool = False, **train):
    """A toy V3 run trained in this process under ``root``: (run folder, dataset folder). ``data`` and
    ``train`` update TOY_CFG's sections."""
    import json

    from varinv import config as config_mod
    from varinv.train.trainer import train as train_run

    ds = from_arrays(root / "toy", {"train": toy_arrays(32), "test": toy_arrays(12, seed=1)},
                     content_names=list("abcd"), style_names=["red", "green", "blue"])
    raw = json.loads(json.dumps(TOY_CFG))
    raw["data"].update(path=str(ds.root), **(data or {}))
    raw["train"].update(train)
    train_run(config_mod.from_dict(raw), root / "run", progress=False, tensorboard=tensorboard)
    return root / "run", ds.root


def run_varinv(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`varinv ARGS` in this process through cli.main, the real error path: (exit code, stdout, stderr)."""
    from varinv import cli

    monkeypatch.setattr(sys, "argv", ["varinv", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_error_line(code: int, text: str, *needles: str) -> str:
    """Assert what every bad input must give: exit 2, one line, starting ``error:``, naming the needles."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert code == 2, text
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert "Traceback" not in text
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


_HELD: list[int] = []  # descriptors holding a run-folder lock during one test


def held_lock(run, command: str = "train"):
    """Hold RUN/.lock (``run`` made if missing) as another `varinv COMMAND` (pid 4242) would, until the test ends."""
    import fcntl
    import os

    run.mkdir(parents=True, exist_ok=True)
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, f"4242 {command}\n".encode())
    _HELD.append(fd)
    return run


@pytest.fixture(autouse=True)
def _release_held_locks():
    yield
    import os

    while _HELD:
        os.close(_HELD.pop())

