"""Tiny models built locally for tests, benchmarks and the demo (no downloads)."""
