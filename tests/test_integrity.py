"""Run folders that lie about being finished: every file a stage wrote is recorded in its marker (sha256 and
size, hashed while writing — never by reading ``features.pt`` back), and a re-run that finds any of them
truncated, edited or missing names the file and runs that stage again (and the stages built on it), while
``python -m analysis verify`` reports the same damage. Oracle: ``hashlib`` over the bytes on disk, and the
pristine copy of the finished folder."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from analysis.app.cli import main as cli_main
from analysis.app.config import PipelineError, load_config
from analysis.app.pipeline import Pipeline
from analysis.app.verify import verify
from analysis.runs import atomic, integrity, layout
from analysis.runs.atomic import recording, save_csv, save_json, save_torch, save_wav
from analysis.runs.layout import OutputTree
from analysis.runs.write import RowBlocks, TensorFileWriter, write_run_folder

TASK, MODEL = "synth_octave_sine", "crepe_tiny"
STAGES = ["data", "stats", "identify"]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- records made while writing ----------------------------------------------------------------------------
def test_every_writer_records_the_digest_of_what_it_wrote(tmp_path):
    with recording() as rec:
        files = [
            save_torch({"a": torch.randn(50, 3)}, tmp_path / "t.pt"),
            save_json({"x": "é"}, tmp_path / "m.json"),
            save_csv(pd.DataFrame({"a": [1, 2]}), tmp_path / "c.csv"),
            save_wav(np.zeros(800), 16000, tmp_path / "a.wav"),
        ]
        files.append(atomic.copy_file(files[0], tmp_path / "copy.pt"))
        w = TensorFileWriter(tmp_path / "f.pt", 40, (6,), torch.float32)
        for _ in range(4):
            w.write(torch.randn(10, 6))
        w.close()
        files.append(tmp_path / "f.pt")
    assert {Path(k) for k in rec} == {p.absolute() for p in files}
    for p in files:
        assert rec[str(p.absolute())] == (_sha(p), p.stat().st_size), p.name
    assert torch.load(tmp_path / "f.pt", weights_only=True).shape == (40, 6)


def test_a_run_folder_is_recorded_without_reading_its_files_back(tmp_path, monkeypatch):
    rows = RowBlocks.from_tensors(
        torch.arange(6),
        torch.tensor([0, 1, 0, 1, 0, 1]),
        ["train"] * 6,
        [f"f{i}.wav" for i in range(6)],
        torch.randn(6, 5),
    )
    with recording() as rec:
        d = write_run_folder(
            tmp_path / "run",
            over_zero=torch.rand(2, 3, 2),
            classes=["a", "b"],
            stats={"count": torch.zeros(2, 3, 2)},
            rows=rows,
            manifest={"task": "t"},
        )
    monkeypatch.setattr(integrity, "sha256_file", lambda p: pytest.fail(f"{p} was read back to hash it"))
    snap = integrity.snapshot([d], rec, tmp_path)
    assert set(snap) == {
        f"run/{f}"
        for f in (
            layout.OVER_ZERO,
            layout.CLASSES,
            layout.STATS,
            layout.FEATURES,
            layout.GTS,
            layout.INDEX,
            layout.MANIFEST,
        )
    }
    for rel, r in snap.items():
        assert r["sha256"] == _sha(tmp_path / rel) and r["size"] == (tmp_path / rel).stat().st_size, rel


def test_record_move_follows_a_renamed_folder(tmp_path):
    with recording() as rec:
        save_json({}, tmp_path / "a" / "x.json")
        (tmp_path / "a").rename(tmp_path / "b")
        atomic.record_move(tmp_path / "a", tmp_path / "b")
    assert list(rec) == [str((tmp_path / "b" / "x.json").absolute())]


# -- a finished tiny run -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(config path, pristine output folder) of data + stats + identify on a synthetic task."""
    tmp = tmp_path_factory.mktemp("integrity")
    cfg = {
        "out": str(tmp / "pristine"),
        "seed": 0,
        "data": {"synthetic": {"clips_per_class": 3, "duration": 0.5}, "batch_size": 8},
        "tasks": {TASK: {"top_rate": 0.1}},
        "stats": {"top_k": 2},
        "models": {
            MODEL: {
                "class_path": "lightning_modules.encoders.CrepeEncoder",
                "init_args": {"capacity": "tiny", "hop_ms": 100.0, "embedding_layer": 6},
            }
        },
    }
    path = tmp / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    Pipeline(load_config(path)).run(STAGES)
    return path, tmp / "pristine"


def _records(out: Path) -> dict[str, str]:
    """Recorded file (relative) → its stage id, from the markers."""
    return {
        rel: mk.name[:-5]
        for mk in sorted(OutputTree(out).stages.glob("*.json"))
        if not mk.name.endswith(".running.json")
        for rel in json.loads(mk.read_text())["files"]
    }


def _copy(pristine: Path, dest: Path) -> Path:
    shutil.copytree(pristine, dest, symlinks=True)  # keeps modification times, as the records do
    return dest


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "edit":  # same size, one byte changed
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :])
    elif how == "delete":
        path.unlink()


RUN = f"runs/{TASK}_{MODEL}/"
#: The files the issue names, and the rest of the run folder.
RUN_FILES = [
    layout.OVER_ZERO,
    layout.CLASSES,
    layout.INDEX,
    layout.FEATURES,
    layout.MANIFEST,
    layout.STATS,
    layout.GTS,
    layout.TOP_CLIPS,
    layout.NEURONS_CSV,
    layout.NEURONS_PT,
    layout.NEURONS_JSON,
]


def test_the_markers_record_every_file_of_the_run_folder(finished):
    _, out = finished
    rec = _records(out)
    assert {RUN + f for f in RUN_FILES} <= set(rec)
    assert any(r.endswith(f"metadata/{TASK}.csv") for r in rec)  # the data stage's CSV and audio too
    assert [c for c in verify(out) if not c.ok] == []


@pytest.mark.parametrize("how", ["truncate", "edit", "delete"])
@pytest.mark.parametrize("name", RUN_FILES)
def test_verify_names_each_damaged_file(finished, tmp_path, capsys, name, how):
    _, pristine = finished
    out = _copy(pristine, tmp_path / "out")
    stage = _records(out)[RUN + name]
    _damage(out / RUN / name, how)
    bad = [(c.stage, d.path) for c in verify(out) for d in c.damaged]
    assert bad == [(stage, out / RUN / name)]
    assert cli_main(["verify", str(out / "runs")]) == 1
    assert f"DAMAGED  {stage}: {out / RUN / name}" in capsys.readouterr().out


def test_verify_rehashes_what_a_resume_trusts(finished, tmp_path):
    """An edit that keeps the size and the modification time: the resume's cheap check cannot see it,
    ``verify`` does."""
    _, pristine = finished
    out = _copy(pristine, tmp_path / "out")
    p = out / RUN / layout.CLASSES
    st = p.stat()
    _damage(p, "edit")
    import os

    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    recs = json.loads((OutputTree(out).stage_marker(f"stats-{TASK}_{MODEL}")).read_text())["files"]
    assert integrity.damage(recs, out) == []
    assert [str(d.path) for d in integrity.damage(recs, out, full=True)] == [str(p)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,how",
    [(f, ("truncate", "edit")[i % 2]) for i, f in enumerate(RUN_FILES[:8])]
    + [(layout.NEURONS_PT, "truncate"), ("metadata", "edit")],
)
def test_rerun_rebuilds_the_damaged_stage_and_what_builds_on_it(finished, tmp_path, caplog, name, how):
    path, pristine = finished
    out = _copy(pristine, tmp_path / "out")
    rel = RUN + name if name != "metadata" else next(r for r in _records(out) if r.endswith(f"{TASK}.csv"))
    stage = _records(out)[rel]
    _damage(out / rel, how)
    pipe = Pipeline(load_config(path, out=str(out)))
    with caplog.at_level(logging.WARNING, logger="aape.pipeline"):
        pipe.run(STAGES)
    assert any(str(out / rel) in r.getMessage() and stage in r.getMessage() for r in caplog.records), caplog.text
    ran = [s for s, how_, _ in pipe.runner.timings if how_ == "ran"]
    order = [f"data-{TASK}", f"stats-{TASK}_{MODEL}", f"identify-{TASK}_{MODEL}"]
    assert ran == order[order.index(stage) :]
    assert [c for c in verify(out) if not c.ok] == []
    rebuilt = (out / rel).read_bytes().replace(str(out).encode(), str(pristine).encode())
    before = (pristine / rel).read_bytes()
    if name == layout.MANIFEST:  # it names its folder and the time it was made
        rebuilt, before = ({k: v for k, v in json.loads(x).items() if k != "time"} for x in (rebuilt, before))
    assert rebuilt == before  # the stage is deterministic


@pytest.mark.slow
def test_only_refuses_a_damaged_earlier_stage_naming_the_file(finished, tmp_path):
    path, pristine = finished
    out = _copy(pristine, tmp_path / "out")
    _damage(out / RUN / layout.OVER_ZERO, "truncate")
    with pytest.raises(PipelineError) as e:
        Pipeline(load_config(path, out=str(out))).run(["identify"])
    assert str(out / RUN / layout.OVER_ZERO) in str(e.value) and "truncated" in str(e.value)


def test_a_damaged_marker_stops_the_run_naming_it(finished, tmp_path):
    path, pristine = finished
    out = _copy(pristine, tmp_path / "out")
    mk = OutputTree(out).stage_marker(f"stats-{TASK}_{MODEL}")
    mk.write_text(mk.read_text()[:40], encoding="utf-8")
    with pytest.raises(PipelineError, match=str(mk)):
        Pipeline(load_config(path, out=str(out))).run(STAGES)
    assert any(c.note and str(mk) in c.note for c in verify(out))


def _toy_stages(out: Path, log: list[str]) -> list:
    from analysis.app.runner import Stage

    def write(name: str):
        def run(overwrite: bool) -> None:
            log.append(name)
            save_json({"n": len(log)}, out / f"{name}.json", overwrite=overwrite)

        return run

    a = Stage("a", "", {"v": 1}, [out / "a.json"], write("a"))
    b = Stage("b", "", {"v": 1}, [out / "b.json"], write("b"), after=[a.id])
    return [a, b]


def test_a_stage_built_on_one_that_ran_again_earlier_runs_again(tmp_path):
    """``--force --only a`` in one invocation, a plain run later: b, made from the old a, runs again."""
    from analysis.app.runner import Runner

    log: list[str] = []
    a, b = _toy_stages(tmp_path, log)
    r = Runner(tmp_path)
    r.run(a), r.run(b)
    forced = Runner(tmp_path, force=True)
    forced.run(a)
    later = Runner(tmp_path)
    later.run(a), later.run(b)
    assert log == ["a", "b", "a", "b"]
    again = Runner(tmp_path)
    again.run(a), again.run(b)
    assert log == ["a", "b", "a", "b"] and [h for _, h, _ in again.timings] == ["skipped", "skipped"]


def _path_stages(out: Path, log: list[str], inside: str, outside: str) -> list:
    """Two stages whose config slices name a file inside the output folder (absolute) and one outside."""
    from analysis.app.runner import Stage

    def write(name: str):
        def run(overwrite: bool) -> None:
            log.append(name)
            save_json({"n": len(log)}, out / f"{name}.json", overwrite=overwrite)

        return run

    a = Stage("a", "", {"sae": str(out / inside), "data": outside}, [out / "a.json"], write("a"))
    b = Stage("b", "", {"v": 1}, [out / "b.json"], write("b"), after=[a.id])
    return [a, b]


def test_a_moved_output_folder_resumes_but_a_changed_path_does_not(tmp_path):
    """Paths inside the output folder are hashed relative to it; the name inside it and paths outside it
    still count."""
    from analysis.app.runner import Runner

    first, moved = tmp_path / "first", tmp_path / "moved"
    log: list[str] = []
    r = Runner(first)
    for st in _path_stages(first, log, "saes/m/sae.pt", "/data/x"):
        r.run(st)
    shutil.copytree(first, moved)
    again = Runner(moved)
    for st in _path_stages(moved, log, "saes/m/sae.pt", "/data/x"):
        again.run(st)
    assert log == ["a", "b"] and [h for _, h, _ in again.timings] == ["skipped", "skipped"]
    for inside, outside in (("saes/other/sae.pt", "/data/x"), ("saes/m/sae.pt", "/data/y")):
        with pytest.raises(PipelineError, match="made with a different config"):
            Runner(moved).run(_path_stages(moved, log, inside, outside)[0])


def test_a_marker_hashed_over_absolute_paths_is_recognised_and_rewritten(tmp_path):
    """A marker written before the portable hash (taken over the absolute paths, the way it was): the stage
    and the one after it are skipped, their markers get today's hash, and then the folder can move."""
    from analysis.app.runner import Runner, config_hash

    first, moved = tmp_path / "first", tmp_path / "moved"
    log: list[str] = []
    r = Runner(first)
    stages = _path_stages(first, log, "saes/m/sae.pt", "/data/x")
    for st in stages:
        r.run(st)
    old_a = config_hash({"depends": stages[0].depends, "after": []})
    old_b = config_hash({"depends": stages[1].depends, "after": [old_a]})
    for st, h in zip(stages, (old_a, old_b)):
        mk = OutputTree(first).stage_marker(st.id)
        marker = json.loads(mk.read_text())
        assert marker["hash"] != h  # the portable hash differs from the old one here
        save_json({**marker, "hash": h}, mk, overwrite=True)
    again = Runner(first)
    for st in _path_stages(first, log, "saes/m/sae.pt", "/data/x"):
        again.run(st)
    assert log == ["a", "b"] and [h for _, h, _ in again.timings] == ["skipped", "skipped"]
    for st in stages:
        assert json.loads(OutputTree(first).stage_marker(st.id).read_text())["hash"] == again.hashes[st.id]
    shutil.copytree(first, moved)
    later = Runner(moved)
    for st in _path_stages(moved, log, "saes/m/sae.pt", "/data/x"):
        later.run(st)
    assert log == ["a", "b"]
