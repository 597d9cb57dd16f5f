"""The static view of the package: typed marker, loss class stubs in step with the classes."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import seglosses

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_package_is_marked_typed():
    assert (pathlib.Path(seglosses.__file__).parent / "py.typed").is_file()


def test_loss_class_stubs_are_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "loss_stubs.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stub_lists_the_constructor_of_every_loss_class():
    text = (pathlib.Path(seglosses.__file__).parent / "losses" / "region.pyi").read_text()
    assert "class DiceLoss(SegLoss):" in text and "squared_denominator: bool = False" in text
    assert "JaccardLoss = IoULoss" in text
