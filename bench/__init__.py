"""Benchmarks: runnable scripts (``python bench/<script>.py``) and their shared rig."""
