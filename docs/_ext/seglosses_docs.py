"""Build-time pages of the seglosses documentation.

Everything here is generated from the code at build time, so the site cannot drift from it:

* the API reference (``api/``): one page per registered loss (read from
  :data:`seglosses.registry.ENTRIES`) and one page per public module, listing the names of
  the module's ``__all__`` (a new loss, metric or function appears without editing a page);
  every public name is documented once, under its shortest public path;
* the study-file reference (``guides/_generated/study_reference.inc``) from the
  docstring, :data:`~seglosses.bench.study.DEFAULTS` and
  :data:`~seglosses.bench.study.PRESETS` of :mod:`seglosses.bench.study`;
* the command-line reference from the ``seglosses`` argument parser;
* the math renderer: MathJax is copied from its installed Python package into the built
  site's ``_static/mathjax`` (no network at build or view time).
"""
from __future__ import annotations

import importlib
import inspect
import json
import shutil
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent

# (module, page file, title, intro): the public modules whose ``__all__`` is documented.
MODULES: List[Tuple[str, str, str, str]] = [
    ("seglosses.functional", "functional", "Functional losses and the statistics kernel",
     "Every loss as a function ``f(input, target, *, ...)``; the module classes call these."),
    ("seglosses.regularizers", "regularizers", "Regularisers and label smoothing",
     "Regularisers add to any loss (``loss + 0.1 * ConfidencePenalty()``); label smoothing "
     "transforms the target."),
    ("seglosses.metrics", "metrics", "Metrics",
     "Overlap, ranking and surface metrics per image and class, and their streaming forms."),
    ("seglosses.distance", "distance", "Distance transforms",
     "Exact Euclidean distance transforms of batched masks (2D, 3D, anisotropic spacing)."),
    ("seglosses.accumulate", "accumulate", "Exact batchwise training: accumulation",
     "The batchwise loss of a batch larger than memory, over micro-batches."),
    ("seglosses.distributed", "distributed", "Exact batchwise training: distributed",
     "Statistics all-reduced across processes, for batchwise losses under DDP."),
    ("seglosses.losses", "composition", "Loss modules, composition and builders",
     "The base class, the weighted sum behind ``+`` and ``*``, weight schedules, the registry "
     "and :func:`seglosses.build_loss`."),
    ("seglosses", "toplevel", "Other top-level names",
     "Names of the ``seglosses`` namespace not documented on another page."),
    ("seglosses.integrations", "integrations", "Integrations",
     "seglosses inside Lightning, MONAI and nnU-Net v2."),
    ("seglosses.integrations.nnunet", "integrations_nnunet", "Integrations: nnU-Net v2",
     "The nnU-Net v2 trainer and its loss wiring."),
    ("seglosses.integrations.lightning", "integrations_lightning", "Integrations: Lightning",
     "A LightningModule with a seglosses loss and seglosses metrics."),
]
# written by hand where the documented class only exists with an optional package installed
FALLBACK = {
    "integrations_nnunet": ("nnUNetTrainerSeglosses", """
.. py:class:: seglosses.integrations.nnunet.nnUNetTrainerSeglosses

   nnU-Net v2's ``nnUNetTrainer`` with a seglosses loss (any :func:`seglosses.build_loss`
   spec). Defined when ``nnunetv2`` is importable (it is not, where this page was built).
   Its ``_build_loss`` returns :func:`build_nnunet_loss` with the trainer's label manager
   (regions, ignore label), deep-supervision scales and DDP flag.

   .. py:attribute:: loss_spec
      :value: None

      The loss spec; ``None``: ``$SEGLOSSES_NNUNET_LOSS``, else ``"dice + ce"``.
"""),
}
# extra names documented on a page although their module has no __all__ entry for them
EXTRA = {"composition": ["seglosses.build_loss", "seglosses.registry.list_losses", "seglosses.registry.resolve",
                         "seglosses.registry.Entry", "seglosses.registry.ENTRIES"]}


def _write(path: Path, text: str) -> None:
    """Write only when the content changed (keeps incremental builds incremental)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _escape(text: str) -> str:
    """Plain text safe inside reST (registry descriptions contain ``*``, ``|``, ``_``)."""
    for ch in "\\*|_`":
        text = text.replace(ch, "\\" + ch)
    return text


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        return "autoclass"
    if callable(obj):
        return "autofunction"
    return "autodata"


def _public_all(modname: str) -> List[str]:
    mod = importlib.import_module(modname)
    return list(getattr(mod, "__all__", []))


class _Index:
    """Assign every public object one documented path (the first page that claims it)."""

    def __init__(self) -> None:
        self.documented: Dict[int, str] = {}

    def claim(self, obj: Any, path: str) -> bool:
        if inspect.ismodule(obj):
            return False
        key = id(obj)
        if isinstance(obj, (int, float, str, tuple, list, dict, frozenset, set)):
            key = id(path)  # plain data: document by name, never dedupe by identity
            self.documented[key] = path
            return True
        if key in self.documented:
            return False
        self.documented[key] = path
        return True

    def path_of(self, obj: Any) -> str | None:
        return self.documented.get(id(obj))


def _functional_of(cls: type) -> Any:
    fn = getattr(cls, "function", None)
    if fn is None:
        return None
    fn = inspect.unwrap(fn)
    import seglosses.functional as F

    name = getattr(fn, "__name__", "")
    return fn if getattr(F, name, None) is fn else None


def _directive(kind: str, path: str, options: Iterable[str] = ()) -> str:
    lines = [f".. {kind}:: {path}"]
    lines += [f"   :{opt}:" for opt in options]
    return "\n".join(lines) + "\n"


def generate_api(out: Path) -> int:
    """Write the API pages into ``out``; returns the number of pages."""
    import seglosses
    from seglosses import registry

    index = _Index()
    pages = 0

    # ---- one page per registered loss, grouped by family
    families: Dict[str, List[Any]] = {}
    for entry in registry.ENTRIES:
        families.setdefault(getattr(entry, "family", "other"), []).append(entry)
    loss_rows = []
    loss_docs = []
    for family, entries in families.items():
        for entry in entries:
            cls = entry.cls
            public = f"seglosses.{cls.__name__}" if getattr(seglosses, cls.__name__, None) is cls \
                else f"{cls.__module__}.{cls.__qualname__}"
            index.claim(cls, public)
            fn = _functional_of(cls)
            doc = f"losses/{entry.name}"
            loss_docs.append(doc)
            aliases = ", ".join(f"``{a}``" for a in getattr(entry, "aliases", ())) or "none"
            body = [
                f".. _loss-{entry.name}:\n",
                _title(f"{cls.__name__}"),
                f"Registry name ``{entry.name}`` (aliases: {aliases}); family: {family}. "
                f"Build it by name with ``seglosses.build_loss(\"{entry.name}\")``.\n",
                f"*{_escape(getattr(entry, 'description', '') or cls.__name__)}*\n",
            ]
            info = getattr(cls, "info", None)
            if info is not None:
                lo, hi = info.value_range
                extra = ""
                if info.range_of is not None and "log_loss" in inspect.signature(cls).parameters:
                    llo, lhi = info.range_for({"log_loss": True})
                    extra = f" ([{llo:.4g}, {lhi:.4g}] with ``log_loss=True``)"
                body.append(f"Declared range of the reduced loss: [{lo}, {hi}]{extra}"
                            f"{'; minimum at a perfect prediction' if info.minimum_at_truth else ''}.\n")
            body.append(_directive("autoclass", public))
            if fn is not None:
                fpath = f"seglosses.functional.{fn.__name__}"
                body.append(f"Functional form: :func:`{fpath}` (documented on :doc:`../functional`).\n")
            _write(out / f"{doc}.rst", "\n".join(body))
            pages += 1
            loss_rows.append((entry.name, cls.__name__, family, getattr(entry, "description", "") or cls.__name__, doc))

    lines = [_title("Losses"),
             "Every registered loss and regulariser, read from :data:`seglosses.registry.ENTRIES` "
             "at build time. Each page shows the formula, the source paper, the conventions "
             "(empty masks, ignored pixels, domain) and the arguments.\n",
             ".. list-table::", "   :header-rows: 1", "   :widths: 35 65", "",
             "   * - loss (registry name, family)", "     - definition"]
    for name, clsname, family, desc, doc in loss_rows:
        lines += [f"   * - :doc:`{clsname} <{doc.split('/', 1)[1]}>` (``{name}``, {family})",
                  f"     - {_escape(desc)}"]
    lines += ["", ".. toctree::", "   :hidden:", ""]
    lines += [f"   {d.split('/', 1)[1]}" for d in loss_docs]
    _write(out / "losses" / "index.rst", "\n".join(lines) + "\n")
    pages += 1

    # ---- one page per public module
    module_pages = []
    for modname, page, title, intro in MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        names = _public_all(modname)
        by_module: Dict[str, List[Tuple[str, Any]]] = {}
        for name in names:
            try:
                obj = getattr(mod, name)
            except (AttributeError, ImportError):
                continue
            path = f"{modname}.{name}"
            if not index.claim(obj, path):
                continue
            home = getattr(obj, "__module__", None) or modname
            by_module.setdefault(home if isinstance(home, str) else modname, []).append((path, obj))
        for path in EXTRA.get(page, []):
            modpath, _, name = path.rpartition(".")
            obj = getattr(importlib.import_module(modpath), name)
            if index.claim(obj, path):
                by_module.setdefault(modpath, []).append((path, obj))
        if not by_module:
            continue
        body = [_title(title), intro + "\n"]
        if page == "metrics":
            body.append("Empty masks and the other conventions: :doc:`../guides/metrics`.\n")
        if page.startswith("integrations"):
            body.append("How to use them: :doc:`../guides/integrations`.\n")
        for home in sorted(by_module, key=lambda h: (h != modname, h)):
            if len(by_module) > 1:
                body.append(_title(f"From ``{home}``", "-"))
            for path, obj in by_module[home]:
                options = ["members"] if inspect.isclass(obj) and (page in ("metrics", "accumulate", "distributed",
                                                                          "composition") or page.startswith("integrations")) else []
                body.append(_directive(_kind(obj), path, options))
        if page in FALLBACK and FALLBACK[page][0] not in names:
            body.append(FALLBACK[page][1])
        _write(out / f"{page}.rst", "\n".join(body))
        module_pages.append(page)
        pages += 1

    lines = [_title("API reference"),
             "Generated at build time from the registry and each module's ``__all__``.\n",
             ".. toctree::", "   :maxdepth: 2", "", "   losses/index"]
    lines += [f"   {p}" for p in module_pages]
    lines += ["   cli"]
    _write(out / "index.rst", "\n".join(lines) + "\n")
    pages += 1
    pages += generate_cli(out / "cli.rst")
    # drop pages of names that no longer exist (a loss removed or renamed since the last build)
    keep = {out / "index.rst", out / "cli.rst", out / "losses" / "index.rst"}
    keep |= {out / f"{d}.rst" for d in loss_docs} | {out / f"{p}.rst" for p in module_pages}
    for stale in set(out.rglob("*.rst")) - keep:
        stale.unlink()
    return pages


def generate_cli(path: Path) -> int:
    """The ``seglosses`` command reference: the parser's own help texts."""
    from seglosses.cli import build_parser

    parser = build_parser()
    body = [_title("Command line: ``seglosses``"),
            "``seglosses`` and ``python -m seglosses`` are the same command. "
            "The help texts below are the parser's own, captured at build time.\n",
            ".. automodule:: seglosses.cli", "   :no-members:", "",
            _title("seglosses --help", "-"), "::", ""]
    body += ["   " + line for line in parser.format_help().splitlines()]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, subparser in sub.choices.items():
        body += ["", _title(f"seglosses {name} --help", "-"), "::", ""]
        body += ["   " + line for line in subparser.format_help().splitlines()]
    _write(path, "\n".join(body) + "\n")
    return 1


def _yaml_value(value: Any) -> str:
    return json.dumps(value)


def generate_study_reference(path: Path) -> None:
    """The study-file reference: the module docstring and the defaults of every key."""
    from seglosses.bench import study

    body = [".. This file is generated by docs/_ext/seglosses_docs.py from seglosses.bench.study.\n",
            ".. automodule:: seglosses.bench.study", "   :no-members:", "",
            _title("Every key and its default", "~"),
            "Read from ``seglosses.bench.study.DEFAULTS`` at build time.\n",
            ".. list-table::", "   :header-rows: 1", "   :widths: 30 70", "",
            "   * - key", "     - default"]
    for key, value in study.DEFAULTS.items():
        body += [f"   * - ``{key}``", f"     - ``{_yaml_value(value)}``"]
    presets = getattr(study, "PRESETS", {})
    if presets:
        body += ["", _title("Data-set presets", "~"),
                 "A data set can be named by preset (``datasets: [isbi2012-em]``); its settings "
                 "(``seglosses.bench.study.PRESETS``):\n"]
        for name, settings in presets.items():
            body += [f"``{name}``", "", ".. code-block:: json", ""]
            body += ["   " + line for line in json.dumps(settings, indent=2, default=str).splitlines()]
            body.append("")
    body += ["", _title("Data-set specification", "~"),
             "The keys of one data set (the ``datasets`` list), from "
             ":mod:`seglosses.bench.data`:\n",
             ".. automodule:: seglosses.bench.data", "   :no-members:", ""]
    _write(path, "\n".join(body) + "\n")


# ---- MathJax, bundled from its Python package
MATHJAX_PARTS = ("tex-svg.js", "input", "ui", "a11y", "sre")


def mathjax_source() -> Path:
    import mathjax  # the django-static-mathjax distribution: MathJax 3 in mathjax/static/mathjax

    src = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5"
    if not (src / "tex-svg.js").is_file():
        raise RuntimeError(f"MathJax not found in {src}; install the docs extra: pip install -e .[docs]")
    return src


def copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    src = mathjax_source()
    dst = Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        s, d = src / part, dst / part
        if s.is_dir():
            shutil.copytree(s, d, dirs_exist_ok=True)
        else:
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)


RESULTS = DOCS / "results.md"


def _results_directive():
    from docutils import nodes
    from docutils.parsers.rst import Directive
    from sphinx import addnodes

    class ResultsLink(Directive):
        """A link to the measured results page, or a note that this build has none."""

        has_content = False

        def run(self):
            para = nodes.paragraph()
            if RESULTS.is_file():
                para += nodes.Text("Measured results: ")
                ref = addnodes.pending_xref("", refdomain="std", reftype="doc", reftarget="/results",
                                            refexplicit=False, refwarn=True)
                ref += nodes.inline("", "results page")
                para += ref
                para += nodes.Text(" (docs/results.md).")
            else:
                para += nodes.Text("This build has no measured results page: docs/results.md is not part of "
                                   "this checkout, and nothing on this page is a measurement of seglosses.")
            return [para]

    return ResultsLink


def _add_results_to_toctree(app, docname, source) -> None:
    """List docs/results.md in the reference toctree when the checkout has it."""
    if docname == "index" and RESULTS.is_file():
        source[0] = source[0].replace("   architecture\n", "   architecture\n   results\n")


def _generate(app) -> None:
    generate_api(DOCS / "api")
    generate_study_reference(DOCS / "guides" / "_generated" / "study_reference.inc")


def setup(app):
    mathjax_source()  # fail early, before a long build, when the renderer is missing
    app.connect("builder-inited", _generate)
    app.connect("source-read", _add_results_to_toctree)
    app.add_directive("seglosses-results", _results_directive())
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
