"""varinv: unsupervised content-style disentanglement of sequential data."""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "Model", "Codes"]


def __getattr__(name: str):
    # The Python API (varinv/api.py) imports torch: loaded on first use, so `import varinv` and the
    # CLI's start stay light.
    if name in ("load_model", "Model", "Codes"):
        from varinv import api

        return getattr(api, name)
    raise AttributeError(f"module 'varinv' has no attribute {name!r}")
