"""The documentation site works offline: MathJax comes from an installed package and is
served from the site, a page opened in headless Chromium with no network has every formula
typeset, and headings (hence the table of contents) read as plain text, with no raw TeX.

Chromium is Debian's (`.ci/run` installs chromium and chromium-driver). Without it the
browser test fails under CI and is skipped, with the install command, elsewhere.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dws_theory.site_hooks import MATHJAX_SCRIPT, mathjax_source

ROOT = Path(__file__).resolve().parents[2]
PAGE = "derivations/dws_2_32_32_1_hidden/index.html"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        capture_output=True,
        text=True,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _pages(site: Path) -> list[Path]:
    return sorted(site.rglob("index.html"))


def test_mathjax_is_served_from_the_site(site: Path):
    copied = site / MATHJAX_SCRIPT
    assert copied.read_bytes() == mathjax_source().read_bytes()
    assert copied.stat().st_size > 1_000_000  # the full component, not a stub
    html = (site / PAGE).read_text(encoding="utf-8")
    assert 'src="../../javascripts/mathjax/tex-svg-full.js"' in html


def test_no_page_loads_anything_from_the_network(site: Path):
    remote = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    offenders = {
        str(p.relative_to(site)): m.group(0)
        for p in _pages(site)
        for m in [remote.search(p.read_text(encoding="utf-8"))]
        if m
    }
    assert offenders == {}


def test_headings_and_the_table_of_contents_are_plain_text(site: Path):
    for page in _pages(site):
        html = page.read_text(encoding="utf-8")
        headings = re.findall(r"<h[1-6][^>]*>(.*?)</h[1-6]>", html, re.S)
        toc = re.findall(r'<a href="#[^"]*" class="md-nav__link">(.*?)</a>', html, re.S)
        for text in headings + toc:
            assert "arithmatex" not in text and "\\" not in text and "$" not in text, (
                page,
                text,
            )
    html = (site / PAGE).read_text(encoding="utf-8")
    assert "W ← W, same layer, interior: W₂ ← W₂" in html


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "headless Chromium not installed: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run installs it)")
        pytest.skip(message)
    return found


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _rendered(site: Path, path: str, profile: Path) -> str:
    """The page's DOM after scripts ran, in headless Chromium that cannot reach any host
    but the loopback server (every other name resolves to nothing)."""
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=30000",
                "--dump-dom",
                f"http://127.0.0.1:{server.server_address[1]}/{path}",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("path", [PAGE, "theory/index.html"])
def test_headless_chromium_typesets_every_formula_offline(site: Path, path: str, tmp_path):
    source = (site / path).read_text(encoding="utf-8")
    formulas = source.count('class="arithmatex"')
    assert formulas > 20
    dom = _rendered(site, path, tmp_path / "profile")
    assert dom.count("<mjx-container") == formulas  # every formula typeset ...
    body = dom[dom.index("<body") :]
    body = re.sub(r"<style\b.*?</style>", "", body, flags=re.S)
    assert "data-mjx-error" not in body and 'data-mml-node="merror"' not in body  # ... cleanly
    assert "\\(" not in body and "\\[" not in body  # no raw TeX left on the page
