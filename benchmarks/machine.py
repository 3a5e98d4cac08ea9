"""What the benchmark scripts record about the machine they ran on (one definition, in the package)."""

from varinv.bench import cpu_model  # noqa: F401
