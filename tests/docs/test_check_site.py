"""The site checker finds broken links, missing anchors, remote scripts and raw TeX."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _checker():
    spec = importlib.util.spec_from_file_location("check_site", ROOT / "docs" / "check_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_links_anchors_and_remote_resources(tmp_path):
    check = _checker()
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<html><body><a href="sub/page.html#there">ok</a><a href="sub/page.html#nowhere">bad anchor</a>'
        '<a href="missing.html">missing</a><a href="https://example.org/">external link: fine</a>'
        '<script src="https://cdn.example.org/x.js"></script></body></html>')
    (tmp_path / "sub" / "page.html").write_text('<html><body><h1 id="there">t</h1>'
                                                '<a href="../index.html">back</a></body></html>')
    problems = check.check_links(tmp_path)
    assert any("no id 'nowhere'" in p for p in problems)
    assert any("broken link missing.html" in p for p in problems)
    assert any("loads https://cdn.example.org/x.js" in p for p in problems)
    assert len(problems) == 3


def test_raw_tex_and_rendered_math_are_told_apart():
    check = _checker()
    raw = check.parse('<div class="math">\\[ L = 1 - \\frac{a}{b} \\]</div>')
    assert check.RAW_TEX.findall(" ".join(raw.text)) and raw.math == 0
    done = check.parse('<mjx-container class="MathJax"><svg></svg></mjx-container><script>var a = "\\\\(";</script>')
    assert not check.RAW_TEX.findall(" ".join(done.text)) and done.math == 1
