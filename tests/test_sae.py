"""Sparse autoencoders: TopK keeps exactly the k largest per row, decoder rows stay unit-norm while training,
the splice with nothing zeroed is the encoder's forward bit for bit, a zeroed latent removes exactly its
decoder direction, and the counting callback counts latents exactly as brute force (one process here;
two processes in ``test_sae_ddp.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from _counting import ToyEncoder, brute_force
from _sae_toy import FeatureToyExtractor, sae_file
from _stats_toy import CLASSES, ToyClips, ToyDataModule
from torch.utils.data import DataLoader

from analysis import sae as A
from analysis.runs.read import read_sae, read_stats
from callbacks import ActivationStatsCallback
from callbacks.hooks import SiteHooks
from lightning_modules import SAETrainer, SparseAutoencoder
from lightning_modules.encoders import CrepeEncoder, FeatureEncoder


def test_topk_keeps_exactly_the_k_largest_per_row() -> None:
    g = torch.Generator().manual_seed(0)
    for k in (1, 3, 7):
        pre = torch.randn(50, 16, generator=g) + 5.0  # all positive: the ReLU keeps every chosen entry
        z = A.topk_activation(pre, k)
        assert ((z != 0).sum(1) == k).all()
        for r in range(pre.shape[0]):  # brute force: the k largest by sorting
            order = sorted(range(16), key=lambda j: -float(pre[r, j]))[:k]
            assert sorted(torch.nonzero(z[r]).flatten().tolist()) == sorted(order)
            assert torch.equal(z[r, order], pre[r, order])
    mixed = torch.tensor([[2.0, -1.0, -3.0, 0.5]])
    assert A.topk_activation(mixed, 3).tolist() == [[2.0, 0.0, 0.0, 0.5]]  # negative kept ones -> 0 (ReLU)


def test_fve_against_hand_sums() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]])
    x_hat = x + torch.tensor([[0.5, 0.0], [0.0, -1.0], [0.0, 0.0]])
    v = A.VarianceSums(2)
    v.add(x[:2], x_hat[:2])
    v.add(x[2:], x_hat[2:])  # two batches merge exactly
    sst = ((x - x.mean(0)) ** 2).sum()
    assert v.fve() == pytest.approx(1 - 1.25 / float(sst))


class ToySAEData(ToyDataModule):
    def __init__(self, n: int = 24, batch_size: int = 6) -> None:
        super().__init__(n=n, batch_size=batch_size, labels=[i % 3 for i in range(n)])

    def _loader(self) -> DataLoader:
        return DataLoader(ToyClips(self.audio, self.lengths, self.labels, self.splits), batch_size=self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader()

    def val_dataloader(self) -> DataLoader:
        return self._loader()


def _fit(tmp_path: Path, **kw: Any) -> SAETrainer:
    module = SAETrainer(ToyEncoder(), "blocks.0.act", d_sae=12, k=3, dead_feature_window=2, seed=1, **kw)
    tr = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    tr.fit(module, datamodule=ToySAEData())
    return module


def test_training_keeps_decoder_rows_unit_norm_and_learns(tmp_path: Path) -> None:
    before = SparseAutoencoder(6, 12, "topk", 3, seed=1)
    module = _fit(tmp_path, steps_per_batch=2, activation_cache=str(tmp_path / "cache"))
    norms = module.sae.W_dec.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)
    assert not torch.equal(module.sae.W_dec, before.W_dec)  # it trained
    m = module.metrics
    assert 0 <= m["dead_fraction"] <= 1 and m["l0"] <= 3 + 1e-9 and m["fve"] > 0
    assert (tmp_path / "cache" / "rank0").is_dir()  # the first epoch cached its rows
    # the held-out metrics equal a direct computation on the validation rows
    rows = torch.cat([module.site_activations(b) for b in ToySAEData().val_dataloader()])
    x_hat, z, _ = module.sae(rows)
    v = A.VarianceSums(6)
    v.add(rows, x_hat)
    assert m["fve"] == pytest.approx(v.fve(), rel=1e-9)
    assert m["l0"] == pytest.approx(float(A.l0(z)))
    assert m["dead_fraction"] == pytest.approx(float(((z > 0).sum(0) == 0).double().mean()))


def test_standard_architecture_trains(tmp_path: Path) -> None:
    module = _fit(tmp_path, architecture="standard", l1_coefficient=1e-2)
    assert module.sae.architecture == "standard" and module.metrics["fve"] == module.metrics["fve"]


@pytest.mark.parametrize("which", ["toy", "crepe"])
def test_splice_with_nothing_zeroed_is_the_forward_bit_for_bit(tmp_path: Path, which: str) -> None:
    if which == "toy":
        base, site = ToyEncoder(), "blocks.1.act"
        audio = torch.randn(3, 40)
    else:
        base, site = CrepeEncoder("tiny", pretrained=False, hop_ms=50.0, embedding_layer=6), "blocks.4.relu"
        audio = torch.randn(2, 3200)
    d_in = base.site_neurons[base.neuron_sites.index(site)]
    ref = base(audio)
    path = sae_file(tmp_path, site, d_in, 2 * d_in, 4, base.name)
    feat = FeatureEncoder(base, [str(path)])
    assert feat.neuron_sites == [f"encoder.{site}.latents"] and feat.site_neurons == [2 * d_in]
    assert torch.equal(feat(audio), ref)  # no hook: the splice returns the site output itself
    with SiteHooks(feat, [(feat.neuron_sites[0], lambda m, i, o: o.clone())]):
        assert torch.equal(feat(audio), ref)  # latents replaced by equal ones: error term exact
    with SiteHooks(feat, [(feat.neuron_sites[0], lambda m, i, o: o * 0)]):
        assert not torch.equal(feat(audio), ref)


def test_zeroing_a_latent_removes_its_decoder_direction(tmp_path: Path) -> None:
    base = ToyEncoder()
    path = sae_file(tmp_path, "blocks.0.act", 6, 10, 3, base.name)
    feat = FeatureEncoder(base, [str(path)])
    splice = feat.get_submodule("encoder.blocks.0.act")
    x = torch.randn(2, 5, 6)  # the GELU's input [R, P, 6]
    y = splice.inner(x)
    z = splice.sae.encode(y.reshape(-1, 6))
    j = int(z.sum(0).argmax())  # a latent that fires
    with SiteHooks(feat, [(feat.neuron_sites[0], lambda m, i, o: o.index_fill(-1, torch.tensor([j]), 0.0))]):
        out = splice(x)
    oracle = y - (z[:, j : j + 1] * splice.sae.W_dec[j]).reshape(2, 5, 6)  # y - z_j * d_j
    assert torch.allclose(out, oracle, atol=1e-6)


def test_reconstruction_at_a_site_drops_the_error_term_and_is_restored(tmp_path: Path) -> None:
    base = ToyEncoder()
    path = sae_file(tmp_path, "blocks.0.act", 6, 10, 3, base.name)
    feat = FeatureEncoder(base, [str(path)])
    splice = feat.get_submodule("encoder.blocks.0.act")
    x = torch.randn(2, 5, 6)
    y = splice.inner(x)
    oracle = splice.sae.decode(splice.sae.encode(y.reshape(-1, 6))).reshape(2, 5, 6)  # x_hat alone
    audio = torch.randn(3, 40)
    ref = feat(audio)
    with feat.reconstruction_at(feat.neuron_sites[0]):  # the feature site's name
        assert torch.allclose(splice(x), oracle, atol=1e-6)
        assert not torch.allclose(splice(x), y, atol=1e-3)
        changed = feat(audio)
    assert not torch.equal(changed, ref)
    assert torch.equal(feat(audio), ref) and torch.equal(splice(x), y)  # restored on exit
    with pytest.raises(RuntimeError), feat.reconstruction_at("blocks.0.act"):  # the base site's name
        raise RuntimeError("inside")
    assert torch.equal(splice(x), y)  # restored after an exception too
    with pytest.raises(ValueError, match="not a spliced site"):
        with feat.reconstruction_at("blocks.1.act"):
            pass


def test_latent_counts_equal_brute_force(tmp_path: Path) -> None:
    path = sae_file(tmp_path, "blocks.0.act", 6, 10, 3, "toy")
    module = FeatureToyExtractor(str(path))
    dm = ToyDataModule(n=7, batch_size=2)
    cb = ActivationStatsCallback(out_dir=str(tmp_path / "out"), top_k=2)
    tr = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[cb],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    tr.predict(module, datamodule=dm, return_predictions=False)
    stats = read_stats(tmp_path / "out" / "toy_task_toy_sae")
    assert stats["sites"] == ["encoder.blocks.0.act.latents"] and stats["site_neurons"] == [10]
    # oracle: latents computed independently from the recorded neuron activations
    enc = module.encoder.encoder
    splice = enc.get_submodule("blocks.0.act")
    record: list = []
    enc.record = record
    enc(dm.audio, dm.lengths)
    latents = [
        (0, splice.sae.encode(a.reshape(-1, 6)).reshape(*a.shape[:2], 10), pos) for l, a, pos in record if l == 0
    ]
    want = brute_force(latents, dm.labels, len(CLASSES), "all", [10])
    assert torch.equal(stats["count"], want["count"])
    assert torch.equal(stats["n_tokens"], want["n_tokens"])


def test_bad_sae_files_are_refused(tmp_path: Path) -> None:
    path = sae_file(tmp_path, "blocks.0.act", 6, 10, 3, "toy")
    d = read_sae(path)
    d["W_dec"] = d["W_dec"][:, :5]
    torch.save(d, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt.*W_dec"):
        read_sae(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a neuron site"):
        FeatureEncoder(ToyEncoder(), [str(sae_file(tmp_path / "x", "blocks.9.act", 6, 10, 3, "toy"))])
    with pytest.raises(ValueError, match="trained on encoder 'other'"):
        FeatureEncoder(ToyEncoder(), [str(sae_file(tmp_path / "y", "blocks.0.act", 6, 10, 3, "other"))])
    cp = CrepeEncoder("tiny", pretrained=True)
    with pytest.raises(ValueError, match="encoder weights with sha256 0000"):
        FeatureEncoder(cp, [str(sae_file(tmp_path / "z", "blocks.0.relu", 128, 10, 3, cp.name, sha="0" * 64))])
    with pytest.raises(ValueError, match="k=11"):
        SparseAutoencoder(6, 10, "topk", 11)
