"""The listening gallery's web pages (``gallery/index.html`` with its ``layer:index`` lookup box and
``lookup.js``, one page per neuron), built from the page kit of :mod:`analysis.app.html`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pandas as pd

from analysis.app.html import bar_chart, esc, js_value, page, table


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
