"""Make a Great Expectations Data Docs site render with no network.

GX 1.24's page templates load Bootstrap, jQuery, bootstrap-table, Vega and Font Awesome from
seven CDN hosts and the logo from S3, and GX has no switch for it (a custom views folder
cannot override its templates). Offline, pages are worse than unstyled: jQuery and
bootstrap-table fill the index page's tables, so the index lists no runs at all. This module
post-processes a built site:

* copies the vendored files (``validation/vendor``, fetched from npm, licenses alongside) to
  ``<site>/static/vendor``;
* rewrites every ``<script src>``, ``<link href>`` and ``<img src>`` that points at a CDN to
  the vendored copy, relative to the page, and the S3 logo (also the dark-mode CSS background)
  to GX's own bundled ``static/images/logo-long.png``;
* repairs relative asset links that point at a missing file (GX puts the favicon of
  validation pages one folder too shallow);
* drops ``integrity``/``crossorigin`` attributes, which make browsers refuse ``file://``
  scripts.

Only ``<a href>`` links to greatexpectations.io stay absolute: they are navigation, not assets.
The rewrite is idempotent, so running it after every build is safe.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

__all__ = ["CDN_FILES", "VENDOR_DIR", "OfflineReport", "asset_problems", "make_offline"]

logger = logging.getLogger(__name__)

VENDOR_DIR: Final = Path(__file__).resolve().parent / "vendor"
"""The vendored front-end files, committed with the package."""

_SITE_VENDOR: Final = "static/vendor"

CDN_FILES: Final[Mapping[str, str]] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery-3.7.1.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark/bootstrap-prefers-dark.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed/vega-embed.min.js",
}
"""CDN URL (without query) -> file under ``validation/vendor``, for the URLs GX 1.24.1 emits."""

_GX_ASSET_HOST: Final = "great-expectations-web-assets.s3.us-east-2.amazonaws.com"
_GX_IMAGES: Final[Mapping[str, str]] = {
    "logo-long.png": "static/images/logo-long.png",
    "full_logo_dark.png": "static/images/logo-long.png",  # dark-mode background; GX bundles no dark logo
}

_ASSET_TAG = re.compile(r"<(script|link|img)\b[^>]*>", re.IGNORECASE | re.DOTALL)
_URL_ATTR = re.compile(r"(\s(?:src|href)\s*=\s*)([\"'])(.*?)\2", re.IGNORECASE | re.DOTALL)
_BLOCKING_ATTR = re.compile(r"\s(?:integrity|crossorigin)(?:\s*=\s*([\"']).*?\1)?(?=[\s/>])", re.IGNORECASE | re.DOTALL)
_CSS_URL = re.compile(r"url\(\s*([\"']?)(https?://[^\"')\s]+)\1\s*\)", re.IGNORECASE)


@dataclass(frozen=True)
class OfflineReport:
    """What ``make_offline`` did.

    Attributes:
        pages: HTML pages processed.
        rewritten: Asset references changed.
        problems: Asset references still external or missing after the rewrite, as
            ``"<page>: <url>"``; empty when the site renders offline.
    """

    pages: int
    rewritten: int
    problems: tuple[str, ...]


def _rel(target: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(target, page_dir)).as_posix()


def _is_external(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))


def _vendor_by_name() -> dict[str, str]:
    """Vendored files by base name: a fallback for a CDN URL whose version moved in a GX upgrade."""
    out: dict[str, str] = {}
    for path in VENDOR_DIR.rglob("*"):
        if path.is_file() and path.suffix in (".js", ".css"):
            out.setdefault(path.name, path.relative_to(VENDOR_DIR).as_posix())
    return out


class _Rewriter:
    def __init__(self, site: Path) -> None:
        self.site = site
        self.by_name = _vendor_by_name()
        self.rewritten = 0

    def target(self, url: str, page_dir: Path) -> Path | None:
        """Return the local file ``url`` should load, or None to leave it as it is."""
        if url.startswith(("data:", "#", "mailto:", "javascript:")) or not url:
            return None
        if _is_external(url):
            parts = urlsplit(url if not url.startswith("//") else "https:" + url)
            key = f"https://{parts.netloc}{parts.path}"
            if key in CDN_FILES:
                return self.site / _SITE_VENDOR / CDN_FILES[key]
            name = parts.path.rsplit("/", 1)[-1]
            if parts.netloc == _GX_ASSET_HOST and name in _GX_IMAGES:
                return self.site / _GX_IMAGES[name]
            if name in self.by_name:
                logger.warning("data docs: no exact vendored file for %s; using %s", key, self.by_name[name])
                return self.site / _SITE_VENDOR / self.by_name[name]
            return None
        path = urlsplit(url).path
        if (page_dir / path).exists() or "static/" not in path:
            return None
        # A relative link to the site's static folder at the wrong depth (GX's favicon on validation pages).
        candidate = self.site / "static" / path.rsplit("static/", 1)[-1]
        return candidate if candidate.exists() else None

    def tag(self, match: re.Match[str], page_dir: Path) -> str:
        tag = _BLOCKING_ATTR.sub("", match.group(0))

        def attr(m: re.Match[str]) -> str:
            target = self.target(m.group(3), page_dir)
            if target is None:
                return m.group(0)
            self.rewritten += 1
            return f"{m.group(1)}{m.group(2)}{_rel(target, page_dir)}{m.group(2)}"

        return _URL_ATTR.sub(attr, tag)

    def css_url(self, match: re.Match[str], page_dir: Path) -> str:
        target = self.target(match.group(2), page_dir)
        if target is None:
            return match.group(0)
        self.rewritten += 1
        return f"url('{_rel(target, page_dir)}')"

    def page(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        page_dir = path.parent
        new = _ASSET_TAG.sub(lambda m: self.tag(m, page_dir), text)
        new = _CSS_URL.sub(lambda m: self.css_url(m, page_dir), new)
        if new != text:
            path.write_text(new, encoding="utf-8")


def _pages(site: Path) -> list[Path]:
    static = site / "static"
    return sorted(p for p in site.rglob("*.html") if static not in p.parents)


def make_offline(site_dir: Path) -> OfflineReport:
    """Rewrite the Data Docs site at ``site_dir`` to load every asset from the site itself.

    Returns:
        What was rewritten and what, if anything, still needs the network (logged as a warning).

    Raises:
        FileNotFoundError: ``site_dir`` has no ``index.html`` (build the docs first), or the
            vendored files are missing from the installation.
    """
    site = site_dir.resolve()
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"no Data Docs index at {site / 'index.html'}; build the docs first")
    if not (VENDOR_DIR / "jquery").is_dir():
        raise FileNotFoundError(f"vendored Data Docs assets missing at {VENDOR_DIR}; reinstall rluf")
    shutil.copytree(VENDOR_DIR, site / _SITE_VENDOR, dirs_exist_ok=True)
    rewriter = _Rewriter(site)
    pages = _pages(site)
    for page in pages:
        rewriter.page(page)
    problems = tuple(asset_problems(site))
    if problems:
        logger.warning("data docs still load %d assets from outside the site, e.g. %s", len(problems), problems[0])
    logger.debug("data docs offline: %d pages, %d references rewritten", len(pages), rewriter.rewritten)
    return OfflineReport(pages=len(pages), rewritten=rewriter.rewritten, problems=problems)


class _AssetCollector(HTMLParser):
    """Collects the URLs a browser would load: script/img ``src``, link ``href``, CSS ``url()``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img") and values.get("src"):
            self.urls.append(str(values["src"]))
        elif tag == "link" and values.get("href"):
            self.urls.append(str(values["href"]))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls.extend(m.group(2) for m in re.finditer(r"url\(\s*([\"']?)([^\"')]+)\1\s*\)", data))


def asset_problems(site_dir: Path, pages: Iterable[Path] | None = None) -> list[str]:
    """Return ``"<page>: <url>"`` for every loaded asset that is external or missing on disk."""
    site = site_dir.resolve()
    problems: list[str] = []
    for page in pages if pages is not None else _pages(site):
        collector = _AssetCollector()
        collector.feed(page.read_text(encoding="utf-8"))
        for url in collector.urls:
            if url.startswith("data:"):
                continue
            local = urlsplit(url).path
            if _is_external(url) or not local or not (page.parent / local).exists():
                problems.append(f"{page.relative_to(site).as_posix()}: {url}")
    return problems
