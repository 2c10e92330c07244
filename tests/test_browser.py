"""The report and the listening gallery opened in a real browser (headless Chromium, Debian package
``chromium``, driven over the DevTools pipe by tests/_browser.py): figures render as non-empty images, audio
players point at files that exist and decode with the expected duration, clicking a header sorts its table,
the ``layer:index`` lookup works, and no link of the rendered DOM is broken. Without Chromium every test here
skips with the reason; the same pages' file checks that need no browser are in test_gallery.py.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import matplotlib.image as mimg
import numpy as np
import pytest
import soundfile as sf

from _browser import Browser, chromium_path
from _gallery_run import K, MODEL, TASK
from analysis.runs.layout import gallery_neuron_page
from analysis.runs.read import read_top_clips

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        chromium_path() is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)"
    ),
]

#: JavaScript: every image of the page once loaded → [src, complete, naturalWidth, rendered width].
IMAGES = """Promise.all([...document.images].map(i => new Promise(r => {
  const done = () => r([i.src, i.complete, i.naturalWidth, i.getBoundingClientRect().width]);
  i.loading = 'eager';
  if (i.complete) done(); else { i.addEventListener('load', done); i.addEventListener('error', done); }
})))"""
#: JavaScript: every <audio> once its metadata is read → [src, duration or 'error <code>'].
AUDIO = """Promise.all([...document.querySelectorAll('audio')].map(a => new Promise(r => {
  const done = () => r([a.src, a.error ? 'error ' + a.error.code : a.duration]);
  if (a.readyState >= 1) done();
  else { a.addEventListener('loadedmetadata', done); a.addEventListener('error', done); a.load(); }
})))"""
#: JavaScript: every local link / source of the rendered DOM.
LINKS = """[...document.querySelectorAll('a[href],img[src],audio[src],script[src]')]
  .map(e => e.href || e.src).filter(u => u.startsWith('file:'))"""


def column(table: str, header: str) -> str:
    """JavaScript: the ``data-v`` (else text) of column ``header`` of ``table`` (a CSS selector), row order."""
    return f"""(() => {{ const t = document.querySelector({table!r});
      const i = [...t.tHead.rows[0].cells].findIndex(h => h.textContent.trim() === {header!r});
      return [...t.tBodies[0].rows].map(r => r.cells[i].dataset.v ?? r.cells[i].textContent.trim()); }})()"""


def click_header(table: str, header: str) -> str:
    return f"""(() => {{ const t = document.querySelector({table!r});
      [...t.tHead.rows[0].cells].find(h => h.textContent.trim() === {header!r}).click(); return true; }})()"""


def file_of(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def assert_not_blank(png: Path) -> None:
    img = mimg.imread(png)
    assert img.shape[0] > 100 and float(np.asarray(img[..., :3]).std()) > 0.05, f"{png} looks blank"


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def check_links(b: Browser, page: str) -> None:
    missing = [u for u in b.evaluate(page, LINKS) if not file_of(u).exists()]
    assert missing == []


def test_gallery_index_lookup_sorting_and_links(browser, gallery_pipeline, tmp_path):
    pipe, run_dir = gallery_pipeline
    gal = pipe.tree.gallery(TASK, MODEL)
    page = browser.open(gal / "index.html")
    check_links(browser, page)
    keys = browser.evaluate(page, "Object.keys(AAPE_PAGES)")
    assert keys
    assert browser.evaluate(page, f"aapeFind({keys[0]!r}).page") == gallery_neuron_page(*map(int, keys[0].split(":")))
    # a neuron without a page: its top clips come from lookup.js, loaded on demand
    top = read_top_clips(run_dir)
    l, n = 0, next(i for i in range(top["score"].shape[1]) if f"0:{i}" not in keys)
    rows = browser.evaluate(
        page,
        f"""new Promise(r => {{ document.getElementById('lookup-q').value = '{l}:{n}';
      aapeLookup(); const t0 = Date.now(); (function wait() {{
        const t = document.querySelector('#lookup-result table');
        if (t) r([...t.tBodies[0].rows].map(x => x.cells[3].textContent));
        else if (Date.now() - t0 > 10000) r(document.getElementById('lookup-result').textContent);
        else setTimeout(wait, 50); }})(); }})""",
    )
    assert isinstance(rows, list) and len(rows) == int((top["index"][l, n] >= 0).sum()) == K
    # sorting: entropy ascending, then descending
    before = browser.evaluate(page, column("#all-neurons", "entropy"))
    browser.evaluate(page, click_header("#all-neurons", "entropy"))
    asc = [float(x) for x in browser.evaluate(page, column("#all-neurons", "entropy"))]
    browser.evaluate(page, click_header("#all-neurons", "entropy"))
    desc = [float(x) for x in browser.evaluate(page, column("#all-neurons", "entropy"))]
    assert asc == sorted(float(x) for x in before) and desc == asc[::-1]
    assert browser.evaluate(page, "document.querySelector('#all-neurons th[aria-sort]').textContent") == "entropy"
    assert_not_blank(browser.screenshot(page, tmp_path / "gallery.png"))


def test_neuron_pages_render_images_and_play_audio(browser, gallery_pipeline, tmp_path):
    pipe, _ = gallery_pipeline
    gal = pipe.tree.gallery(TASK, MODEL)
    pages = sorted((gal / "neurons").glob("*.html"))
    assert pages
    for p in pages:
        page = browser.open(p)
        images = browser.evaluate(page, IMAGES)
        assert images and all(ok and w > 0 and shown > 0 for _, ok, w, shown in images), images
        audio = browser.evaluate(page, AUDIO)
        assert len(audio) == len(images)
        for src, duration in audio:
            path = file_of(src)
            assert path.is_file() and not isinstance(duration, str), (src, duration)
            assert duration == pytest.approx(sf.info(str(path)).duration, abs=0.01)
        check_links(browser, page)
    assert_not_blank(browser.screenshot(page, tmp_path / "neuron.png"))


def test_report_figures_tables_sorting_and_gallery_link(browser, gallery_pipeline, tmp_path):
    pipe, _ = gallery_pipeline
    page = browser.open(pipe.tree.report / "index.html")
    images = browser.evaluate(page, IMAGES)
    assert len(images) >= 3 and all(ok and w > 0 for _, ok, w, _ in images), images
    assert all(file_of(src).suffix == ".png" for src, *_ in images)
    assert browser.evaluate(page, "document.querySelectorAll('embed, object').length") == 0
    check_links(browser, page)
    gallery = browser.evaluate(page, "[...document.links].map(a => a.href).filter(h => h.includes('/gallery/'))")
    assert gallery and file_of(gallery[0]) == (pipe.tree.gallery(TASK, MODEL) / "index.html").resolve()
    align = browser.evaluate(page, "getComputedStyle(document.querySelector('td.num')).textAlign")
    assert align == "right"
    table = f"#{MODEL}--{TASK} ~ div.scroll table"  # the section's per-class table
    before = browser.evaluate(page, column(table, "class"))
    assert len(set(before)) == len(before) > 1
    browser.evaluate(page, click_header(table, "class"))
    asc = browser.evaluate(page, column(table, "class"))
    browser.evaluate(page, click_header(table, "class"))
    desc = browser.evaluate(page, column(table, "class"))
    assert asc == sorted(before) and desc == asc[::-1]
    # tables fit the page: nothing but the scroll containers is wider than the window
    overflow = browser.evaluate(page, "document.documentElement.scrollWidth <= window.innerWidth")
    assert overflow is True
    assert_not_blank(browser.screenshot(page, tmp_path / "report.png", full_page=True))
