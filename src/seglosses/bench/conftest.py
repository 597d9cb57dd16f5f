"""Doctest collection: examples that need an optional extra are skipped without it."""
import importlib.util

import pytest

_NEEDS = {"seglosses.bench.executors.SlurmRun": "submitit"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        package = _NEEDS.get(item.name)
        if package is not None and importlib.util.find_spec(package) is None:
            item.add_marker(pytest.mark.skip(reason=f"needs the optional package {package}"))
