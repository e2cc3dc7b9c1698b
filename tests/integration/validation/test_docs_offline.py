"""The Data Docs site renders offline: every script, stylesheet and image is a local file."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from validation.docs_offline import CDN_FILES, VENDOR_DIR, asset_problems, make_offline
from validation.lake_gate import validate_lake

from .conftest import NOW, land, make_triples

pytestmark = pytest.mark.integration


class Assets(HTMLParser):
    """Every URL a page makes the browser load, and every other http(s) attribute value."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []
        self.links: list[str] = []
        self.other: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if (tag, name) in {("script", "src"), ("link", "href"), ("img", "src")}:
                self.loaded.append(value)
            elif tag == "a" and name == "href":
                self.links.append(value)
            elif value.startswith(("http://", "https://", "//")):
                self.other.append((tag, name, value))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("docs")
    root = str(tmp / "lake")
    triples = make_triples(days=3, per_day=50)
    triples[3] = triples[3].model_copy(update={"context": []})  # one failing expectation: a page with failures
    land(root, triples)
    result = validate_lake(root, None, now=NOW, reports_dir=tmp / "reports")
    assert result.docs_index is not None
    return result.docs_index.parent


def pages(site: Path) -> list[Path]:
    return [p for p in site.rglob("*.html") if "static" not in p.relative_to(site).parts]


def test_site_has_index_suite_and_validation_pages(site: Path) -> None:
    names = {p.relative_to(site).parts[0] for p in pages(site)}
    assert names == {"index.html", "expectations", "validations"}
    assert len(list((site / "validations").rglob("*.html"))) == 6  # triples: 4 checks, quarantine: 2


def test_every_script_stylesheet_and_image_is_relative_and_on_disk(site: Path) -> None:
    checked = 0
    for page in pages(site):
        parser = Assets()
        parser.feed(page.read_text(encoding="utf-8"))
        assert parser.other == [], page
        for url in parser.loaded:
            assert not url.startswith(("http://", "https://", "//")), f"{page}: {url}"
            assert (page.parent / urlsplit(url).path).is_file(), f"{page}: {url} missing"
            checked += 1
        for url in parser.links:
            if url.startswith(("http://", "https://")):
                assert urlsplit(url).netloc.endswith("greatexpectations.io"), f"{page}: {url}"
    assert checked > 50


def test_no_external_url_left_outside_links(site: Path) -> None:
    for page in pages(site):
        text = page.read_text(encoding="utf-8")
        assert "integrity=" not in text and "crossorigin" not in text, page
        assert "amazonaws.com" not in text, page  # logo and dark-mode logo background
        for host in ("cdn.jsdelivr.net", "cdnjs.cloudflare.com", "unpkg.com", "code.jquery.com", "bootstrapcdn.com"):
            assert host not in text, f"{page}: {host}"
    assert asset_problems(site) == []


def test_font_awesome_fonts_resolve_from_its_stylesheet(site: Path) -> None:
    css = site / "static/vendor/fontawesome/css/all.min.css"
    for font in ("fa-solid-900.woff2", "fa-regular-400.woff2", "fa-brands-400.woff2"):
        assert f"../webfonts/{font}" in css.read_text(encoding="utf-8")
        assert (css.parent.parent / "webfonts" / font).is_file()


def test_rewrite_is_idempotent(site: Path) -> None:
    before = {p: p.read_text(encoding="utf-8") for p in pages(site)}
    report = make_offline(site)
    assert report.rewritten == 0 and report.problems == ()
    assert {p: p.read_text(encoding="utf-8") for p in pages(site)} == before


def test_vendor_files_and_licenses_are_bundled() -> None:
    for target in CDN_FILES.values():
        assert (VENDOR_DIR / target).is_file(), target
    for folder in {t.split("/")[0] for t in CDN_FILES.values()}:
        assert any((VENDOR_DIR / folder / name).is_file() for name in ("LICENSE", "LICENSE.txt")), folder


def test_an_unknown_cdn_asset_is_reported(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        '<html><head><script src="https://cdn.example.org/new-lib@1/lib.js" integrity="sha384-x" '
        'crossorigin="anonymous"></script><link rel="icon" href="../static/images/favicon.ico"></head></html>'
    )
    (tmp_path / "static/images").mkdir(parents=True)
    (tmp_path / "static/images/favicon.ico").write_bytes(b"")
    report = make_offline(tmp_path)
    assert report.problems == ("index.html: https://cdn.example.org/new-lib@1/lib.js",)
    text = (tmp_path / "index.html").read_text()
    assert 'href="static/images/favicon.ico"' in text  # wrong depth repaired
    assert "integrity" not in text and "crossorigin" not in text
