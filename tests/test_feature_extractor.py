"""FeatureExtractor: frozen encoder run by trainer.predict; outputs embeddings with the batch's
label / index / split."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_modules import FeatureExtractor
from lightning_modules.encoders import CrepeEncoder


def _collate(items):
    return {
        "audio": torch.stack([it["audio"] for it in items]),
        "length": torch.tensor([it["length"] for it in items], dtype=torch.int64),
        "label": torch.tensor([it["label"] for it in items], dtype=torch.int64),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.int64),
        "split": [it["split"] for it in items],
        "file_name": [f"clip{it['index']}.wav" for it in items],
    }


@pytest.fixture
def clips():
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(5):
        n = 1600 if i != 3 else 700
        audio = torch.zeros(1600)
        audio[:n] = torch.randn(n, generator=g)
        items.append(
            {"audio": audio, "length": n, "label": i % 2, "index": 10 + i, "split": "train" if i < 3 else "test"}
        )
    return items


def test_predict_returns_embeddings_labels_indices_splits(clips, trainer_kwargs):
    enc = CrepeEncoder("tiny", pretrained=False, seed=0)
    model = FeatureExtractor(enc)
    trainer = pl.Trainer(**trainer_kwargs)
    outs = trainer.predict(model, DataLoader(clips, batch_size=2, collate_fn=_collate))
    assert len(outs) == 3
    emb = torch.cat([o["embedding"] for o in outs])
    assert emb.shape == (5, enc.embed_dim)
    assert torch.equal(torch.cat([o["label"] for o in outs]), torch.tensor([0, 1, 0, 1, 0]))
    assert torch.equal(torch.cat([o["index"] for o in outs]), torch.arange(10, 15))
    assert sum((o["split"] for o in outs), []) == ["train"] * 3 + ["test"] * 2
    # the same numbers as calling the encoder directly with the lengths
    batch = _collate(clips)
    with torch.no_grad():
        direct = enc(batch["audio"], batch["length"])
    torch.testing.assert_close(emb, direct, atol=1e-5, rtol=1e-5)
    # lengths are honoured: clip 3 (700 valid samples) differs from its no-length embedding
    with torch.no_grad():
        assert not torch.allclose(enc(batch["audio"][3:4]), emb[3:4], atol=1e-4)


def test_encoder_is_frozen_and_stays_in_eval_mode():
    model = FeatureExtractor(CrepeEncoder("tiny", pretrained=False))
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert model.training and not model.encoder.training
    assert all(not m.training for m in model.encoder.modules())
    assert model.configure_optimizers() is None


def test_batch_without_optional_keys_and_bad_inputs():
    model = FeatureExtractor(CrepeEncoder("tiny", pretrained=False))
    with torch.no_grad():
        out = model.predict_step({"audio": torch.randn(2, 1600)}, 0)
    assert out["embedding"].shape == (2, 256) and out["label"] is None and out["split"] is None
    with pytest.raises(KeyError, match="audio"):
        model.predict_step({"wave": torch.randn(2, 1600)}, 0)
    with pytest.raises(TypeError, match="AudioEncoder"):
        FeatureExtractor(torch.nn.Linear(2, 2))
