"""Renamed pipeline keys (``identify.mode`` -> ``identify.semantics``, ``ablation.mode`` ->
``ablation.replacement``, ``ablation.strategy`` -> ``ablation.batching``): the old name still works for one
release, with a FutureWarning naming the file and both keys, and resolves to the same config as the new name;
giving both is an error."""

from __future__ import annotations

import pytest

from analysis.app.config import PipelineError, load_config
from analysis.app.config_renames import RENAMED, owner_kwargs

from _bad_inputs import pipeline_config, write_config

# a valid value of every renamed key (not its default, so the resolved config shows it was read)
VALUES = {("identify", "mode"): "lape", ("ablation", "mode"): "mean", ("ablation", "strategy"): "loop"}


def _config_with(synthetic_root, tmp_path, section: str, key: str, value, name: str):
    cfg = pipeline_config(synthetic_root, tmp_path / "out")
    cfg[section] = {**cfg.get(section, {}), key: value}
    return write_config(cfg, tmp_path / name)


def test_every_renamed_key_has_a_value_here():
    assert set(VALUES) == set(RENAMED)


@pytest.mark.parametrize("section, old", sorted(RENAMED), ids=lambda x: str(x))
def test_old_name_warns_and_resolves_like_the_new_one(synthetic_root, tmp_path, section, old):
    new = RENAMED[(section, old)]
    value = VALUES[(section, old)]
    old_path = _config_with(synthetic_root, tmp_path, section, old, value, "old.yaml")
    new_path = _config_with(synthetic_root, tmp_path, section, new, value, "new.yaml")
    with pytest.warns(FutureWarning) as record:
        via_old = load_config(old_path)
    text = " ".join(str(w.message) for w in record)
    assert str(old_path) in text and f"{section}.{old}" in text and f"{section}.{new}" in text
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        via_new = load_config(new_path)
    assert via_old[section][new] == value
    assert via_old[section] == via_new[section]
    assert old not in via_new[section]
    # the stage hands the owner its own parameter name
    assert owner_kwargs(section, via_new[section])[old] == value


@pytest.mark.parametrize("section, old", sorted(RENAMED), ids=lambda x: str(x))
def test_old_and_new_name_together_is_an_error(synthetic_root, tmp_path, section, old):
    new = RENAMED[(section, old)]
    value = VALUES[(section, old)]
    cfg = pipeline_config(synthetic_root, tmp_path / "out")
    cfg[section] = {**cfg.get(section, {}), old: value, new: value}
    path = write_config(cfg, tmp_path / "both.yaml")
    with pytest.raises(PipelineError, match=f"{section}.{old} and {section}.{new} are both given") as e:
        load_config(path)
    assert str(path) in str(e.value)


# -- encoder arguments renamed: M2D's time ``pooling`` -> ``frame_pooling``, the timm ViT's token ``pooling``
# -> ``token_pooling`` (one name, two meanings and two sets of values before)
ENCODER_RENAMES = [
    (
        "lightning_modules.encoders.M2DEncoder",
        {"width": 64, "depth": 2, "num_heads": 4, "seed": 0},
        "frame_pooling",
        "valid",
    ),
    (
        "lightning_modules.encoders.TimmViTEncoder",
        {
            "model_name": "vit_tiny_patch16_224",
            "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 4},
            "seed": 0,
        },
        "token_pooling",
        "cls",
    ),
]


@pytest.mark.parametrize("class_path, args, new, value", ENCODER_RENAMES, ids=["m2d", "timm_vit"])
def test_encoder_pooling_old_name_warns_and_embeds_like_the_new(class_path, args, new, value):
    import warnings

    import torch

    from analysis.app.specs import instantiate

    audio = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 7000])  # the second clip part padding: 'valid' / 'cls' pool differently
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        via_new = instantiate({"class_path": class_path, "init_args": {**args, new: value}}, "models.x").eval()
        default = instantiate({"class_path": class_path, "init_args": args}, "models.x").eval()
    with pytest.warns(FutureWarning, match=f"'pooling' is renamed '{new}'"):
        via_old = instantiate({"class_path": class_path, "init_args": {**args, "pooling": value}}, "models.x").eval()
    with torch.no_grad():
        e_new, e_old, e_default = via_new(audio, lengths), via_old(audio, lengths), default(audio, lengths)
    assert torch.equal(e_new, e_old)
    assert not torch.allclose(e_new, e_default)  # the option changes the embedding: the old name is not ignored
    with pytest.raises(ValueError, match=f"give '{new}' only"):
        instantiate({"class_path": class_path, "init_args": {**args, new: value, "pooling": "mean"}}, "models.x")


@pytest.mark.parametrize("class_path, args, new, value", ENCODER_RENAMES, ids=["m2d", "timm_vit"])
def test_encoder_pooling_values_are_checked_against_their_literal(class_path, args, new, value):
    from analysis.app.specs import check_encoder

    with pytest.raises(ValueError, match=new):
        check_encoder({"class_path": class_path, "init_args": {**args, new: "median"}}, "models.x")
