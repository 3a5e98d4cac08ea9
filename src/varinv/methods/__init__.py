"""Method registry: a new method is one module plus an entry here."""

from __future__ import annotations

import difflib

from varinv.errors import ConfigError

# name -> (module, method class, config class)
_REGISTRY = {
    "v3": ("varinv.methods.v3", "V3", "V3Config"),
    "mine": ("varinv.methods.mine", "MINE", "MINEConfig"),
    "cycle": ("varinv.methods.cycle", "Cycle", "CycleConfig"),
    "dsae": ("varinv.methods.dsae", "DSAE", "DSAEConfig"),
    "tsdsae": ("varinv.methods.tsdsae", "TSDSAE", "TSDSAEConfig"),
    "mvtcvae": ("varinv.methods.mvtcvae", "MVTCVAE", "MVTCVAEConfig"),
    "betavae": ("varinv.methods.betavae", "BetaVAE", "BetaVAEConfig"),
    "supervised": ("varinv.methods.supervised", "Supervised", "SupervisedConfig"),
}


def _resolve(name: str):
    import importlib

    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown method '{name}'{hint}; available: {', '.join(sorted(_REGISTRY))}")
    mod, cls, cfg = _REGISTRY[name]
    module = importlib.import_module(mod)
    return getattr(module, cls), getattr(module, cfg)


def config_class(name: str):
    return _resolve(name)[1]


def build_method(name: str, cfg, fragment_shape, seed: int = 0):
    return _resolve(name)[0](cfg, fragment_shape, seed=seed)


def available() -> list[str]:
    return sorted(_REGISTRY)
