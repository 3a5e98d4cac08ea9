"""Method registry: a new method is one module plus an entry in :data:`varinv.config.METHODS`."""

from __future__ import annotations

from varinv.config import METHODS, config_class, method_module

__all__ = ["available", "build_method", "config_class"]


def build_method(name: str, cfg, fragment_shape, seed: int = 0):
    return getattr(method_module(name), METHODS[name][1])(cfg, fragment_shape, seed=seed)


def available() -> list[str]:
    return sorted(METHODS)
