"""The page kit of aape's static web pages (style sheet, Content-Security-Policy, tables, bar charts,
figures), shared by the pipeline report (``report/index.html``, :mod:`analysis.app.report_page`) and the
listening gallery (``gallery/index.html``, one page per neuron, :mod:`analysis.app.gallery_pages`).

Everything is plain HTML with a little inline CSS and JavaScript: no server, no CDN, no framework, so the
folders open from ``file://`` anywhere. Every page carries a Content-Security-Policy (:func:`csp`): scripts
run only from the page's own inline block (allowed by its sha256) and from files next to it (``lookup.js``),
never from an event-handler attribute or an injected element; the scripts build DOM from data with
``textContent`` and element creation, never by assigning HTML strings. Tables sit in scroll containers,
numbers are right-aligned and every table header sorts its column on click (:data:`SORT_SCRIPT`). Figures
are shown inline as PNG (a PDF stays a link); P(active | class) is drawn as a small inline SVG bar chart (:func:`bar_chart`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from typing import Any, Callable, Iterable, Optional, Sequence

import pandas as pd

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1180px;padding:1em 2em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}h3{margin-bottom:.3em}
a{color:#1a5fb4}
.scroll{overflow:auto;max-width:100%;max-height:34em;margin:.4em 0 1.2em;border:1px solid #e4e4e4}
.scroll.full{max-height:none}
table{border-collapse:collapse;font-size:.88em}
th,td{border-bottom:1px solid #e4e4e4;padding:3px 9px;text-align:left;white-space:nowrap;vertical-align:middle}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f4f6;position:sticky;top:0;z-index:1;white-space:normal;min-width:3em;vertical-align:bottom}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:hover{background:#e6e8eb}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:.75em}
th[aria-sort=descending]::after{content:" \\25BC";font-size:.75em}
figure{margin:.8em 0 1.4em}figure img{max-width:100%;height:auto;border:1px solid #eee}
.figures{display:flex;flex-wrap:wrap;gap:0 1.5em;align-items:flex-start}.figures figure{max-width:100%}
figcaption{font-size:.85em;color:#555}
.finding{background:#f6f8fa;border-left:4px solid #2e8b57;padding:.5em 1em;margin:.6em 0}
.finding.negative{border-left-color:#c0392b}
.note{color:#666;font-size:.9em}
.warn{background:#fff4e5;border-left:4px solid #e67e22;padding:.4em 1em}
nav{margin:.5em 0 1em}nav a{margin-right:1.2em}
details{margin:.4em 0}summary{cursor:pointer}
pre{background:#f6f8fa;padding:.6em;overflow:auto;max-height:24em;font-size:.8em}
td img.spec{width:352px;height:auto;display:block}
audio{width:260px}
svg.bars rect.hit{fill:#e67e22}svg.bars rect{fill:#8aa1b8}
#lookup-result{margin:.6em 0}
"""

#: Click a header of a ``table.sortable`` to sort its rows by that column (numbers numerically, from the
#: cell's ``data-v`` when present; empty values last); a second click reverses the order.
SORT_SCRIPT = """
function aapeSort(th){
  const table=th.closest('table'),i=[...th.parentNode.children].indexOf(th);
  const asc=th.getAttribute('aria-sort')!=='ascending';
  table.querySelectorAll('th').forEach(h=>h.removeAttribute('aria-sort'));
  th.setAttribute('aria-sort',asc?'ascending':'descending');
  const key=r=>{const c=r.cells[i];const v=c.dataset.v!==undefined?c.dataset.v:c.textContent.trim();
    const n=Number(v);return v===''?null:(isNaN(n)?v:n);};
  const body=table.tBodies[0],rows=[...body.rows];
  rows.sort((a,b)=>{const x=key(a),y=key(b);if(x===null||y===null)return (x===null)-(y===null);
    const c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y),undefined,{numeric:true});
    return asc?c:-c;});
  rows.forEach(r=>body.appendChild(r));
}
document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',()=>aapeSort(th)));
"""


def esc(x: Any) -> str:
    """HTML-escaped text of ``x``."""
    return html.escape(str(x), quote=True)


def js_value(obj: Any) -> str:
    """``obj`` as a JavaScript literal safe inside an inline ``<script>``: JSON with ``<``, ``>`` and ``&``
    written as ``\\u`` escapes, so no data can close the script element.

    >>> js_value({"a": "</script><b>"})
    '{"a": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def csp(script: str) -> str:
    """The Content-Security-Policy of a page whose one inline script is ``script``: that script (by its
    sha256) and script files of the page's own folder tree (``'self'``, which Chromium grants ``file://``
    pages too); inline event handlers, ``javascript:`` URLs, plugins and ``<base>`` are refused; styles may
    be inline, images and audio only local."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return (
        f"default-src 'self'; script-src 'self' 'sha256-{digest}'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; media-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"
    )


def page(title: str, body: str, script: str = "") -> str:
    """A complete HTML page: ``title``, ``body`` (HTML), the style sheet, the sorting script and ``script``,
    under the page's Content-Security-Policy (:func:`csp`)."""
    code = SORT_SCRIPT + script
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{csp(code)}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>{body}"
        f"<script>{code}</script></body></html>"
    )


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def default_format(column: str, value: Any) -> str:
    """Cell text: floats with 3 decimals (1 above 10), NaN as an en dash, the rest as text."""
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def table(
    df: pd.DataFrame,
    fmt: Callable[[str, Any], str] = default_format,
    raw: Iterable[str] = (),
    sortable: bool = True,
    table_id: Optional[str] = None,
    full_height: bool = False,
) -> str:
    """``df`` as a table in a scroll container (at most 34 lines high unless ``full_height``). Numeric cells
    are right-aligned and carry their exact value in ``data-v`` (what sorting uses); ``raw`` columns hold HTML
    and are inserted unescaped (their sort key is the ``data-v`` given by a ``(html, key)`` tuple, else the
    text). Header names may break after an underscore."""
    raw = set(raw)
    head = "".join(f"<th scope='col'>{esc(c).replace('_', '_<wbr>')}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, rec):
            if c in raw:
                content, key = v if isinstance(v, tuple) else (v, None)
                attr = f" data-v='{esc(key)}'" if key is not None else ""
                cells.append(f"<td{attr}>{content}</td>")
            elif is_number(v) or hasattr(v, "dtype"):
                num = float(v)
                cells.append(
                    f"<td class='num' data-v='{'' if math.isnan(num) else repr(num)}'>"
                    f"{esc(fmt(c, v.item() if hasattr(v, 'item') else v))}</td>"
                )
            else:
                cells.append(f"<td>{esc(fmt(c, v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    ident = f" id='{esc(table_id)}'" if table_id else ""
    cls = " class='sortable'" if sortable else ""
    box = "scroll full" if full_height else "scroll"
    return (
        f"<div class='{box}'><table{cls}{ident}><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def bar_chart(
    values: Sequence[float],
    labels: Sequence[str],
    highlight: Iterable[int] = (),
    width: int = 160,
    height: int = 28,
    vmax: float = 1.0,
) -> str:
    """Inline SVG bar chart (one bar per value, 0..``vmax``; bars in ``highlight`` coloured) with a tooltip
    ``label: value`` per bar; NaN bars are left empty."""
    n = max(len(values), 1)
    w = width / n
    hi = set(highlight)
    bars = []
    for i, (v, lab) in enumerate(zip(values, labels)):
        ok = v is not None and not math.isnan(float(v))
        h = 0.0 if not ok else max(0.0, min(1.0, float(v) / vmax)) * (height - 1)
        text = f"{lab}: {float(v):.3f}" if ok else f"{lab}: –"
        cls = " class='hit'" if i in hi else ""
        bars.append(
            f"<rect{cls} x='{i * w + 0.5:.2f}' y='{height - h:.2f}' width='{max(w - 1, 0.5):.2f}' "
            f"height='{max(h, 0.5):.2f}'><title>{esc(text)}</title></rect>"
        )
    return (
        f"<svg class='bars' role='img' aria-label='P(active | class)' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>{''.join(bars)}</svg>"
    )


def figure(src: str, caption: str, pdf: Optional[str] = None) -> str:
    """An inline image (PNG/SVG) with a caption; ``pdf``: link to the PDF version."""
    link = f" · <a href='{esc(pdf)}'>PDF</a>" if pdf else ""
    return (
        f"<figure><a href='{esc(src)}'><img src='{esc(src)}' alt='{esc(caption)}' loading='lazy'></a>"
        f"<figcaption>{esc(caption)}{link}</figcaption></figure>"
    )


def link_list(hrefs: Iterable[tuple[str, str]]) -> str:
    items = "".join(f"<li><a href='{esc(h)}'>{esc(t)}</a></li>" for h, t in hrefs)
    return f"<ul>{items}</ul>"
