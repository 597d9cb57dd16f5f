"""The measured MONAI numbers of docs/guides/migrating.rst still come out of the script."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.peers


def _table():
    text = (ROOT / "docs" / "guides" / "migrating.rst").read_text(encoding="utf-8")
    rows = re.findall(r"   \* - (.+)\n     - ([0-9.]+)\n     - ([0-9.]+)\n", text)
    return {name: (float(m), float(s)) for name, m, s in rows}


def test_migration_table_matches_a_fresh_measurement():
    pytest.importorskip("monai")
    spec = importlib.util.spec_from_file_location("measure_conventions",
                                                  ROOT / "examples" / "migration" / "measure_conventions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    measured = module.measure()
    table = _table()
    assert set(table) == set(measured)
    for name, (m, s) in measured.items():
        assert table[name] == pytest.approx((m, s), abs=2e-6), name
