"""Benchmark suite of seglosses (run with ``python -m benchmarks.run``)."""
