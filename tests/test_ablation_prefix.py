"""Sharing the forward before the earliest ablated site (callbacks/prefix_pass.py, encoders/resume.py).

Oracles: the full forward on the repeated batch (bit for bit), and the callback with ``share_prefix=False``
(the full forward per pass, as before): every CSV must be identical, over several rounds of draws and under
DDP (2 processes = 1).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from callbacks.ablation import AblationCallback
from callbacks.prefix_pass import plan_passes
from lightning_modules.audio_classifier import AudioClassifier
from lightning_modules.encoders import CrepeEncoder, PestoEncoder
import _ablation_toy as toy
from _ablation_toy import ToyAudioDataModule, make_audio, train_probe, write_run_folder

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 3  # frames of a 0.25 s clip at a 125 ms hop (CREPE and PESTO: 1 + 4000 // 2000)
CREPE = {"capacity": "tiny", "pretrained": False, "hop_ms": 125.0, "embedding_layer": 3, "frame_batch_size": 5}
PESTO = {"pretrained": False, "hop_ms": 125.0, "embedding_layer": 5, "frame_batch_size": 5}
#: Per class, {site: neurons}: sets starting at different sites, one past the embedding layer (no effect).
SETS = {
    "crepe": [{0: range(40)}, {1: [0, 1, 2]}, {3: [1, 2]}, {5: [0, 1, 2, 3]}, {2: [0, 4], 4: [1]}],
    "pesto": [{0: range(15)}, {1: [0, 1]}, {4: [0]}, {6: [0]}, {2: [3], 5: [1]}],
}


def _encoder(kind: str):
    return CrepeEncoder(**CREPE) if kind == "crepe" else PestoEncoder(**PESTO)


def _class_sets(enc, kind: str) -> list[list[torch.Tensor]]:
    return [
        [torch.tensor(list(per.get(l, [])), dtype=torch.long) for l in range(len(enc.neuron_sites))]
        for per in SETS[kind]
    ]


@pytest.mark.parametrize("kind", ["crepe", "pesto"])
def test_resumed_forward_equals_the_full_forward_and_runs_the_site_hook(kind):
    torch.manual_seed(0)
    enc = _encoder(kind)
    audio, lengths = torch.randn(3, 4000), torch.tensor([4000, 2500, 1000])
    states = enc.forward_to(audio, lengths, list(range(len(enc.neuron_sites))))
    with torch.no_grad():
        full = enc(audio.repeat(2, 1), lengths.repeat(2))
        for s, st in states.items():
            assert torch.equal(enc.forward_from(st, 2), full), s
        keep = enc.embedding_layer - 1
        for s in (0, keep):  # a mask on channel 0 of the earliest site itself, copy 1 only

            def hook(m, i, o):
                rows = enc.positions(enc.neuron_sites[s], o).clip >= 3
                o = o.clone()
                o[rows, 0] = 0
                return o

            h = enc.get_submodule(enc.neuron_sites[s]).register_forward_hook(hook)
            try:
                ablated = enc(audio.repeat(2, 1), lengths.repeat(2))
                resumed = enc.forward_from(states[s], 2)
            finally:
                h.remove()
            assert torch.equal(resumed, ablated) and torch.equal(ablated[:3], full[:3])
            assert not torch.equal(ablated[3:], full[3:])


def test_passes_start_at_their_earliest_site_and_keep_the_number_of_passes():
    class C:
        def __init__(self, site):
            self.mask = torch.zeros(4, 2, dtype=torch.bool)
            if site is not None:
                self.mask[site, 0] = True

    conds = [C(s) for s in (0, 3, 1, None, 2, 3, 0)]
    passes = plan_passes(conds, list(range(7)), 3, 4)
    assert passes == [(3, [1, 3, 5]), (0, [4, 2, 0]), (0, [6])]
    assert sorted(i for _, p in passes for i in p) == list(range(7))


@pytest.fixture(scope="module", params=["crepe", "pesto"])
def built(request, tmp_path_factory):
    kind = request.param
    d = tmp_path_factory.mktemp(f"prefix_{kind}")
    enc = _encoder(kind)
    enc.frame_batch_size = 10**6  # one call per split; its rows are frames, 6 per clip (0.25 s, hop 800)
    view = toy.site_view
    toy.site_view = lambda o, axis: view(o, axis).reshape(o.shape[0] // FRAMES, -1, o.shape[1])
    try:
        run = write_run_folder(
            d / "run", enc, {"train": make_audio(1, 4), "test": make_audio(2, 2)}, class_sets=_class_sets(enc, kind)
        )
    finally:
        toy.site_view = view
    return dict(kind=kind, run=run, ckpt=train_probe(run, d / "probe", epochs=5))


def _args(built, out: Path) -> dict:
    return dict(
        out_dir=str(out),
        run_dir=str(built["run"]),
        random_draws=8,
        draws_stop_after=2,
        seed=3,
        conditions_per_pass=3,
        figures=False,
        neuron_lists=[  # sets that hurt a class (more rounds)
            {
                "name": f"hurt{c}",
                "neurons": [[l, n] for l, ns in SETS[built["kind"]][c].items() for n in ns],
                "targets": [t],
            }
            for c, t in ((0, "t1600"), (1, "noise"))
        ],
    )


def _csvs(out: Path) -> dict[str, pd.DataFrame]:
    return {n: pd.read_csv(out / n) for n in ("ablation.csv", "ablation_groups.csv", "ablation_confusion.csv")}


@pytest.mark.slow
def test_shared_prefix_gives_the_counts_of_the_full_forward(built, tmp_path):
    audio, labels = make_audio(5, 2)
    got = {}
    for share in (True, False):
        cb = AblationCallback(**_args(built, tmp_path / str(share)), share_prefix=share)
        model = AudioClassifier(_encoder(built["kind"]), str(built["ckpt"]))
        toy.toy_trainer(callbacks=[cb]).test(
            model, datamodule=ToyAudioDataModule(audio, labels, batch_size=4), verbose=False
        )
        got[share] = (_csvs(tmp_path / str(share)), cb._rounds.history)
    if built["kind"] == "crepe":  # its "hurt0" set beats its first draws: several rounds of draws ran
        assert len(got[True][1]) > 1
    assert got[True][1] == got[False][1]
    for name, table in got[True][0].items():
        assert table.equals(got[False][0][name]), name
    t = got[True][0]["ablation.csv"]
    assert (t[t["class"] == "ALL"].accuracy != t[t.condition == "baseline"].accuracy.iloc[-1]).any()


def _ddp_run(tmp: Path, built, name: str, devices: int) -> Path:
    work = tmp / name
    work.mkdir()
    cls = "CrepeEncoder" if built["kind"] == "crepe" else "PestoEncoder"
    cfg = {
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": [
                {"class_path": "callbacks.ablation.AblationCallback", "init_args": _args(built, work / "abl")}
            ],
        },
        "model": {
            "class_path": "lightning_modules.audio_classifier.AudioClassifier",
            "init_args": {
                "encoder": {
                    "class_path": f"lightning_modules.encoders.{cls}",
                    "init_args": CREPE if cls == "CrepeEncoder" else PESTO,
                },
                "probe_checkpoint": str(built["ckpt"]),
            },
        },
        "data": {"class_path": "test_ablation_ddp.PlantedTestData"},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    args = [
        sys.executable,
        str(ROOT / "train.py"),
        "test",
        "--config",
        str(work / "config.yaml"),
        f"--trainer.devices={devices}",
    ] + (["--trainer.strategy=ddp"] if devices > 1 else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    p = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"train.py test failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return work / "abl"


@pytest.mark.ddp
@pytest.mark.slow
def test_two_processes_with_a_shared_prefix_give_the_counts_of_one(built, tmp_path):
    if built["kind"] != "crepe":
        pytest.skip("one encoder is enough for the DDP pattern")
    one, two = _ddp_run(tmp_path, built, "one", 1), _ddp_run(tmp_path, built, "two", 2)
    for name, table in _csvs(one).items():
        assert table.equals(_csvs(two)[name]), name
