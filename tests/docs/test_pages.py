"""The documentation's pages: their examples run, and the generated pages cover the API."""
from __future__ import annotations

import doctest
import importlib
import inspect
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.rst") if not any(part.startswith("_") for part in p.relative_to(DOCS).parts)
               and p.relative_to(DOCS).parts[0] not in ("api", "gallery"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.IGNORE_EXCEPTION_DETAIL


def test_pages_found():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"index.rst", "guides/getting_started.rst", "guides/metrics.rst", "guides/domains.rst"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = doctest.DocTestParser()
    text = page.read_text(encoding="utf-8")
    test = parser.get_doctest(text, {}, page.name, str(page), 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {page.name} failed"


def _ext():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return importlib.import_module("seglosses_docs")
    finally:
        sys.path.remove(str(DOCS / "_ext"))


def test_api_pages_cover_the_registry_and_every_public_name(tmp_path):
    from seglosses import registry

    ext = _ext()
    pages = ext.generate_api(tmp_path)
    text = "\n".join(p.read_text() for p in tmp_path.rglob("*.rst"))
    for entry in registry.ENTRIES:  # one page per registered loss, with its class documented
        page = tmp_path / "losses" / f"{entry.name}.rst"
        assert page.is_file(), entry.name
        assert f".. autoclass:: seglosses.{entry.cls.__name__}" in page.read_text()
    assert pages >= len(registry.ENTRIES) + 5
    # every name of every documented module's __all__ appears (as a directive or an alias target)
    documented = set()
    for line in text.splitlines():
        if line.startswith(".. auto") and "::" in line:
            documented.add(line.split("::", 1)[1].strip())
    for modname, *_ in ext.MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as err:  # an integration whose framework is not installed
            if err.name and err.name.split(".")[0] in {"lightning", "nnunetv2", "monai"}:
                continue
            raise
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.ismodule(obj):
                continue
            same = [p for p in documented if _resolve(p) is obj]
            assert same or f"{modname}.{name}" in documented, f"{modname}.{name} is not documented"


def _resolve(path):
    modname, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(modname), name)
    except (ImportError, AttributeError):
        return None


def test_a_new_loss_gets_a_page_without_editing_the_docs(tmp_path, monkeypatch):
    from seglosses import registry
    from seglosses.losses import DiceLoss

    import dataclasses

    class DiceCopy(DiceLoss):
        info = dataclasses.replace(DiceLoss.info, name="dice_copy")

    extra = registry.Entry(DiceCopy, "a registered copy of the Dice loss", (), "region")
    monkeypatch.setattr(registry, "ENTRIES", registry.ENTRIES + [extra])
    _ext().generate_api(tmp_path)
    assert (tmp_path / "losses" / "dice_copy.rst").is_file()
    assert "dice_copy" in (tmp_path / "losses" / "index.rst").read_text()
    monkeypatch.undo()
    _ext().generate_api(tmp_path)  # and loses it when the loss is gone
    assert not (tmp_path / "losses" / "dice_copy.rst").exists()


def test_study_reference_lists_every_default_key(tmp_path):
    from seglosses.bench import study

    path = tmp_path / "ref.inc"
    _ext().generate_study_reference(path)
    text = path.read_text()
    assert ".. automodule:: seglosses.bench.study" in text
    for key in study.DEFAULTS:
        assert f"``{key}``" in text


def test_no_cdn_or_remote_script_in_the_docs_sources():
    for path in list(DOCS.rglob("*.py")) + list(DOCS.rglob("*.rst")) + list(DOCS.rglob("*.md")):
        if "_build" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert "cdn." not in text and "jsdelivr" not in text, path


def test_results_page_joins_the_toctree_only_when_it_exists(tmp_path, monkeypatch):
    ext = _ext()
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    monkeypatch.setattr(ext, "RESULTS", tmp_path / "results.md")
    source = [index]
    ext._add_results_to_toctree(None, "index", source)
    assert source[0] == index
    (tmp_path / "results.md").write_text("# Results\n")
    ext._add_results_to_toctree(None, "index", source)
    assert "   architecture\n   results\n" in source[0]
