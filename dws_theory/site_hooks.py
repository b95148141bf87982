"""mkdocs hooks for the documentation site (named in mkdocs.yml; mkdocs itself is not needed
to import this module).

The site typesets its formulas with MathJax, served from the site itself: after every build
`on_post_build` copies MathJax's single-file TeX-to-SVG component (`tex-svg-full.js`: every
TeX extension included, so nothing is fetched later; SVG output, so no web fonts either)
from the installed `django-static-mathjax` package (MathJax 3.2.2's own files; the `docs` and
`test` extras install it) to `javascripts/mathjax/` in the site. A page therefore renders its
math with no network access, opened from a local server or straight from disk.
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path
from typing import Any

__all__ = ["MATHJAX_SCRIPT", "mathjax_source", "on_post_build"]

# Where the page loads it from, relative to the site root (mkdocs.yml, extra_javascript).
MATHJAX_SCRIPT = "javascripts/mathjax/tex-svg-full.js"
_PACKAGED = "static/mathjax/es5/tex-svg-full.js"


def mathjax_source() -> Path:
    """The installed MathJax component; a clear error if the package is missing."""
    try:
        path = importlib.resources.files("mathjax") / _PACKAGED
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "expected MathJax from the django-static-mathjax package (pip install -e "
            f"'.[docs]'), got no file {_PACKAGED} in an installed 'mathjax' package"
        )
    return Path(str(path))


def on_post_build(config: Any, **kwargs: Any) -> None:
    """Copy MathJax into the built site."""
    target = Path(config["site_dir"]) / MATHJAX_SCRIPT
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mathjax_source(), target)
