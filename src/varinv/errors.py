"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class VarinvError(Exception):
    """Base class: the message names the bad value and how to fix it."""

    exit_code = 2


class ConfigError(VarinvError):
    """A config key or value is wrong."""


class DataError(VarinvError):
    """A dataset is missing, truncated, corrupt or does not fit the config."""


class CheckpointError(VarinvError):
    """A checkpoint is missing, truncated or tampered with."""


class TrainingError(VarinvError):
    """Training cannot go on (a NaN loss, a run folder that cannot be written)."""


class DependencyError(VarinvError):
    """An optional system dependency is missing; the message says how to install it."""
