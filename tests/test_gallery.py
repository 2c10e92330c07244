"""The listening gallery (``python -m analysis gallery``, pipeline stage ``gallery``): the activation-map pass,
the files it writes (pages, PNG images, 16-bit WAV excerpts), their links, and the alignment of the maps with
the clip's spectrogram. Browser checks of the same pages are in test_browser.py.

The run folder is made by the real statistics pass of the pretrained CREPE tiny on the tiny synthetic task;
``top_clips.pt`` comes from the brute-force oracle of ``tests/_top_clips.py``.
"""

from __future__ import annotations

import json
import math
import os
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import matplotlib.image as mimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
import soundfile as sf
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from analysis.app.cli import main as cli_main
from analysis.app.gallery import build_gallery, choose_neurons
from analysis.app.specs import run_sources
from analysis.gallery import activation_grid, peak_seconds
from analysis.runs.atomic import OutputExistsError, save_pdf
from analysis.runs.layout import figure_preview, gallery_neuron_page
from analysis.runs.read import read_index, read_run, read_top_clips
from analysis.runs.write import staged_folder
from callbacks.activation_maps import display_spectrogram, record_neurons
from lightning_modules.encoders import M2DEncoder
from lightning_modules.encoders.base import AudioEncoder, Positions, patch_coordinates
from lightning_modules.encoders.melspec import LogMelSpectrogram

from _gallery_run import K, MODEL, TASK, make_run


@pytest.fixture(scope="module")
def gallery(gallery_pipeline):
    """The run folder of the session's pipeline run and a gallery built from it by the verb's function."""
    _, run_dir = gallery_pipeline
    index = build_gallery(run_dir, per_class=2)
    return run_dir, index.parent


class Links(HTMLParser):
    """Every ``href`` / ``src`` of a page, and the ``<audio>`` / ``<img>`` sources."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.audio: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("href", "src"):
            if a.get(key):
                self.refs.append(a[key])
        if tag == "audio":
            self.audio.append(a["src"])
        if tag == "img":
            self.images.append(a["src"])


def page_links(page: Path) -> Links:
    p = Links()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def local_target(page: Path, ref: str) -> Path | None:
    """The file a relative link of ``page`` points at (None for anchors and other schemes)."""
    u = urlparse(ref)
    if u.scheme or not u.path:
        return None
    return (page.parent / unquote(u.path)).resolve()


def broken_links(folder: Path) -> list[str]:
    bad = []
    for page in folder.rglob("*.html"):
        for ref in page_links(page).refs:
            t = local_target(page, ref)
            if t is not None and not t.exists():
                bad.append(f"{page.relative_to(folder)} → {ref}")
    return bad


# -- the oracle (also what the statistics pass's streaming top-K must reproduce) ---------------------
@pytest.mark.slow
def test_oracle_top_clips_follow_the_file_contract(gallery):
    run_dir, _ = gallery
    top = read_top_clips(run_dir)
    index = read_index(run_dir)
    counted = set(index[index["split"].isin(["train", "valid"])]["index"])
    score, idx, frame = top["score"], top["index"], top["frame"]
    assert score.shape[-1] == K and top["sites"] == read_run(run_dir).sites
    for l, n_site in enumerate(top["site_neurons"]):
        assert (idx[l, n_site:] == -1).all()
        s, i = score[l, :n_site], idx[l, :n_site]
        assert (i >= 0).all() and set(i.flatten().tolist()) <= counted
        assert (s[:, :-1] >= s[:, 1:]).all()
        ties = s[:, :-1] == s[:, 1:]
        assert (i[:, :-1][ties] < i[:, 1:][ties]).all()
        assert (frame[l, :n_site] >= 0).all()  # CREPE: every position has a frame


# -- the gallery's files --------------------------------------------------------------------------------
@pytest.mark.slow
def test_gallery_pages_show_each_class_neurons_with_their_top_clips(gallery):
    run_dir, folder = gallery
    run = read_run(run_dir)
    choice = choose_neurons(run, ["class"], per_class=2)
    assert choice.neurons, "the pretrained CREPE should have class neurons on the synthetic task"
    html = (folder / "index.html").read_text(encoding="utf-8")
    for cls in run.classes:
        assert f"class {cls}:" in html
    top = read_top_clips(run_dir)
    index = read_index(run_dir).set_index("index")
    for l, n in choice.neurons:
        page = folder / gallery_neuron_page(l, n)
        text = page.read_text(encoding="utf-8")
        links = page_links(page)
        filled = [int(i) for i in top["index"][l, n].tolist() if i >= 0][:K]
        assert len(links.audio) == len(links.images) == len(filled)
        for i in filled:  # every top clip's file name and label are on the page
            assert str(index.loc[i, "file_name"]) in text and str(index.loc[i, "label"]) in text
        assert f"neurons/l{l}_n{n}.html" in html


@pytest.mark.slow
def test_images_and_audio_exist_decode_and_match_the_excerpts(gallery):
    _, folder = gallery
    pages = sorted((folder / "neurons").glob("*.html"))
    assert pages
    for page in pages:
        links = page_links(page)
        text = page.read_text(encoding="utf-8")
        for src in links.images:
            img = mimg.imread(local_target(page, src))
            assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 100
            assert float(np.asarray(img[..., :3]).std()) > 0.02, f"{src} is blank"
        for src in links.audio:
            path = local_target(page, src)
            info = sf.info(str(path))
            assert info.subtype == "PCM_16" and info.samplerate == 16000 and info.channels == 1
            start, stop = (int(x) / 1000 for x in path.stem.split("_")[1][:-2].split("-"))
            assert info.frames == pytest.approx((stop - start) * 16000, abs=1)
            assert f"{start:.2f}–{stop:.2f} s" in text
            data, _ = sf.read(str(path))
            assert np.abs(data).max() > 0.01  # the tone, not silence


@pytest.mark.slow
def test_no_broken_links_and_everything_is_local(gallery):
    _, folder = gallery
    assert broken_links(folder) == []
    for page in folder.rglob("*.html"):
        for ref in page_links(page).refs:
            assert not urlparse(ref).scheme, f"{page.name} refers to {ref}: the gallery must work offline"


@pytest.mark.slow
def test_recomputed_scores_match_the_statistics_top_clips(gallery):
    _, folder = gallery
    meta = json.loads((folder / "gallery.json").read_text())
    assert meta["notes"] == []  # a mismatch between top_clips.pt and the gallery's pass would be noted
    assert meta["shown"]


@pytest.mark.slow
def test_lookup_data_lists_every_neuron(gallery):
    run_dir, folder = gallery
    text = (folder / "lookup.js").read_text(encoding="utf-8")
    data = json.loads(text[text.index("=") + 1 :].rstrip().rstrip(";"))
    top = read_top_clips(run_dir)
    assert [len(layer) for layer in data["top"]] == list(top["site_neurons"])
    assert [i for i, _ in data["top"][0][1]] == [int(i) for i in top["index"][0, 1].tolist() if i >= 0]
    assert set(data["clips"]) >= {str(i) for i, _ in data["top"][0][1]}


@pytest.mark.slow
def test_cli_any_neuron_refusal_and_errors(gallery, tmp_path, capsys):
    run_dir, _ = gallery
    dest = tmp_path / "g"
    assert cli_main(["gallery", "--run", str(run_dir), "--dest", str(dest), "--neurons", "0:1", "--clips", "2"]) == 0
    assert (dest / "neurons" / "l0_n1.html").is_file()
    assert len(page_links(dest / "neurons" / "l0_n1.html").audio) == 2
    assert "requested neurons" in (dest / "index.html").read_text(encoding="utf-8")
    assert cli_main(["gallery", "--run", str(run_dir), "--dest", str(dest), "--neurons", "0:2"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        cli_main(
            ["gallery", "--run", str(run_dir), "--dest", str(dest), "--neurons", "0:2", "--clips", "1", "--overwrite"]
        )
        == 0
    )
    assert (dest / "neurons" / "l0_n2.html").is_file() and not (dest / "neurons" / "l0_n1.html").exists()
    assert cli_main(["gallery", "--run", str(run_dir), "--dest", str(tmp_path / "h"), "--neurons", "9:1"]) == 2
    assert "sites 0..5" in capsys.readouterr().err
    assert cli_main(["gallery", "--run", str(run_dir), "--dest", str(tmp_path / "h"), "--neurons", "octave"]) == 2
    assert "layer:index" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


@pytest.mark.slow
def test_gallery_needs_top_clips(gallery, tmp_path):
    run_dir, _ = gallery
    bare = tmp_path / "run"
    bare.mkdir()
    for f in run_dir.iterdir():
        if f.is_file() and f.name != "top_clips.pt":
            (bare / f.name).write_bytes(f.read_bytes())
    with pytest.raises(FileNotFoundError, match="top_clips.pt"):
        build_gallery(bare)


# -- alignment: the map lies where the sound is ----------------------------------------------------------
class PatchEnergy(AudioEncoder):
    """A spectrogram 'ViT' with one site whose single neuron is the mean normalised log-mel energy of each
    16 x 16 patch (CLS 0): its map must light up exactly where, and in the band where, the sound is."""

    frame_seconds, frames_per_position, n_bands = 0.01, 16, 5
    neuron_sites, site_neurons, embed_dim, name = ["act"], [1], 1, "patch_energy"

    def __init__(self) -> None:
        super().__init__()
        self.frontend = LogMelSpectrogram.for_m2d(16000)
        self.act = nn.Identity()

    def log_mel(self, audio):
        return (self.frontend(audio) + 7.0) / 4.0

    def forward(self, audio, lengths=None):
        x = self.log_mel(audio)[:, 0]  # [B, 80, T]
        t = x.shape[-1] // 16
        patches = x[..., : t * 16].reshape(x.shape[0], 5, 16, t, 16).mean((2, 4)).reshape(x.shape[0], 5 * t)
        tokens = torch.cat([torch.zeros(x.shape[0], 1), patches], 1)[..., None]  # [B, 1 + 5t, 1]
        b = x.shape[0]
        self._positions = Positions(
            clip=torch.arange(b),
            valid=torch.ones(b, 1 + 5 * t, dtype=torch.bool),
            special=torch.arange(1 + 5 * t) == 0,
            **patch_coordinates(torch.arange(t) * 16, 5, b, n_prefix=1),
        )
        try:
            return self.act(tokens).mean(1)
        finally:
            self._positions = None


def test_activation_map_sits_where_the_tone_is():
    sr, hz = 16000, 3000.0
    t = torch.arange(2 * sr) / sr
    audio = torch.where(t >= 1.0, 0.5 * torch.sin(2 * math.pi * hz * t), torch.zeros(()))[None, :]
    enc = PatchEnergy()
    rec = record_neurons(enc, audio, torch.tensor([2 * sr]), {0: [0]})[0][0]
    g = activation_grid(rec.values[:, 0], rec.frame, rec.counted, rec.band, enc.n_bands, enc.frames_per_position)
    spec, hop, own = display_spectrogram(enc, audio)
    assert own and hop == enc.frame_seconds and g.grid.shape == (5, (spec.shape[-1]) // 16)
    mel = int(spec[0, :, 150:].mean(-1).argmax())  # the tone's mel bin in the model's own log-mel
    band = int(g.grid.nan_to_num(-1e9).max(1).values.argmax())
    assert band == mel // 16  # the map's hottest band holds the tone
    col = g.grid[band]
    assert float(col[: 100 // 16].max()) < float(col[112 // 16 :].min())  # silent first second, tone after
    assert g.peak_band == band and peak_seconds(g.peak_frame, 0.01, 16) >= 1.0


def test_recorded_values_are_the_site_outputs_of_each_clip():
    enc = M2DEncoder(checkpoint=None, width=16, depth=2, num_heads=2, mlp_ratio=2.0, input_frames=32, seed=0).eval()
    audio = torch.randn(2, 8000)
    lengths = torch.tensor([8000, 3000])
    seen = []
    h = enc.get_submodule("blocks.1.mlp.act").register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    try:
        recs = record_neurons(enc, audio, lengths, {1: [3, 7]})
    finally:
        h.remove()
    out = torch.cat([o[1] for o in seen])  # clip 1's rows of every chunk call, [positions, 32]
    assert torch.equal(recs[1][1].values, out[:, [3, 7]])
    assert recs[1][1].counted.sum() < recs[0][1].counted.sum()  # clip 1 is shorter: fewer counted positions
    assert set(recs[0][1].band.tolist()) == {-1, 0, 1, 2, 3, 4}


# -- plumbing -------------------------------------------------------------------------------------------
def test_run_sources_reads_both_manifest_kinds(tmp_path):
    enc = {"class_path": "lightning_modules.encoders.CrepeEncoder", "init_args": {"pretrained": False}}
    assert run_sources({"config": {"encoder": enc, "data": {"task": "t"}}}, tmp_path) == (enc, {"task": "t"})
    cli = {"config": {"model": {"init_args": {"encoder": enc}}, "data": {"init_args": {"task": "u"}}}}
    assert run_sources(cli, tmp_path) == (enc, {"task": "u"})
    with pytest.raises(ValueError, match="manifest.json"):
        run_sources({"config": {}}, tmp_path)


def test_staged_folder_replaces_only_when_asked(tmp_path):
    dest = tmp_path / "g"
    with staged_folder(dest) as d:
        (d / "a").write_text("1")
    assert (dest / "a").read_text() == "1"
    with pytest.raises(OutputExistsError):
        with staged_folder(dest) as d:
            pass
    with pytest.raises(RuntimeError):
        with staged_folder(dest, overwrite=True) as d:
            (d / "b").write_text("2")
            raise RuntimeError("fails half way")
    assert sorted(p.name for p in dest.iterdir()) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["g"]  # no temporary folder left
    with staged_folder(dest, overwrite=True) as d:
        (d / "b").write_text("2")
    assert sorted(p.name for p in dest.iterdir()) == ["b"]


def test_pdf_figures_get_a_png_preview(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    pdf = save_pdf(fig, tmp_path / "f.pdf")
    png = figure_preview(pdf)
    assert png == tmp_path / "f.png" and mimg.imread(png).std() > 0
    fig, _ = plt.subplots()
    pdf.unlink()
    with pytest.raises(OutputExistsError, match="f.png"):
        save_pdf(fig, tmp_path / "f.pdf")  # the preview is checked before anything is written
    assert not pdf.exists()


@pytest.mark.slow
def test_pipeline_gallery_stage_and_report_link(gallery_pipeline):
    pipe, _ = gallery_pipeline
    gal = pipe.tree.gallery(TASK, MODEL)
    assert (gal / "index.html").is_file() and broken_links(gal) == []
    marker = json.loads((pipe.tree.stages / f"gallery-{TASK}_{MODEL}.json").read_text())
    assert marker["outputs"] == [str(gal / "index.html")]
    report = (pipe.tree.report / "index.html").read_text(encoding="utf-8")
    assert f"../gallery/{TASK}_{MODEL}/index.html" in report
    summary = (pipe.tree.report / "summary.md").read_text(encoding="utf-8").replace("\\_", "_")
    assert f"listening gallery, {MODEL} on {TASK}" in summary


@pytest.mark.slow
def test_report_is_a_web_page(gallery_pipeline):
    """Figures inline as PNG (PDFs linked), tables in scroll containers, numbers right-aligned and sortable,
    one section per model x task with its finding, no broken links."""
    pipe, _ = gallery_pipeline
    page = pipe.tree.report / "index.html"
    html = page.read_text(encoding="utf-8")
    links = page_links(page)
    assert "<embed" not in html
    pdfs = sorted(pipe.tree.root.rglob("*.pdf"))
    assert pdfs
    for pdf in pdfs:
        rel = "../" + pdf.relative_to(pipe.tree.root).as_posix()
        here = os.path.relpath(pdf, page.parent)  # the report's own figures are linked from report/
        assert rel in links.refs or here in links.refs, rel
        png = figure_preview(pdf)
        assert "../" + png.relative_to(pipe.tree.root).as_posix() in links.images or (
            os.path.relpath(png, page.parent) in links.images
        ), png
    for src in links.images:
        assert mimg.imread(local_target(page, src)).std() > 0
    assert broken_links(pipe.tree.report) == []
    assert html.count("<div class='scroll'><table class='sortable'") >= 3
    assert "<td class='num' data-v=" in html
    assert f"id='{MODEL}--{TASK}'" in html and "class='finding" in html


@pytest.mark.slow
def test_gallery_of_a_spectrogram_vit_maps_bands_and_chunks(synthetic_root, tmp_path):
    """A tiny random M2D (chunks of 32 frames: several site calls per clip, 5 frequency bands): the gallery's
    pass attributes every chunk to its clip (its clip scores equal the oracle's) and draws band maps."""
    m2d = {
        "class_path": "lightning_modules.encoders.M2DEncoder",
        "init_args": {
            "checkpoint": None,
            "width": 16,
            "depth": 2,
            "num_heads": 2,
            "mlp_ratio": 2.0,
            "input_frames": 32,
            "seed": 0,
            "name": MODEL,
        },
    }
    _, run_dir = make_run(synthetic_root, tmp_path, stages=("stats",), models={MODEL: m2d})
    index = build_gallery(run_dir, neurons=["0:1", "1:5"], clips=2)
    meta = json.loads((index.parent / "gallery.json").read_text())
    assert meta["notes"] == [] and meta["shown"] == ["0:1", "1:5"]
    for page in (index.parent / "neurons").glob("*.html"):
        for src in page_links(page).images:
            assert mimg.imread(local_target(page, src)).std() > 0.02
    assert broken_links(index.parent) == []


@pytest.mark.slow
def test_tensorboard_gets_the_top_clips_as_audio_and_images(gallery, tmp_path):
    run_dir, _ = gallery
    build_gallery(run_dir, dest=tmp_path / "g", neurons=["0:1"], clips=2, tensorboard=tmp_path / "tb")
    ev = EventAccumulator(str(tmp_path / "tb"), size_guidance={"audio": 0, "images": 0}).Reload()
    task = read_run(run_dir).task
    tags = [f"gallery/{task}/l0_n1/rank{r}" for r in range(2)]
    assert sorted(ev.Tags()["audio"]) == tags and sorted(ev.Tags()["images"]) == tags
    audio = ev.Audio(tags[0])[0]
    assert audio.sample_rate == 16000 and audio.length_frames > 1000
    image = ev.Images(tags[1])[0]
    assert image.width > 100 and image.height > 50


def test_bad_gallery_options_are_refused_before_any_work(tmp_path):
    for kw, msg in (({"clips": 0}, "clips"), ({"per_class": 0}, "per_class"), ({"excerpt_seconds": 0}, "excerpt")):
        with pytest.raises(ValueError, match=msg):
            build_gallery(tmp_path / "nowhere", **kw)
