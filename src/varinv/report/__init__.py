"""The static demo site: `varinv report RUN_OR_BENCHMARK_DIRS... -o site/` (see build.py)."""
