"""Test helper: a toy SAE file (:func:`sae_file`, a seeded top-k SAE written like the ``sae`` stage writes
it) and :class:`FeatureToyExtractor` (the counting toy with that SAE spliced in; the DDP config names it by
class path)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from _counting import ToyEncoder
from analysis.runs.write import write_sae
from lightning_modules import SparseAutoencoder
from lightning_modules.encoders import FeatureEncoder


def sae_file(
    tmp_path: Path, site: str, d_in: int, d_sae: int, k: int, name: str, seed: int = 3, sha: str | None = None
) -> Path:
    """A seeded top-k SAE ``d_in -> d_sae`` for ``site`` of encoder ``name`` written to ``tmp_path/sae``."""
    sae = SparseAutoencoder(d_in, d_sae, "topk", k, seed=seed)
    with torch.no_grad():
        sae.b_enc.add_(0.3)  # some latents fire on every row
    metrics = {
        "site": site,
        "d_sae": d_sae,
        "k": k,
        "fve": 0.0,
        "l0": 0.0,
        "dead_fraction": 0.0,
        "mse": 0.0,
        "architecture": "topk",
        "rows": 0,
        "train_rows": 0,
        "steps": 0,
        "seconds": 0.0,
    }
    write_sae(tmp_path / "sae", sae.file_dict({"site": site, "encoder_name": name, "encoder_sha256": sha}), metrics)
    return tmp_path / "sae"


class FeatureToyExtractor(L.LightningModule):
    """ToyEncoder with an SAE spliced at ``blocks.0.act`` (for the counting tests, also under DDP)."""

    def __init__(self, sae: str) -> None:
        super().__init__()
        self.encoder = FeatureEncoder(ToyEncoder(), [sae]).eval()

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        emb = self.encoder(batch["audio"], batch["length"])
        return {"embedding": emb, "label": batch["label"], "index": batch["index"], "split": batch["split"]}
