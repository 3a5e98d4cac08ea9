"""varinv: unsupervised content-style disentanglement of sequential data."""

__version__ = "0.1.0"
