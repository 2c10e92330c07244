"""The planted toy of the probe/ablation tests (``tests/_ablation_toy.py``) is what it claims: site-0 neuron k
fires for tone class k only, the dead neurons never fire, the embedding has its declared width."""

from __future__ import annotations

import torch

from _ablation_toy import ToyEncoder, make_audio


def test_toy_planted_neurons_fire_only_for_their_class():
    enc = ToyEncoder()
    audio, labels = make_audio(0, 3)
    acts = {}
    h = enc.get_submodule("block0.act").register_forward_hook(lambda m, i, o: acts.__setitem__(0, o))
    with torch.no_grad():
        enc(audio)
    h.remove()
    fire = (acts[0] > 0).float().mean(-1)  # [N, 8] share of frames firing
    for k in range(4):
        assert (fire[labels == k, k] > 0.9).all()
        assert (fire[labels != k, k] < 0.2).all()
    assert (fire[:, 6:] == 0).all()
    assert enc(audio).shape == (audio.shape[0], ToyEncoder.embed_dim)
