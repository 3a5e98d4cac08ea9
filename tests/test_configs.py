"""Every shipped config loads and validates, and its backbone fits its dataset's fragment shape
(cheap: no data, no training; the small configs build their model and run one encode/decode)."""

from pathlib import Path

import pytest
import torch

from varinv import config as config_mod
from varinv.methods import build_method
from varinv.nn.backbones import _plan, resolved

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
# Fragment shape (C, H, W) of each data folder the configs name (the generators' manifests).
SHAPES = {
    "phonenums": (3, 48, 32), "phonenums-10k": (3, 48, 32), "phonenums-demo": (3, 48, 32),
    "insnotes": (1, 128, 32), "insnotes-512": (1, 512, 32),
    "waveforms": (1, 256, 8), "waveforms-512": (1, 512, 32),
}
# Content / style classes of each dataset (the K a method without a codebook clusters into by default).
CLASSES = {"phonenums": (10, 8), "insnotes": (12, 12), "waveforms": (21, 4)}
BACKBONE = ("n_channels", "n_layers", "blocks_per_layer", "kernel", "d_hidden")
SMALL = [p for p in CONFIGS if p.stem.endswith("_small")]


def _dataset(path: Path) -> str:
    return path.stem.split("_")[0]


def test_configs_cover_every_method_on_every_dataset():
    from varinv.methods import available

    stems = {p.stem for p in SMALL}
    missing = [f"{d}_{m}_small" for d in CLASSES for m in available() if f"{d}_{m}_small" not in stems]
    assert not missing


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_backbone_fits_its_fragments(path):
    cfg = config_mod.load(path)
    folder = Path(cfg.data.path).name
    assert folder in SHAPES, f"{path.name}: add the fragment shape of data folder {folder!r} to SHAPES"
    generic = "_" not in path.stem  # v3.yaml etc.: any dataset, the backbone from its fragment shape
    assert generic or folder.startswith(_dataset(path))
    for shape in sorted(set(SHAPES.values())) if generic else [SHAPES[folder]]:
        chans, strides, sizes = _plan(shape, cfg.model.spec())
        # every strided layer shrinks the map (none is wasted at stride 1) and the last map is small
        # (a side above 8 means too few layers: the flattening linear layer grows with it)
        assert all(s != (1, 1) for s in strides), f"{path.name}: {cfg.model.n_layers} layers, sizes {sizes}"
        assert max(sizes[-1]) <= 8, f"{path.name}: {cfg.model.n_layers} layers leave a {sizes[-1]} map"


@pytest.mark.parametrize("path", SMALL, ids=lambda p: p.stem)
def test_small_configs_match_their_datasets_v3_backbone_and_classes(path):
    ds = _dataset(path)
    kind = "image" if ds == "phonenums" else "spectrogram"
    cfg = config_mod.for_data(config_mod.load(path), kind)
    v3 = config_mod.load(path.with_name(f"{ds}_v3_small.yaml"))
    shape = SHAPES[Path(cfg.data.path).name]
    # the same backbone, set by hand or by the size rule (n_layers / n_channels 0)
    assert ({k: getattr(resolved(shape, cfg.model.spec()), k) for k in BACKBONE}
            == {k: getattr(resolved(shape, v3.model.spec()), k) for k in BACKBONE})
    n_content, n_style = CLASSES[ds]
    assert (getattr(cfg.model, "n_atoms", 0) or cfg.data.n_clusters or n_content) == n_content
    if cfg.method == "supervised":
        assert (cfg.model.n_content_classes, cfg.model.n_style_classes) == (n_content, n_style)
    # the model builds for the fragment shape and reconstructs it (what `varinv train` would hit first)
    model = build_method(cfg.method, cfg.model, shape, seed=0).eval()
    x = torch.zeros(2, 2, *shape)
    with torch.no_grad():
        enc = model.encode(x)
        assert model.decode(model.decoder_content(enc), enc.style).shape == x.shape
