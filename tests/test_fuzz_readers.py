"""Fuzzing every boundary that reads a user file (Hypothesis; profiles in tests/_fuzz.py: a few dozen inputs
per reader in ``make test``, thousands under ``HYPOTHESIS_PROFILE=fuzz`` / ``make test-fuzz``). The only
outcomes allowed: a correct result (checked against the input) or the project's own error type naming the
file. Readers: metadata CSVs, task definitions, pipeline configs, WAV headers, and the run-folder files
(``classes.txt``, ``manifest.json``, ``index.csv``, tensor files)."""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import yaml
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _fuzz import TEXT, outcome
from analysis.app.config import PipelineError, load_config
from analysis.runs import layout
from analysis.runs.read import UnreadableFileError, read_classes, read_index, read_manifest, read_over_zero
from datamodules.audio import AudioFileError, load_audio
from datamodules.metadata import SPLITS, MetadataError, read_metadata
from datamodules.tasks import TaskSpec, load_task_yaml


_ROOT: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _fuzz_root() -> Iterator[None]:
    """One temporary root for every example's folder, removed when the module ends (thousands of examples
    under ``make test-fuzz`` would otherwise leave thousands of folders in /tmp)."""
    root = Path(tempfile.mkdtemp(prefix="aape-fuzz-"))
    _ROOT.append(root)
    yield
    _ROOT.remove(root)
    shutil.rmtree(root, ignore_errors=True)


def _folder() -> Path:
    return Path(tempfile.mkdtemp(dir=_ROOT[-1]))


# -- metadata CSVs -------------------------------------------------------------------------------------------
COLUMNS = st.lists(
    st.sampled_from(["file_name", "label", "split", "fold", "extra", "Unnamed: 0", " label "]), min_size=0, max_size=5
)


@st.composite
def metadata_csv(draw) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    cols = draw(COLUMNS)
    rows = draw(st.lists(st.lists(TEXT, min_size=len(cols), max_size=len(cols)), max_size=8))
    buf = io.StringIO()
    pd.DataFrame(rows, columns=cols).to_csv(buf, index=False) if cols else buf.write(draw(st.text(max_size=80)))
    return buf.getvalue().encode("utf-8")


@given(metadata_csv(), st.sampled_from([0, 3]), st.booleans(), st.booleans())
def test_metadata_csv(data, folds, multilabel, unsplit):
    csv = _folder() / "task.csv"
    csv.write_bytes(data)
    got = outcome(
        lambda: read_metadata(csv, folds=folds, fold=1, multilabel=multilabel, unsplit=unsplit), csv, (MetadataError,)
    )
    if got is None:
        return
    df, classes, _ = got
    used = df[df["split"] != ""]
    assert set(used["split"]) <= set(SPLITS) | {"none"}
    assert classes == sorted(set(classes)) or len(classes) == len(set(classes))
    assert (used["file_name"] != "").all() and (used["label"] != "").all()
    assert not used.groupby("file_name")["split"].nunique().gt(1).any()  # no file in two splits


# -- task definitions --------------------------------------------------------------------------------------
TASK_KEYS = st.sampled_from(
    ["name", "unit_sec", "folds", "folder", "metadata", "multilabel", "description", "unit_secs", "x"]
)
VALUES = st.one_of(
    TEXT, st.integers(-3, 10), st.floats(allow_nan=True), st.booleans(), st.none(), st.lists(st.integers(), max_size=2)
)


@st.composite
def yaml_text(draw, keys) -> str:
    kind = draw(st.sampled_from(["mapping", "mapping", "text", "duplicate"]))
    if kind == "text":
        return draw(st.text(max_size=120))
    d = draw(st.dictionaries(keys, VALUES, max_size=6))
    text = yaml.safe_dump(d, allow_unicode=True)
    if kind == "duplicate" and d:
        k = next(iter(d))
        text += yaml.safe_dump({k: d[k]})
    return text


@given(yaml_text(TASK_KEYS))
def test_task_definition(text):
    path = _folder() / "t.yaml"
    path.write_text(text, encoding="utf-8")
    spec = outcome(lambda: load_task_yaml(path, name=None), path, (ValueError, FileNotFoundError))
    if spec is not None:
        assert isinstance(spec, TaskSpec) and spec.unit_sec > 0 and spec.folds >= 0


# -- pipeline configs ----------------------------------------------------------------------------------------
SECTIONS = st.sampled_from(
    [
        "out",
        "seed",
        "data",
        "tasks",
        "models",
        "stats",
        "identify",
        "probe",
        "ablation",
        "gallery",
        "report",
        "stability",
        "trainer",
        "description",
        "unknown",
    ]
)


@st.composite
def pipeline_yaml(draw) -> str:
    base = {
        "tasks": {"t": {}},
        "models": {
            "m": {
                "class_path": "lightning_modules.encoders.CrepeEncoder",
                "init_args": {"capacity": "tiny", "pretrained": False},
            }
        },
        "data": {"evar_root": "/nonexistent", "batch_size": 2},
    }
    for _ in range(draw(st.integers(0, 3))):
        sec = draw(SECTIONS)
        if draw(st.booleans()) and isinstance(base.get(sec), dict):
            base[sec][draw(st.sampled_from(["batch_size", "seeds", "top_rate", "enabled", "x", "t"]))] = draw(VALUES)
        else:
            base[sec] = draw(
                st.one_of(VALUES, st.dictionaries(st.sampled_from(["a", "seeds", "t"]), VALUES, max_size=2))
            )
    text = yaml.safe_dump(base, allow_unicode=True)
    if draw(st.booleans()):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["", ":", "- ", "\n  x: 1\n", "{", "seed: 1\nseed: 2\n", "&a *a"]))
    return text


@given(pipeline_yaml())
def test_pipeline_config(text):
    path = _folder() / "pipe.yaml"
    path.write_text(text, encoding="utf-8")
    cfg = outcome(lambda: load_config(path), path, (PipelineError,))
    if cfg is not None:
        assert isinstance(cfg["seed"], int) and cfg["tasks"] and cfg["models"]


# -- WAV headers -----------------------------------------------------------------------------------------------
def _wav(frames: int = 160) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, (0.1 * np.sin(np.arange(frames) / 3)).astype(np.float32), 16000, subtype="PCM_16", format="WAV")
    return buf.getvalue()


WAV = _wav()


@given(
    st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=6),
    st.integers(0, len(WAV)),
    st.binary(max_size=16),
)
def test_wav_header(patches, keep, tail):
    data = bytearray(WAV)
    for i, b in patches:
        data[i] = b
    path = _folder() / "x.wav"
    path.write_bytes(bytes(data[:keep]) + tail)
    wav = outcome(lambda: load_audio(path, 16000), path, (AudioFileError, FileNotFoundError))
    if wav is not None:
        assert wav.dim() == 1 and wav.numel() >= 1 and torch.isfinite(wav).all()


# -- run-folder files ------------------------------------------------------------------------------------------
@given(st.one_of(st.binary(max_size=120), st.lists(TEXT, max_size=6).map(lambda x: "\n".join(x).encode("utf-8"))))
def test_classes_txt(data):
    d = _folder()
    (d / layout.CLASSES).write_bytes(data)
    got = outcome(lambda: read_classes(d), d / layout.CLASSES, (ValueError,))
    if got is not None:
        assert got and len(set(got)) == len(got) and all(c.strip() for c in got)


@given(
    st.one_of(
        st.binary(max_size=120),
        st.recursive(
            VALUES, lambda c: st.dictionaries(TEXT, c, max_size=3) | st.lists(c, max_size=3), max_leaves=8
        ).map(lambda x: __import__("json").dumps(x).encode()),
    )
)
def test_manifest_json(data):
    d = _folder()
    (d / layout.MANIFEST).write_bytes(data)
    got = outcome(lambda: read_manifest(d), d / layout.MANIFEST, (ValueError,))
    assert got is None or isinstance(got, dict)


@given(metadata_csv())
def test_index_csv(data):
    d = _folder()
    (d / layout.INDEX).write_bytes(data)
    got = outcome(lambda: read_index(d), d / layout.INDEX, (ValueError,))
    if got is not None:
        assert set(layout.INDEX_COLUMNS) <= set(got.columns) and not got["index"].duplicated().any()


def _tensor_file() -> bytes:
    buf = io.BytesIO()
    torch.save(torch.rand(2, 3, 2), buf)
    return buf.getvalue()


TENSOR = _tensor_file()


@given(
    st.lists(st.tuples(st.integers(0, len(TENSOR) - 1), st.integers(0, 255)), max_size=4), st.integers(0, len(TENSOR))
)
def test_tensor_file(patches, keep):
    data = bytearray(TENSOR)
    for i, b in patches:
        data[i] = b
    d = _folder()
    (d / layout.OVER_ZERO).write_bytes(bytes(data[:keep]))
    got = outcome(lambda: read_over_zero(d), d / layout.OVER_ZERO, (UnreadableFileError, ValueError))
    if got is not None:
        assert got.dim() == 3
