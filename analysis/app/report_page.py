"""The pipeline report's web page (``report/index.html``): one section per model × task (:class:`ReportSection`),
built from the page kit of :mod:`analysis.app.html`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from analysis.app.html import esc, figure, link_list, page


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
