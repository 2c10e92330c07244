"""Safe checkpoint loading helpers (weights_only + argparse.Namespace only, key checks)."""

from __future__ import annotations

import argparse

import pytest
import torch

from lightning_modules.encoders.checkpoints import (
    CheckpointKeyError,
    UnsafeCheckpointError,
    check_keys,
    extract_state_dict,
    load_checkpoint_file,
    strip_prefix,
)


class Payload:
    def __init__(self) -> None:
        self.value = 7


def test_namespace_allowed_arbitrary_object_refused(tmp_path):
    ok = tmp_path / "train.pth"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 3, "args": argparse.Namespace(lr=0.1)}, ok)
    obj = load_checkpoint_file(ok)
    assert obj["args"].lr == 0.1 and torch.equal(extract_state_dict(obj, ok)["w"], torch.ones(2))

    bad = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(2)}, "x": Payload()}, bad)
    with pytest.raises(UnsafeCheckpointError) as e:
        load_checkpoint_file(bad)
    assert str(bad) in str(e.value) and "Payload" in str(e.value) and "trust_checkpoint" in str(e.value)
    with pytest.warns(UserWarning):
        obj = load_checkpoint_file(bad, trust_checkpoint=True)
    assert obj["x"].value == 7


def test_missing_file_and_non_dict(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint_file(tmp_path / "nope.pth")
    p = tmp_path / "t.pth"
    torch.save(torch.zeros(3), p)
    with pytest.raises(TypeError, match="t.pth"):
        extract_state_dict(load_checkpoint_file(p), p)
    torch.save({"a": torch.zeros(1), "b": 3}, p)
    with pytest.raises(TypeError, match="'b'"):
        extract_state_dict(load_checkpoint_file(p), p)


def test_check_keys_lists_everything():
    with pytest.raises(CheckpointKeyError) as e:
        check_keys(["a", "b", "c"], ["a", "z"], "f.pth", optional=["c"])
    msg = str(e.value)
    assert "f.pth" in msg and "missing keys (1): b" in msg and "unexpected keys (1): z" in msg
    check_keys(["a", "b"], ["b", "a"], "f.pth")  # equal sets pass
    kept, others = strip_prefix({"m.a": 1, "m.b": 2, "h.c": 3}, "m.")
    assert kept == {"a": 1, "b": 2} and others == ["h.c"]
