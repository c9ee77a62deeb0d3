"""Cheap detectors that score every sample: each registers as a ``judgeserve.scorers`` entry point."""
