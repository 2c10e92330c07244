"""Test helper: a :class:`~lightning_modules.FeatureExtractor` built from one of the shipped model configs
(``configs/model/<config>``) with optional CLI overrides, the way ``train.py`` builds it (jsonargparse)."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser

from lightning_modules import FeatureExtractor

ROOT = Path(__file__).resolve().parents[1]


def build_model(config: str, *overrides: str) -> FeatureExtractor:
    """``configs/model/<config>`` parsed and instantiated, e.g.
    ``build_model("hf_wav2vec2.yaml", "--model.init_args.encoder.init_args.model_path=...")``."""
    p = ArgumentParser()
    p.add_subclass_arguments(FeatureExtractor, "model")
    ns = p.parse_args([f"--model={ROOT / 'configs' / 'model' / config}", *overrides])
    return p.instantiate_classes(ns).model
