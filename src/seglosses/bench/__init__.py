"""Benchmark tool behind ``seglosses bench``: data, model, training, evaluation and reports."""
