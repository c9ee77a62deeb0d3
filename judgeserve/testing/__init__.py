"""Tiny models built locally for tests, benchmarks and the demo (no downloads), and
simulated runs of an unchanging model for measuring alert false alarms."""
