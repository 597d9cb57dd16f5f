"""Check the built site in a real headless browser, and every internal link.

    python docs/check_site.py docs/_build/html

1. Every page of the build: each relative link and image points to a file of the build,
   each ``#fragment`` to an id of its page; no page loads a script, style or font from
   another host.
2. Chromium (headless, a fresh profile, every host name unresolvable) loads the index, one
   loss page and one gallery page; after the page's scripts ran, the DOM must hold
   rendered formulas (MathJax elements) and no raw TeX in the text, and the gallery page
   its figures. A screenshot of each goes to ``<build>/_screenshots/``.

Exit status 0 when everything holds, 1 otherwise (each problem is printed).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

PAGES = {  # name -> (page, needs math, needs figures, screenshot height)
    "index": ("index.html", True, False, 1400),
    "loss": ("api/losses/dice.html", True, False, 1600),
    "gallery": ("gallery/plot_02_image_vs_batch_domain.html", False, True, 2700),
}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  # no host name resolves: the pages must render from the build folder alone
                  "--host-resolver-rules=MAP * ~NOTFOUND"]
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\\frac|\\sum|\\begin\{")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set = set()
        self.links: list = []
        self.remote: list = []
        self.text: list = []
        self.math = 0
        self.images = 0
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "name" in a:
            self.ids.add(a["name"])
        for key in ("href", "src"):
            url = a.get(key)
            if not url:
                continue
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                if tag in ("script", "link", "img", "iframe", "source"):
                    self.remote.append(url)
            elif parts.scheme in ("", "file") and not url.startswith(("mailto:", "data:", "javascript:")):
                self.links.append(url)
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "mjx-container":
            self.math += 1
        if tag == "img" and "sphx-glr" in a.get("class", ""):
            self.images += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def check_links(root: Path) -> list:
    problems = []
    pages = {p: parse(p.read_text(encoding="utf-8", errors="replace")) for p in root.rglob("*.html")
             if "_static" not in p.parts and "_sources" not in p.parts}
    for path, page in pages.items():
        rel = path.relative_to(root)
        for url in page.remote:
            problems.append(f"{rel}: loads {url} from another host")
        for url in page.links:
            parts = urlsplit(url)
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if parts.path and target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel}: broken link {url}")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target.read_text(errors="replace")).ids
                if unquote(parts.fragment) not in ids:
                    problems.append(f"{rel}: link {url}: no id {parts.fragment!r} in {target.relative_to(root)}")
    print(f"links: {sum(len(p.links) for p in pages.values())} internal links in {len(pages)} pages checked")
    return problems


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("no Chromium found (Debian: apt-get install chromium)")


def browse(root: Path, shots: Path, timeout: int) -> list:
    problems = []
    exe = chromium()
    shots.mkdir(parents=True, exist_ok=True)
    for name, (rel, needs_math, needs_figures, height) in PAGES.items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel}: not built")
            continue
        url = path.resolve().as_uri()
        with tempfile.TemporaryDirectory() as profile:
            base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000"]
            dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
        if dom.returncode != 0 or "<body" not in dom.stdout:
            problems.append(f"{rel}: Chromium could not load it (exit {dom.returncode}): {dom.stderr[-500:]}")
            continue
        page = parse(dom.stdout)
        text = " ".join(page.text)
        raw = RAW_TEX.findall(text)
        print(f"browser: {rel}: {len(dom.stdout)} bytes of DOM, {page.math} rendered math elements, "
              f"{page.images} gallery figures, raw TeX fragments: {len(raw)}")
        if needs_math and page.math == 0:
            problems.append(f"{rel}: no rendered formula (MathJax did not run)")
        if raw:
            problems.append(f"{rel}: raw TeX left in the page text: {raw[:5]}")
        if needs_figures and page.images == 0:
            problems.append(f"{rel}: no gallery figure")
        shot = shots / f"{name}.png"
        with tempfile.TemporaryDirectory() as profile:
            base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000"]
            subprocess.run([*base, f"--window-size=1280,{height}", f"--screenshot={shot}", url],
                           capture_output=True, text=True, timeout=timeout)
        if not shot.is_file() or shot.stat().st_size < 10_000:
            problems.append(f"{rel}: no screenshot")
        else:
            print(f"screenshot: {shot}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="the HTML build folder (docs/_build/html)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per Chromium call")
    parser.add_argument("--no-browser", action="store_true", help="check the links only")
    args = parser.parse_args(argv)
    root = args.build.resolve()
    problems = check_links(root)
    if not args.no_browser:
        problems += browse(root, root / "_screenshots", args.timeout)
    for p in problems:
        print("PROBLEM:", p)
    print("site check:", "ok" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
