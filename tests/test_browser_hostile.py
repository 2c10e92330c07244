"""Hostile labels and file names in every page we ship, opened in headless Chromium (tests/_browser.py): a
class label or file name such as ``"><img src=x onerror=...>`` reaches the reader as text, never as a
running handler, in the gallery index (its table and the ``layer:index`` lookup box fed by ``lookup.js``), a
neuron page and the report page; the pages' Content-Security-Policy refuses inline handlers even in HTML
that escaping missed, while the pages' own scripts (sorting, lookup) keep working from ``file://``. Without
Chromium every test skips with the reason.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import pytest

from _browser import Browser, chromium_path
from analysis.app.gallery_pages import GalleryClip, GalleryNeuron, gallery_index_page, lookup_js, neuron_page
from analysis.app.html import page, table
from analysis.app.report_page import ReportSection, report_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        chromium_path() is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)"
    ),
]

#: Each payload, if it ever runs, bumps ``window.PWNED`` (and the first also opens an alert dialog).
HOSTILE = [
    '"><img src=x onerror="alert(1);window.PWNED=(window.PWNED||0)+1">',
    "'><svg onload='window.PWNED=(window.PWNED||0)+1'>",
    "</script><script>window.PWNED=(window.PWNED||0)+1</script>",
    '<iframe srcdoc="<script>parent.PWNED=1</script>"></iframe>',
    '<a href="javascript:window.PWNED=1" id=jslink>x</a> & </td></tr></table>',
]
#: JavaScript: how often a payload ran (0 when none did).
PWNED = "window.PWNED || 0"


def _clip(i: int, label: str, image: str = "missing.png") -> GalleryClip:
    return GalleryClip(
        rank=i,
        score=0.5 - i / 10,
        index=i,
        file_name=HOSTILE[(i + 1) % len(HOSTILE)] + ".wav",
        label=label,
        split="test",
        peak=0.1,
        start=0.0,
        stop=1.0,
        image=image,
        audio="missing.wav",
    )


def _gallery(folder: Path) -> tuple[Path, Path]:
    """A gallery whose classes, sites, file names and command are hostile: index, one neuron page and
    ``lookup.js`` (neuron 0:1 has no page, so the lookup box shows its clips from ``lookup.js``)."""
    classes = HOSTILE[:3]
    n = GalleryNeuron(
        layer=0,
        neuron=0,
        site=HOSTILE[3],
        entropy=0.2,
        classes=[classes[0]],
        p=[0.9, 0.1, 0.0],
        clips=[_clip(i, classes[i]) for i in range(3)],
        purity=1 / 3,
        page="neurons/0_0.html",
        notes=[HOSTILE[4]],
    )
    (folder / "neurons").mkdir(parents=True)
    index = folder / "index.html"
    index.write_text(
        gallery_index_page(
            HOSTILE[0], [("run", HOSTILE[1])], classes, [(HOSTILE[2], [n])], [n], "lookup.js", notes=[HOSTILE[3]]
        ),
        encoding="utf-8",
    )
    (folder / n.page).write_text(neuron_page(n, classes, HOSTILE[4], "../index.html", "../"), encoding="utf-8")
    clips = {str(i): [HOSTILE[i] + ".wav", HOSTILE[(i + 2) % len(HOSTILE)]] for i in range(len(HOSTILE))}
    data = {
        "sites": [HOSTILE[3]],
        "site_neurons": [2],
        "top": [[[[0, 0.5]], [[i, 0.1] for i in clips]]],
        "clips": clips,
        "command": HOSTILE[1],
    }
    (folder / "lookup.js").write_text(lookup_js(data), encoding="utf-8")
    return index, folder / n.page


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def _no_dialog(b: Browser) -> None:
    assert not [e for e in b._events if e.get("method") == "Page.javascriptDialogOpening"], "an alert() ran"


def test_gallery_lookup_box_shows_hostile_labels_as_text(browser, tmp_path):
    index, _ = _gallery(tmp_path / "gallery")
    pg = browser.open(index)
    cells = browser.evaluate(
        pg,
        """new Promise(r => { document.getElementById('lookup-q').value = '0:1';
      aapeLookup(); const t0 = Date.now(); (function wait() {
        const t = document.querySelector('#lookup-result table');
        if (t) r([...t.tBodies[0].rows].map(x => [x.cells[2].textContent, x.cells[3].textContent]));
        else if (Date.now() - t0 > 10000) r(document.getElementById('lookup-result').textContent);
        else setTimeout(wait, 50); })(); })""",
    )
    assert cells == [[HOSTILE[(i + 2) % len(HOSTILE)], HOSTILE[i] + ".wav"] for i in range(len(HOSTILE))]
    time.sleep(0.5)  # give an injected <img>/<svg> time to fail and fire
    assert browser.evaluate(pg, PWNED) == 0
    assert (
        browser.evaluate(
            pg,
            "document.querySelectorAll('#lookup-result img, #lookup-result svg, "
            "#lookup-result iframe, #lookup-result script, #lookup-result a').length",
        )
        == 0
    )
    assert HOSTILE[1] in browser.evaluate(pg, "document.querySelector('#lookup-result code').textContent")
    assert browser.evaluate(pg, "document.title") == HOSTILE[0]
    _no_dialog(browser)


def test_gallery_pages_show_hostile_labels_as_text(browser, tmp_path):
    index, neuron = _gallery(tmp_path / "gallery")
    for path in (index, neuron):
        pg = browser.open(path)
        time.sleep(0.3)
        assert browser.evaluate(pg, PWNED) == 0, path
        text = browser.evaluate(pg, "document.body.textContent")
        assert HOSTILE[0] in text and HOSTILE[2] in text, path
        assert (
            browser.evaluate(pg, "document.querySelectorAll('iframe, #jslink, svg[onload], img[onerror]').length") == 0
        ), path
    _no_dialog(browser)


def test_report_page_shows_hostile_labels_as_text(browser, tmp_path):
    rows = pd.DataFrame({"class": HOSTILE, "on_target_delta": [-0.1 * i for i in range(len(HOSTILE))]})
    sec = ReportSection(
        model=HOSTILE[0],
        task=HOSTILE[1],
        findings=[f"class {HOSTILE[2]} is specific"],
        tables=[(HOSTILE[3], table(rows))],
        links=[("../gallery/index.html", HOSTILE[4])],
    )
    path = tmp_path / "report" / "index.html"
    path.parent.mkdir()
    path.write_text(
        report_page(
            table(rows), [sec], [], [(HOSTILE[4], "<p>x</p>")], [HOSTILE[0]], {HOSTILE[1]: {"label": HOSTILE[2]}}
        ),
        encoding="utf-8",
    )
    pg = browser.open(path)
    time.sleep(0.3)
    assert browser.evaluate(pg, PWNED) == 0
    # the page's own sorting script still runs under its policy
    browser.evaluate(pg, "document.querySelector('table.sortable th').click()")
    got = browser.evaluate(
        pg, "[...document.querySelector('table.sortable').tBodies[0].rows].map(r => r.cells[0].textContent)"
    )
    want = browser.evaluate(pg, f"{HOSTILE!r}.sort((a, b) => a.localeCompare(b, undefined, {{numeric: true}}))")
    assert got == want and sorted(got) == sorted(HOSTILE) and got != HOSTILE
    _no_dialog(browser)


def test_the_policy_refuses_inline_handlers_that_escaping_missed(browser, tmp_path):
    """Defence in depth: HTML with an unescaped handler, a ``javascript:`` link and a foreign inline script
    inside one of our pages runs none of them; the page's own (hashed) script does run."""
    raw = (
        '<img src=x onerror="window.PWNED=(window.PWNED||0)+1">'
        '<svg onload="window.PWNED=(window.PWNED||0)+1"></svg>'
        "<script>window.PWNED=(window.PWNED||0)+1</script>"
        '<a id=jslink href="javascript:window.PWNED=(window.PWNED||0)+1">x</a>'
    )
    path = tmp_path / "p.html"
    path.write_text(page("t", raw, "window.OWN_SCRIPT_RAN=true;"), encoding="utf-8")
    pg = browser.open(path)
    browser.evaluate(pg, "document.getElementById('jslink').click()")
    time.sleep(0.5)
    assert browser.evaluate(pg, PWNED) == 0
    assert browser.evaluate(pg, "window.OWN_SCRIPT_RAN === true") is True
    csp = browser.evaluate(pg, "document.querySelector('meta[http-equiv=Content-Security-Policy]').content")
    assert (
        re.search(r"script-src 'self' 'sha256-[A-Za-z0-9+/=]+';", csp)
        and "unsafe-inline" not in csp.split("style-src")[0]
    )
    _no_dialog(browser)
