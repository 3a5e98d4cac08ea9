"""Supervised fragment classifiers used by the evaluation: the judge and the few-shot counterpart.

* :class:`FragmentClassifier` is the conv :class:`~varinv.nn.backbones.Encoder` of the methods with its
  two linear heads sized to the number of content and style classes, so it outputs logits
  ``(content (N, n_content), style (N, n_style))`` per fragment. Trained with cross-entropy on both
  heads over the training split, it is

  - the **judge** of the judged-generation metrics (:mod:`varinv.eval.judged`), and
  - the **supervised counterpart** of the few-shot OOD comparison only when no ``supervised`` method
    is registered in :mod:`varinv.methods`; when it is (the normal case), that method is built with the
    run's backbone settings and trained instead (see :func:`build_counterpart`).

* Trained weights are cached in ``RUN/eval_cache/<name>-<key>.safetensors`` (+ ``.json``) where
  ``key`` hashes the dataset manifest, the architecture and every training setting, so a repeated
  evaluation loads instead of training, and any change retrains.

* Training is a pure function of ``settings.seed`` (on one machine, at one torch thread count): the
  initial weights are drawn from a torch RNG seeded with it (:func:`seeded_init`), the batches are
  :func:`~varinv.data.batching.batch_indices` draws of ``(seed, step)``. torch's global RNG starts from
  a random seed in every process, so weights drawn from it before seeding made every fresh evaluation
  train a different judge.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from varinv.data.batching import batch_indices, iterate, make_batch
from varinv.data.store import Dataset, Split
from varinv.nn.backbones import BackboneSpec, Encoder
from varinv.runs import EVAL_CACHE_DIR

__all__ = [
    "ClassifierSettings",
    "seeded_init",
    "FragmentClassifier",
    "train_classifier",
    "cached_classifier",
    "build_counterpart",
    "content_logits",
    "predict_labels",
    "accuracy_on",
]


@dataclasses.dataclass
class ClassifierSettings:
    """How a classifier is trained on the ID training split (every field enters the cache key)."""

    steps: int = 300
    batch_size: int = 8  # samples per step (× L fragments)
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0


def seeded_init(seed: int, make):
    """``make()`` (a module constructor) with torch's CPU RNG seeded to ``seed`` for the duration.

    The global RNG is forked and restored, so the weights depend on ``seed`` alone and building the
    model neither reads nor moves the RNG state that the caller (or another evaluation part) sees.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return make()


class FragmentClassifier(nn.Module):
    """Encoder + linear content and style heads: fragments ``(..., C, H, W)`` → logits.

    ``forward(x)`` takes ``(N, C, H, W)`` and returns ``(content_logits, style_logits)``;
    :meth:`predict_content` takes a batch of samples ``(B, L, C, H, W)`` and returns content logits
    ``(B, L, n_content)`` (the interface the few-shot code shares with the ``supervised`` method).
    With ``seed`` the initial weights are those of :func:`seeded_init` (else torch's global RNG's).
    """

    name = "fragment-classifier"
    uses_labels = True

    def __init__(self, shape: tuple[int, int, int], spec: BackboneSpec, n_content: int, n_style: int,
                 seed: int | None = None):
        super().__init__()
        self.shape, self.n_content, self.n_style = tuple(shape), int(n_content), int(n_style)

        def make():  # the encoder's two linear heads ARE the classifier heads (d_content = #content classes, …)
            return Encoder(self.shape, spec, max(self.n_content, 1), max(self.n_style, 1))

        self.encoder = make() if seed is None else seeded_init(seed, make)

    def forward(self, x: torch.Tensor):
        return self.encoder(x)

    def _flat(self, x: torch.Tensor):
        lead = x.shape[: x.dim() - 3]
        c, s = self.encoder(x.reshape(-1, *x.shape[-3:]))
        return c.reshape(*lead, -1), s.reshape(*lead, -1)

    def predict_content(self, x: torch.Tensor) -> torch.Tensor:
        return self._flat(x)[0]

    def content_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The same scores, under the name :func:`content_logits` calls (shared with ``Method``)."""
        return self._flat(x)[0]

    def predict_style(self, x: torch.Tensor) -> torch.Tensor:
        return self._flat(x)[1]

    def loss(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        c, s = self._flat(batch["x"])
        out = {
            "content_ce": F.cross_entropy(c.reshape(-1, c.shape[-1]), batch["content"].reshape(-1), ignore_index=-1),
            "style_ce": F.cross_entropy(s.reshape(-1, s.shape[-1]), batch["style"].reshape(-1), ignore_index=-1),
        }
        out["total"] = out["content_ce"] + out["style_ce"]
        return out


def content_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Content logits ``(B, L, n_classes)`` of a supervised model for samples ``(B, L, C, H, W)``:
    ``model.content_logits(x)``, the hook of :class:`~varinv.methods.base.Method` (None for methods
    without a content classifier) that :class:`FragmentClassifier` also has."""
    out = model.content_logits(x)
    if out is None:
        raise TypeError(f"{type(model).__name__} has no content classifier (its content_logits(x) returns None); "
                        "the supervised few-shot arm needs one")
    return out


@torch.no_grad()
def predict_labels(model: nn.Module, split: Split, what: str = "content",
                   batch_size: int = 64) -> np.ndarray:
    """Predicted labels ``(N, L)`` of every fragment of ``split`` (model in eval mode)."""
    model.eval()
    out = []
    for batch in iterate(split, batch_size):
        if what == "content":
            p = model.predict_content(batch["x"])
        else:
            p = model.predict_style(batch["x"])
        out.append((p.argmax(-1) if torch.is_floating_point(p) else p).numpy())
    return np.concatenate(out).astype(np.int64)


def accuracy_on(model: nn.Module, split: Split, what: str = "content") -> float:
    """Fragment accuracy of ``model`` on ``split`` for content or style labels."""
    pred = predict_labels(model, split, what)
    truth = split.content if what == "content" else split.style_per_fragment
    return float(np.mean(pred == np.asarray(truth)))


def train_classifier(model: nn.Module, split: Split, settings: ClassifierSettings) -> dict:
    """Train ``model`` with its own ``loss(batch, step)`` (labelled batches) on ``split``.

    Batches are :func:`~varinv.data.batching.batch_indices` draws (seeded), AdamW with a cosine
    decay to 0 over ``settings.steps``; torch's global RNG is seeded with ``settings.seed`` for any
    randomness inside ``loss``. The initial weights are the caller's: build ``model`` under
    :func:`seeded_init` for a reproducible result. Returns ``{"seconds", "final_loss"}``.
    """
    torch.manual_seed(settings.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(settings.steps, 1))
    model.train()
    t0, last = time.time(), float("nan")
    for step in range(settings.steps):
        idx = batch_indices(len(split), settings.batch_size, settings.seed, step)
        losses = model.loss(make_batch(split, idx), step)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()
        sched.step()
        last = float(losses["total"].detach())
    model.eval()
    return {"seconds": time.time() - t0, "final_loss": last}


def _spec_of(model_cfg) -> BackboneSpec:
    return model_cfg.spec() if hasattr(model_cfg, "spec") else BackboneSpec()


def _key(ds: Dataset, payload: dict) -> str:
    blob = json.dumps({"dataset": ds.hash(), **payload}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _load_or_train(cache_dir: Path, name: str, key: str, model: nn.Module, ds: Dataset,
                   settings: ClassifierSettings) -> dict:
    from safetensors.torch import load_file, save_file

    path = cache_dir / f"{name}-{key}.safetensors"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        try:
            model.load_state_dict(load_file(str(path)))
            model.eval()
            return {**json.loads(meta_path.read_text()), "cached": True}
        except (RuntimeError, OSError, ValueError, json.JSONDecodeError):
            pass  # stale or corrupt cache: retrain and overwrite
    info = train_classifier(model, ds.split("train"), settings)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)
    meta = {"name": name, "key": key, "settings": dataclasses.asdict(settings), **info}
    meta_path.write_text(json.dumps(meta, indent=1))
    return {**meta, "cached": False}


#: The judge's backbone: fixed (not the run's), so judged metrics of different runs and methods on one
#: dataset come from the same judge.
JUDGE_SPEC = BackboneSpec(n_channels=32, n_layers=3, blocks_per_layer=1, kernel=3, d_hidden=128, norm="batch")


def cached_classifier(run: Path, ds: Dataset, settings: ClassifierSettings,
                      spec: BackboneSpec = JUDGE_SPEC) -> tuple[FragmentClassifier, dict]:
    """The :class:`FragmentClassifier` (default backbone :data:`JUDGE_SPEC`), trained on ``train`` (or
    loaded from ``RUN/eval_cache``). Returns ``(model in eval mode, info)``."""
    n_c, n_s = len(ds.content_names), len(ds.style_names)
    model = FragmentClassifier(ds.fragment_shape, spec, n_c, n_s, seed=settings.seed)
    # v2: seeded initial weights; v1 caches hold a judge from an unseeded (per-process random) init
    key = _key(ds, {"spec": dataclasses.asdict(spec), "n": [n_c, n_s], "settings": dataclasses.asdict(settings),
                    "v": 2})
    info = _load_or_train(Path(run) / EVAL_CACHE_DIR, "classifier", key, model, ds, settings)
    return model, info


def build_counterpart(run: Path, ds: Dataset, model_cfg, settings: ClassifierSettings,
                      fallback: tuple[FragmentClassifier, dict] | None = None) -> tuple[nn.Module, dict]:
    """The supervised counterpart of the few-shot comparison, trained on the ID ``train`` split.

    If a method named ``supervised`` is registered, it is built with
    ``build_method("supervised", cfg, shape)`` (its config takes every field of the run's model config
    that it also has), trained with its own ``loss`` for ``settings.steps`` steps and cached; its
    content scores come from :func:`content_logits`. Otherwise (or if building it fails, which the
    returned ``info["note"]`` says) it is a :class:`FragmentClassifier` with the run's backbone
    (or ``fallback`` when given, e.g. the judge, so its training is reused).
    """
    from varinv import methods

    note = None
    if "supervised" in methods.available():
        try:
            from varinv import config as config_mod

            mcls = methods.config_class("supervised")
            names = {f.name for f in dataclasses.fields(mcls)}
            values = {k: v for k, v in dataclasses.asdict(model_cfg).items() if k in names}
            for key, n in (("n_content_classes", len(ds.content_names)), ("n_style_classes", len(ds.style_names))):
                if key in names:
                    values[key] = n
            mcfg = config_mod.build(mcls, values, "model")
            # seeded here: the method's constructor takes a seed but draws its weights from the global RNG
            model = seeded_init(settings.seed, lambda: methods.build_method("supervised", mcfg, ds.fragment_shape,
                                                                            seed=settings.seed))
            key = _key(ds, {"method": "supervised", "cfg": dataclasses.asdict(mcfg),
                            "settings": dataclasses.asdict(settings), "v": 2})  # v2: seeded init
            info = _load_or_train(Path(run) / EVAL_CACHE_DIR, "supervised", key, model, ds, settings)
            return model, {**info, "kind": "method:supervised"}
        except Exception as e:  # noqa: BLE001 - report and fall back rather than lose the whole evaluation
            note = f"the registered 'supervised' method could not be used ({type(e).__name__}: {e}); fell back"
    model, info = fallback if fallback is not None else cached_classifier(run, ds, settings, _spec_of(model_cfg))
    info = {**info, "kind": "fallback:FragmentClassifier (backbones.Encoder + linear heads)"}
    if note:
        info["note"] = note
    return model, info
