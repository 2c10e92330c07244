"""Static web pages of aape: the pipeline report (``report/index.html``) and the listening gallery
(``gallery/index.html``, one page per neuron).

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
from dataclasses import dataclass, field
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


# -- the pipeline report --------------------------------------------------------------------------------
@dataclass
class ReportSection:
    """One model × task of the report: its headline ``findings`` (sentences), ``tables`` (caption, HTML),
    ``figures`` (PDF path, PNG preview or None) and ``links`` (href, text; e.g. the gallery)."""

    model: str
    task: str
    findings: list[str]
    tables: list[tuple[str, str]] = field(default_factory=list)
    figures: list[tuple[str, Optional[str]]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"{self.model}--{self.task}"


def _figures_html(figs: Sequence[tuple[str, Optional[str]]]) -> str:
    """Figures side by side (wrapping): each PNG preview inline with a link to its PDF; a PDF without a
    preview as a link."""
    out = []
    for pdf, preview in figs:
        name = pdf.rsplit("/", 1)[-1]
        if preview:
            out.append(figure(preview, name, pdf=pdf))
        else:
            out.append(f"<p><a href='{esc(pdf)}'>{esc(name)}</a> (PDF)</p>")
    return f"<div class='figures'>{''.join(out)}</div>" if out else ""


def _finding_html(text: str) -> str:
    neg = " negative" if "NEGATIVE" in text or "No class-specific" in text else ""
    return f"<div class='finding{neg}'>{esc(text)}</div>"


def report_page(
    overview: str,
    sections: Sequence[ReportSection],
    other_figures: Sequence[tuple[str, Optional[str]]],
    extra: Sequence[tuple[str, str]],
    files: Sequence[str],
    manifests: dict[str, Any],
) -> str:
    """``report/index.html``: the overview table (HTML), one section per model × task, figures spanning tasks,
    ``extra`` (title, HTML) sections, then the result files and manifests (folded)."""
    nav = "".join(f"<a href='#{esc(s.anchor)}'>{esc(s.model)} · {esc(s.task)}</a>" for s in sections)
    body = [f"<h1>aape pipeline report</h1><nav>{nav}</nav>", "<h2>Verdicts per task and model</h2>", overview]
    for s in sections:
        body.append(f"<h2 id='{esc(s.anchor)}'>{esc(s.model)} on {esc(s.task)}</h2>")
        body += [_finding_html(f) for f in s.findings]
        if s.links:
            body.append(link_list(s.links))
        for caption, tab in s.tables:
            body.append(f"<h3>{esc(caption)}</h3>{tab}")
        body.append(_figures_html(s.figures))
    if other_figures:
        body.append("<h2>Figures across tasks</h2>" + _figures_html(other_figures))
    for title, content in extra:
        body.append(f"<h2>{esc(title)}</h2>{content}")
    body.append(
        "<h2>Files</h2><details><summary>every result file "
        f"({len(files)})</summary>{link_list((f, f) for f in files)}</details>"
    )
    body.append(
        "<h2>Manifests</h2>"
        + "".join(
            f"<details><summary>{esc(k)}</summary><pre>{esc(json.dumps(m, indent=1, default=str))}</pre></details>"
            for k, m in manifests.items()
        )
    )
    return page("aape report", "".join(body))


# -- the listening gallery ------------------------------------------------------------------------------
@dataclass
class GalleryClip:
    """One of a neuron's top clips as shown: ``rank`` (0 = best), ``score`` (clip mean activation), dataset
    ``index``, ``file_name``, ``label``, ``split``, ``peak`` (seconds, None unknown), the excerpt played
    (``start``, ``stop`` seconds) and the ``image`` / ``audio`` paths relative to the gallery folder."""

    rank: int
    score: float
    index: int
    file_name: str
    label: str
    split: str
    peak: Optional[float]
    start: float
    stop: float
    image: str
    audio: str


@dataclass
class GalleryNeuron:
    """A neuron of the gallery: ``layer`` (site index), ``neuron``, ``site`` (module path), ``entropy`` (NaN
    when not selected), assigned ``classes``, ``p`` (P(active | class) for every class), its ``clips``,
    ``purity`` (share of its top clips labelled with one of its classes), ``page`` (relative to the gallery
    folder) and ``notes`` (warnings shown on its page)."""

    layer: int
    neuron: int
    site: str
    entropy: float
    classes: list[str]
    p: list[float]
    clips: list[GalleryClip]
    purity: float
    page: str
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.layer}:{self.neuron}"


LOOKUP_SCRIPT = """
function aapeFind(q){
  const m=String(q).trim().match(/^(\\d+)\\s*:\\s*(\\d+)$/);
  if(!m)return {error:'type layer:index, e.g. 3:17'};
  const key=(+m[1])+':'+(+m[2]);
  if(AAPE_PAGES[key])return {key:key,page:AAPE_PAGES[key]};
  return {key:key,layer:+m[1],neuron:+m[2]};
}
function aapeEl(tag,text,cls){
  const e=document.createElement(tag);
  if(text!==undefined)e.textContent=String(text);
  if(cls)e.className=cls;
  return e;
}
function aapeShow(r){
  const out=document.getElementById('lookup-result');
  if(r.error){out.textContent=r.error;return;}
  const L=window.AAPE_LOOKUP;
  if(!L){out.textContent='no lookup data';return;}
  if(r.layer>=L.sites.length||r.neuron>=L.site_neurons[r.layer]){
    out.textContent='no neuron '+r.key+' (sites 0..'+(L.sites.length-1)+')';return;}
  out.replaceChildren(aapeEl('p',r.key+' ('+L.sites[r.layer]+') has no page in this gallery; its top clips:'));
  const t=aapeEl('table'),hr=t.createTHead().insertRow(),body=t.createTBody();
  ['rank','score','label','file'].forEach(h=>hr.appendChild(aapeEl('th',h)));
  L.top[r.layer][r.neuron].forEach((x,i)=>{const c=L.clips[x[0]],tr=body.insertRow();
    [[i+1,'num'],[x[1],'num'],[c[1]],[c[0]]].forEach(v=>tr.appendChild(aapeEl('td',v[0],v[1])));});
  out.appendChild(t);
  const note=aapeEl('p','Build its page with ','note');
  note.appendChild(aapeEl('code',L.command+' '+r.key));
  out.appendChild(note);
}
function aapeLookup(ev){
  if(ev)ev.preventDefault();
  const r=aapeFind(document.getElementById('lookup-q').value);
  if(r.page){location.href=r.page;return false;}
  if(r.error||window.AAPE_LOOKUP){aapeShow(r);return false;}
  const s=document.createElement('script');s.src=AAPE_LOOKUP_SRC;s.onload=()=>aapeShow(r);
  s.onerror=()=>{document.getElementById('lookup-result').textContent='lookup data '+AAPE_LOOKUP_SRC+' missing';};
  document.head.appendChild(s);return false;
}
document.getElementById('lookup').addEventListener('submit',aapeLookup);
"""


def lookup_js(data: dict[str, Any]) -> str:
    """The text of ``lookup.js``: ``data`` (sites, site_neurons, top, clips, command) as
    ``window.AAPE_LOOKUP``, read by :data:`LOOKUP_SCRIPT` (every value reaches the page as text)."""
    return "window.AAPE_LOOKUP=" + js_value(data) + ";\n"


def _neuron_link(n: GalleryNeuron, prefix: str = "") -> tuple[str, str]:
    return f"<a href='{esc(prefix + n.page)}'>{esc(n.key)}</a>", n.key


def _neuron_rows(neurons: Sequence[GalleryNeuron], class_names: Sequence[str], prefix: str = "") -> pd.DataFrame:
    rows = []
    for n in neurons:
        hit = [class_names.index(c) for c in n.classes if c in class_names]
        rows.append(
            {
                "neuron": _neuron_link(n, prefix),
                "layer": n.layer,
                "index": n.neuron,
                "site": n.site,
                "entropy": n.entropy,
                "classes": "; ".join(n.classes) or "–",
                "P(active | class)": (
                    bar_chart(n.p, class_names, hit),
                    max((v for v in n.p if not math.isnan(v)), default=0.0),
                ),
                "top-clip purity": n.purity,
                "top clips": len(n.clips),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "neuron",
            "layer",
            "index",
            "site",
            "entropy",
            "classes",
            "P(active | class)",
            "top-clip purity",
            "top clips",
        ],
    )


def gallery_index_page(
    title: str,
    info: Sequence[tuple[str, str]],
    class_names: Sequence[str],
    groups: Sequence[tuple[str, Sequence[GalleryNeuron]]],
    neurons: Sequence[GalleryNeuron],
    lookup_src: str,
    notes: Sequence[str] = (),
) -> str:
    """``gallery/index.html``: ``info`` (label, text) lines, a ``layer:index`` lookup box, one table per
    group (class → its neurons, then other groups) and a table of every neuron of the gallery."""
    pages = {n.key: n.page for n in neurons}
    head = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in info)
    warn = "".join(f"<p class='warn'>{esc(w)}</p>" for w in notes)
    nav = "".join(f"<a href='#group-{i}'>{esc(t)}</a>" for i, (t, _) in enumerate(groups))
    body = [
        f"<h1>{esc(title)}</h1><ul>{head}</ul>{warn}",
        "<form id='lookup'><label>Look up a neuron <input id='lookup-q' placeholder='layer:index' size='10'>"
        "</label> <button type='submit'>go</button></form><div id='lookup-result'></div>",
        f"<nav>{nav}<a href='#all'>all neurons</a></nav>",
        "<p class='note'>Bars: P(active | class) over every class, the neuron's own classes highlighted "
        "(hover a bar for its value). Purity: share of the neuron's top clips labelled with one of its "
        "classes.</p>",
    ]
    for i, (t, members) in enumerate(groups):
        body.append(f"<h2 id='group-{i}'>{esc(t)}</h2>")
        if members:
            body.append(table(_neuron_rows(members, class_names), raw=("neuron", "P(active | class)")))
        else:
            body.append("<p class='note'>no neuron</p>")
    body.append("<h2 id='all'>All neurons of this gallery</h2>")
    body.append(table(_neuron_rows(neurons, class_names), raw=("neuron", "P(active | class)"), table_id="all-neurons"))
    script = f"const AAPE_PAGES={js_value(pages)};const AAPE_LOOKUP_SRC={js_value(lookup_src)};" + LOOKUP_SCRIPT
    return page(title, "".join(body), script)


def neuron_page(
    n: GalleryNeuron, class_names: Sequence[str], title: str, index_href: str, root: str, unit: str = "neuron"
) -> str:
    """A neuron's page: its facts, P(active | class) over every class and its top clips (label, file,
    spectrogram with the activation overlaid, audio player). ``root``: path from the page to the gallery
    folder (``"../"``)."""
    hit = [class_names.index(c) for c in n.classes if c in class_names]
    facts = [
        ("site", n.site),
        ("entropy", "–" if math.isnan(n.entropy) else f"{n.entropy:.3f}"),
        ("classes", "; ".join(n.classes) or "none assigned"),
        ("top-clip purity", "–" if math.isnan(n.purity) else f"{n.purity:.2f}"),
    ]
    rows = []
    for c in n.clips:
        peak = "–" if c.peak is None else f"{c.peak:.2f}"
        rows.append(
            {
                "rank": c.rank + 1,
                "score": c.score,
                "clip": (
                    f"<b>{esc(c.label)}</b><br>{esc(c.file_name)}<br><span class='note'>{esc(c.split)} · "
                    f"clip {c.index}</span>",
                    c.label,
                ),
                "peak (s)": peak,
                "spectrogram + activation": (
                    f"<img class='spec' src='{esc(root + c.image)}' alt='spectrogram of "
                    f"{esc(c.file_name)} with the activation of {esc(n.key)}'>",
                    c.rank,
                ),
                "listen": (
                    f"<audio controls preload='metadata' src='{esc(root + c.audio)}'></audio>"
                    f"<div class='note'>excerpt {c.start:.2f}–{c.stop:.2f} s</div>",
                    c.rank,
                ),
            }
        )
    df = pd.DataFrame(rows, columns=["rank", "score", "clip", "peak (s)", "spectrogram + activation", "listen"])
    body = [
        f"<nav><a href='{esc(index_href)}'>← gallery</a></nav>",
        f"<h1>{esc(title)}: {esc(unit)} {esc(n.key)}</h1>",
        "<ul>" + "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in facts) + "</ul>",
        "".join(f"<p class='warn'>{esc(w)}</p>" for w in n.notes),
        "<h2>P(active | class)</h2>",
        bar_chart(n.p, class_names, hit, width=max(240, 22 * len(class_names)), height=70),
        "<p class='note'>"
        + " · ".join(f"{esc(c)} {'–' if math.isnan(v) else f'{v:.2f}'}" for c, v in zip(class_names, n.p))
        + "</p>",
        "<h2>Top clips</h2><p class='note'>Score: the clip's mean activation. Orange: where the neuron "
        "fires (opacity ∝ activation, one scale for all clips of this neuron); below: activation over "
        "time.</p>",
        table(df, raw=("clip", "spectrogram + activation", "listen"), full_height=True),
    ]
    return page(f"{title}: {n.key}", "".join(body))
