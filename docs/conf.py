"""Sphinx configuration of the seglosses documentation.

Build (from the repository root)::

    python -m pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API reference, the study-file and command-line references and the gallery are
generated from the code at build time (``docs/_ext/seglosses_docs.py``, sphinx-gallery);
formulas are rendered by MathJax copied from its Python package into the site, so the
site needs no network, neither to build nor to read.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))  # document this checkout, also without an install
sys.path.insert(0, str(DOCS / "_ext"))
os.environ.setdefault("MPLBACKEND", "agg")

import seglosses  # noqa: E402

project = "seglosses"
author = "the seglosses authors"
copyright = "the seglosses authors"
release = version = seglosses.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "seglosses_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "results/**", "**/_generated", "gallery/*.ipynb", "gallery/*.py",
                    "gallery/*.zip", "gallery/*.md5", "gallery/*.codeobj.json"]
templates_path: list = []

# ---- autodoc / napoleon: the docstrings are Google style with reST math blocks
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# the docstrings' own sections besides Args/Returns/Raises/Example
napoleon_custom_sections = [
    ("Common args", "params_style"),
    ("Convention", "notes_style"),
    ("Shape", "notes_style"),
    ("Backends", "notes_style"),
    ("Two forms", "notes_style"),
]
# optional peers: document their integration modules even where they are not installed
autodoc_mock_imports = [m for m in ("lightning", "monai", "nnunetv2", "torchmetrics")
                        if importlib.util.find_spec(m) is None]

# ---- math: MathJax 3 from the django-static-mathjax package, copied into _static by
# seglosses_docs at the end of the build; the path is relative to _static
mathjax_path = "mathjax/tex-svg.js"

# ---- markdown pages (docs/*.md)
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]
# the Markdown pages are also read on GitHub, where they link to files of the repository
# (study files, CSVs) that are no pages of this site: such links stay plain text here;
# links between pages are still checked by docs/check_site.py
suppress_warnings = ["myst.xref_missing", "myst.header"]

# ---- gallery: every script runs at build time
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples" / "gallery"),
    "gallery_dirs": "gallery",
    "filename_pattern": r"plot_",
    "abort_on_example_error": True,
    "image_scrapers": ("matplotlib",),
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 0,
    "show_signature": False,
    "write_computation_times": False,  # its page loads scripts from a CDN
    "within_subsection_order": "FileNameSortKey",
}

# ---- copy buttons: copy the code without prompts or output
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = False

# ---- HTML
html_theme = "furo"
html_title = f"seglosses {release}"
html_static_path: list = []
html_show_sourcelink = False
html_copy_source = False
