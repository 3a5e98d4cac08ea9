"""Speed settings of a training run that leave its maths unchanged.

``setup(model, train_cfg)`` is called once by the trainer right after the model is built, before
the optimizer and any checkpoint are loaded:

* ``train.channels_last``: conv weights (and so the activations, which follow the weights'
  layout in PyTorch's oneDNN convolutions, batch norm, GELU and upsampling) in NHWC layout. The
  functions computed are the same; only the order of floating-point accumulation inside the convs
  may differ. Reshapes of conv maps (``flatten``, ``reshape``) keep the logical element order, and
  checkpoints are written contiguous, so runs with and without it load each other's checkpoints.
  On this project's CPU it makes a one-thread step faster (CPU-small PhoneNums ~1.2x) but a
  two-thread one slower (oneDNN's NHWC kernels leave the second core mostly idle), so the default
  ``auto`` uses it on one thread and on GPUs only. PyTorch's CPU batch norm gathers its batch
  statistics less precisely in this layout (relative error ~1e-5 instead of ~1e-6 on the latents),
  so a run does not reproduce its NCHW twin number for number, though it does reproduce itself;
  under ``auto`` a run resumed with another thread count may change layout, and so its rounding. The trunks
  hand their gradients back in the same layout (``backbones.grad_in_layout``): a backward kernel fed an NCHW
  gradient for an NHWC input runs several times slower.
* ``train.compile``: the conv trunks (every outermost backbone ``Encoder``/``Decoder`` and DSAE
  ``FeatureNet``, where nearly all of a step's time goes) run through ``torch.compile`` (inductor,
  static shapes: one compilation per input shape and train/eval/no-grad mode, paid at the first
  such call). Not the whole ``loss``: it holds data-dependent Python (k-means init, dead-atom
  restarts, scipy matching, step-gated terms) that would split it into many graphs and recompile.
  Only calls made inside ``model.loss`` (the training step) are compiled; inference (health check,
  TensorBoard images) stays eager rather than compile once more for its own batch shapes.
  Each trunk keeps its own parameters and only its ``forward`` is swapped, so state-dict keys carry
  no ``_orig_mod.`` prefix and checkpoints load with and without compile. Fused kernels round
  differently, as channels-last does. If compiling fails (forward or backward, which is compiled
  with it here), training continues eagerly after one ``warning:`` line.

bf16 autocast (``train.precision``) changes the arithmetic and stays a separate, opt-in setting;
glibc's allocator is tuned by ``trainer.keep_freed_memory``. Measurements:
benchmarks/bench_speed.py, benchmarks/bench_train_speed.py.
"""

from __future__ import annotations

import sys

import torch

_STATE_ATTR = "_varinv_compile"


def setup(model: torch.nn.Module, t) -> torch.nn.Module:
    """Apply the speed options of TrainConfig ``t`` to ``model`` in place; returns the model."""
    if use_channels_last(t.channels_last, model):
        model.to(memory_format=torch.channels_last)
    if getattr(t, "compile", False):
        compile_trunks(model)
    return model


def use_channels_last(option, model: torch.nn.Module) -> bool:
    """``train.channels_last`` resolved: "auto" is NHWC on a GPU or on one CPU thread (the process's
    count at the time, set by ``train.threads``), NCHW on several CPU threads."""
    if option != "auto":
        return bool(option)
    on_gpu = any(p.device.type != "cpu" for p in model.parameters())
    return on_gpu or torch.get_num_threads() == 1


class _CompileState:
    """Shared by one model's compiled trunks: the first failure turns all of them eager, warned once."""

    def __init__(self, names: list[str]):
        self.names = names
        self.failed: str | None = None
        self.in_step = False  # inside model.loss: the only calls that are compiled

    def fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = reason
            print(f"warning: train.compile: torch.compile failed ({reason}); training continues without it "
                  "(same model, no speed-up)", file=sys.stderr, flush=True)


def _reason(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _compile(fn):
    """torch.compile of one forward (a seam: tests replace it with one that fails)."""
    return torch.compile(fn, dynamic=False)


class _CompiledForward:
    """A module's ``forward``: compiled, or eager once compiling failed for any trunk of the model."""

    def __init__(self, eager, state: _CompileState):
        self.eager, self.state = eager, state
        try:
            self.compiled = _compile(eager)
        except Exception as e:  # noqa: BLE001 - e.g. a Python version dynamo does not support
            self.compiled = None
            state.fail(_reason(e))

    def __call__(self, *args, **kwargs):
        if self.compiled is None or self.state.failed is not None or not self.state.in_step:
            return self.eager(*args, **kwargs)
        try:
            # compile the backward together with the forward, so that its failure is caught here too
            import torch._functorch.config as functorch_config  # a submodule torch does not always load

            with functorch_config.patch(force_non_lazy_backward_lowering=True):
                return self.compiled(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - whatever broke, eager decides whether the inputs are at fault
            out = self.eager(*args, **kwargs)  # a genuine error (bad input) raises here, as without compile
            self.state.fail(_reason(e))
            return out


class _Step:
    """``model.loss`` with the compiled trunks switched on for its duration."""

    def __init__(self, loss, state: _CompileState):
        self.loss, self.state = loss, state

    def __call__(self, *args, **kwargs):
        outer, self.state.in_step = self.state.in_step, True
        try:
            return self.loss(*args, **kwargs)
        finally:
            self.state.in_step = outer


def _trunk_types() -> tuple[type, ...]:
    from varinv.methods.dsae import FeatureNet
    from varinv.nn.backbones import Decoder, Encoder

    return (Encoder, Decoder, FeatureNet)


def compile_trunks(model: torch.nn.Module) -> list[str]:
    """Route the forward of every outermost conv trunk of ``model`` through torch.compile, in place;
    returns their names. A second call changes nothing."""
    if getattr(model, _STATE_ATTR, None) is not None:
        return getattr(model, _STATE_ATTR).names
    kinds = _trunk_types()
    names: list[str] = []
    for name, m in model.named_modules():
        if isinstance(m, kinds) and not any(name.startswith(n + ".") for n in names):
            names.append(name)
    state = _CompileState(names)
    for name in names:  # instance attributes that shadow the methods; parameters and buffers stay put
        m = model.get_submodule(name)
        m.forward = _CompiledForward(type(m).forward.__get__(m), state)
    if names:
        model.loss = _Step(type(model).loss.__get__(model), state)
    object.__setattr__(model, _STATE_ATTR, state)
    return names


def compile_summary(model: torch.nn.Module) -> str:
    """One line on what train.compile did in this process (benchmark reports): off, eager after a
    failure, or the compiled trunks with dynamo's graph and graph-break counts."""
    state = getattr(model, _STATE_ATTR, None)
    if state is None:
        return "off"
    if state.failed is not None:
        return f"failed, ran eager ({state.failed})"
    from torch._dynamo.utils import counters

    graphs = counters["stats"].get("unique_graphs", 0)
    breaks = sum(counters["graph_break"].values())
    why = "; ".join(sorted(counters["graph_break"]))[:300]
    return (f"compiled {', '.join(state.names)}: {graphs} graph(s), {breaks} graph break(s)"
            + (f" ({why})" if why else ""))
