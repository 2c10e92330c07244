"""Sparse-autoencoder features as units: an encoder whose unit sites are SAE latents.

One concept of **unit site**: a module path of the encoder whose forward output holds units on
``channel_axis``. For neurons that is the activation module itself; for features it is the ``latents``
submodule of an :class:`SAESplice` put in place of the neuron site's module. Every hook of the project
(counting, top clips, ablation, activation maps) registers on ``encoder.get_submodule(site)`` and reads
``encoder.positions(site, output)``; nothing else changes, so features go through exactly the code that
neurons go through.

The splice at a site with output ``y`` (neurons on ``channel_axis``)::

    z   = sae.encode(rows of y)            latents, laid out like y with d_sae channels
    z'  = latents(z)                       forward hooks observe z (counting) or replace it (ablation)
    out = y + (z' - z) @ W_dec / s         = decode(z') + (y - decode(z)): the reconstruction of the
                                             edited latents plus the SAE's error term

When no hook replaces ``z`` the output *is* ``y`` (the same tensor object); when a hook returns latents
equal to ``z`` the added term is exactly zero. Either way the encoder's forward is the original one bit for
bit, and a zeroed latent removes exactly its decoder direction times its activation from the site output
(``s`` is the SAE's ``input_scale``).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from torch import Tensor, nn

from analysis.runs.identity import weights_sha256

from ..sparse_autoencoder import SparseAutoencoder
from .base import AudioEncoder, Positions, site_view

#: Name of the submodule of a splice whose output holds the latents (the feature site is ``<site>.latents``).
LATENTS = "latents"


def unit_kind(sites: list[str]) -> str:
    """``"feature"`` when every site is a latents site of a splice, else ``"neuron"``.

    >>> unit_kind(["encoder.blocks.5.relu.latents"]), unit_kind(["blocks.5.relu"])
    ('feature', 'neuron')
    """
    return "feature" if sites and all(str(s).endswith(f".{LATENTS}") for s in sites) else "neuron"


def unview(rows: Tensor, like: Tensor, channel_axis: int) -> Tensor:
    """Inverse of :func:`site_view` for ``[R, P, D]`` rows: the layout of ``like`` with D channels.

    >>> import torch; y = torch.randn(2, 3, 5, 1)
    >>> bool(torch.equal(unview(site_view(y, 1), y, 1), y))
    True
    """
    moved = list(like.movedim(channel_axis, -1).shape)
    moved[-1] = rows.shape[-1]
    return rows.reshape(moved).movedim(-1, channel_axis)


class SAESplice(nn.Module):
    """``inner`` (the neuron site's module) followed by an SAE whose latents are a hookable site
    (``self.latents``), and whose edits are written back with the error term (module docstring)."""

    def __init__(self, inner: nn.Module, sae: SparseAutoencoder, channel_axis: int) -> None:
        super().__init__()
        self.inner = inner
        self.sae = sae
        self.latents = nn.Identity()
        self.channel_axis = channel_axis
        #: False: the output is the SAE's reconstruction of the (edited) latents alone, the error term
        #: dropped (how much of the model the features carry; :meth:`FeatureEncoder.reconstruction_at`).
        self.error_term = True

    def forward(self, *args, **kwargs) -> Tensor:
        y = self.inner(*args, **kwargs)
        v = site_view(y, self.channel_axis)  # [R, P, N]
        r, p, n = v.shape
        z = unview(self.sae.encode(v.reshape(r * p, n)).reshape(r, p, -1), y, self.channel_axis)
        edited = self.latents(z)
        if not self.error_term:
            recon = self.sae.decode(site_view(edited, self.channel_axis).reshape(r * p, -1)).reshape(r, p, n)
            return unview(recon, y, self.channel_axis).to(y.dtype)
        if edited is z:
            return y
        dz = site_view(edited, self.channel_axis) - site_view(z, self.channel_axis)  # [R, P, d_sae]
        delta = self.sae.decode_delta(dz.reshape(r * p, -1)).reshape(r, p, n)
        return y + unview(delta, y, self.channel_axis).to(y.dtype)


class FeatureEncoder(AudioEncoder):
    """``encoder`` with an SAE spliced at one or more of its neuron sites; its unit sites are the SAEs'
    latents (``encoder.<site>.latents``, ``d_sae`` units each). The clip embedding and every other fact
    are the wrapped encoder's (the splice leaves its forward unchanged).

    Args:
        encoder: the base encoder (its spec, in configs).
        saes: ``sae.pt`` files (or SAE folders), one per spliced site, trained on ``encoder``'s sites.
        name: output-folder suffix; default ``<encoder.name>_sae``.
    """

    def __init__(self, encoder: AudioEncoder, saes: list[str], name: Optional[str] = None) -> None:
        super().__init__()
        if not saes:
            raise ValueError("FeatureEncoder needs at least one SAE file")
        self.encoder = encoder
        for fact in ("sample_rate", "embed_dim", "channel_axis", "frame_seconds", "frames_per_position", "n_bands"):
            setattr(self, fact, getattr(encoder, fact))
        self.name = name or f"{encoder.name}_sae"
        self.sae_paths = [str(p) for p in saes]
        self.base_sites: list[str] = []
        sites, widths = [], []
        for path in self.sae_paths:
            sae, cfg = SparseAutoencoder.from_file(path)
            site = str(cfg["site"])
            self._check(path, site, sae, cfg)
            parent_path, _, leaf = site.rpartition(".")
            parent = encoder.get_submodule(parent_path) if parent_path else encoder
            setattr(parent, leaf, SAESplice(encoder.get_submodule(site), sae, encoder.channel_axis))
            self.base_sites.append(site)
            sites.append(f"encoder.{site}.{LATENTS}")
            widths.append(sae.d_sae)
        self.neuron_sites = sites
        self.site_neurons = widths
        # identity (analysis.runs.identity): the SAE weights, the base model recorded in each sae.pt
        self.checkpoint_path = Path(self.sae_paths[0]) if len(self.sae_paths) == 1 else None
        self.eval()

    def _check(self, path: str, site: str, sae: SparseAutoencoder, cfg: dict) -> None:
        enc = self.encoder
        if site in self.base_sites:
            raise ValueError(f"FeatureEncoder: two SAE files for site {site!r} ({path})")
        if site not in list(enc.neuron_sites):
            raise ValueError(
                f"{path}: SAE site {site!r} is not a neuron site of {type(enc).__name__} "
                f"(sites: {list(enc.neuron_sites)})"
            )
        n = int(enc.site_neurons[list(enc.neuron_sites).index(site)])
        if sae.d_in != n:
            raise ValueError(f"{path}: SAE has d_in={sae.d_in} but site {site!r} has {n} neurons")
        want = cfg.get("encoder_name")
        if want is not None and want != enc.name:
            raise ValueError(f"{path}: SAE was trained on encoder {want!r}, not on {enc.name!r}")
        sha = cfg.get("encoder_sha256")
        if sha is not None and sha != weights_sha256(enc):
            raise ValueError(
                f"{path}: SAE was trained on encoder weights with sha256 {sha}, but {enc.name!r} has "
                f"{weights_sha256(enc)}"
            )

    @contextmanager
    def reconstruction_at(self, site: str) -> Iterator[None]:
        """Within the block, the splice at ``site`` (a spliced neuron site, or its feature site) outputs
        the SAE's reconstruction alone, without the error term: the encoder as if that site held only what
        the features explain. Restored on exit, also after an exception."""
        splice = self.encoder.get_submodule(self.base_site(site))
        if not isinstance(splice, SAESplice):
            raise ValueError(f"{site!r} is not a spliced site of {self.name!r} (sites: {self.base_sites})")
        splice.error_term = False
        try:
            yield
        finally:
            splice.error_term = True

    def base_site(self, site: str) -> str:
        """The neuron site a feature site is spliced at (``encoder.<s>.latents`` -> ``s``)."""
        return self.base_sites[self.neuron_sites.index(site)] if site in self.neuron_sites else site

    def positions(self, site: str, output: Tensor) -> Positions:
        return self.encoder.positions(self.base_site(site), output)

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        return self.encoder(audio, lengths)
