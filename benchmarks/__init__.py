"""Benchmarks: runnable with ``python -m benchmarks.<name>``; each prints its figures and the machine."""
