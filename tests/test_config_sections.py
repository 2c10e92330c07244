"""The loaded pipeline config is typed: every section is an instance of its schema's type (made from the
section's parser), whose fields are the owners' parameters with the owners' type hints; read-only; a typo is an
error naming the nearest key; written (JSON fingerprints, YAML, pickle) exactly as the plain values were."""

from __future__ import annotations

import copy
import json
import pickle
import typing

import pytest
import yaml

from analysis.app.config import PipelineConfig, Section, load_config
from analysis.app.config_schema import NESTED_SECTIONS, SECTIONS
from analysis.app.identify import identify_run
from analysis.app.pipeline import Pipeline
from analysis.app.summary import write_summary
from callbacks import ActivationStatsCallback

from _bad_inputs import pipeline_config, write_config


@pytest.fixture
def cfg(synthetic_root, tmp_path) -> PipelineConfig:
    c = pipeline_config(synthetic_root, tmp_path / "out")
    c["data"]["synthetic"] = {"clips_per_class": 3}
    return load_config(write_config(c, tmp_path / "pipe.yaml"))


def test_every_section_is_its_schema_type_with_the_keys_of_its_parser(cfg):
    assert isinstance(cfg, PipelineConfig)
    for name, make in SECTIONS.items():
        section = cfg[name]
        assert isinstance(section, Section) and type(section).section == name
        assert getattr(cfg, name) is section
        keys = {a.dest for a in make()._actions if getattr(a, "_typehint", None) is not None}
        keys = {k for k in keys if not k.endswith(".help")}  # jsonargparse's help of class-typed keys
        assert set(type(section).fields) == keys == set(section), name
    assert type(cfg.data.synthetic).section == "data.synthetic"
    assert all(type(t).section == "tasks.<task>" for t in cfg.tasks.values())
    assert set(NESTED_SECTIONS) == {"data.synthetic", "data.soundfont", "tasks.<task>"}
    assert cfg.config_path == cfg["_config_path"] and cfg.config_path.endswith("pipe.yaml")


def test_field_types_are_the_owners_type_hints(cfg):
    """Independent of the parser: the hints of the owners' own signatures."""
    hints = typing.get_type_hints(identify_run)
    fields = type(cfg.identify).fields
    for key in ("top_rate", "filter_rate", "activation_bar_ratio"):
        assert fields[key] == hints[key]
    assert fields["semantics"] == hints["mode"]  # renamed key, the owner's type
    assert type(cfg.summary).fields["correction"] == typing.get_type_hints(write_summary)["correction"]
    init = typing.get_type_hints(ActivationStatsCallback.__init__)
    assert type(cfg.stats).fields["tokens"] == init["tokens"] and typing.get_origin(init["tokens"]) is typing.Literal
    assert cfg.identify.top_rate == cfg["identify"]["top_rate"]


def test_a_section_holds_exactly_its_keys_and_a_typo_names_the_nearest(cfg):
    cfg.stability.replicates = 3  # a notebook's override of a field, as an attribute or a key
    cfg["stability"]["sweep"] = False
    cfg.probe.update(seeds=[1, 2])
    assert (cfg.stability["replicates"], cfg.stability.sweep, cfg.probe.seeds) == (3, False, [1, 2])
    with pytest.raises(AttributeError, match="no key 'top_rat' \\(did you mean 'top_rate'\\?\\)"):
        _ = cfg.identify.top_rat
    for typo in (lambda: setattr(cfg.stability, "replicate", 2), lambda: cfg.probe.update(seed=[1])):
        with pytest.raises(KeyError, match="did you mean"):
            typo()
    with pytest.raises(KeyError, match="no key 'trainr'"):
        cfg["trainr"] = {}
    for remove in (lambda: cfg.identify.pop("top_rate"), lambda: cfg.identify.clear(), lambda: cfg.pop("seed")):
        with pytest.raises(TypeError, match="keeps every key"):
            remove()
    assert set(cfg.identify) == set(type(cfg.identify).fields)
    assert not hasattr(cfg.identify, "nothing_like_it")


def test_written_exactly_as_the_plain_values(cfg):
    plain = json.loads(json.dumps(cfg, default=str))
    assert type(plain["identify"]) is dict
    # the stages' fingerprints (json, sorted keys) are those of the plain config: resumed runs stay resumed
    assert json.dumps(cfg, sort_keys=True, default=str) == json.dumps(plain, sort_keys=True, default=str)
    assert yaml.safe_load(yaml.safe_dump(cfg)) == plain
    assert yaml.safe_load(yaml.safe_dump({"trainer": cfg.trainer})) == {"trainer": plain["trainer"]}
    for again in (pickle.loads(pickle.dumps(cfg)), copy.deepcopy(cfg)):
        assert again == cfg and type(again) is PipelineConfig
        assert type(again.identify) is type(cfg.identify) and type(again.tasks["synth_octave_sine"]) is type(
            cfg.tasks["synth_octave_sine"]
        )


def test_keys_named_like_dict_methods_are_known(cfg):
    """Such a key reads by subscription only (the attribute is the method): the list is short and checked."""
    clash = {name: set(type(cfg[name]).fields) & set(dir(dict)) for name in SECTIONS}
    assert {k: v for k, v in clash.items() if v} == {"tuning": {"values"}}
    assert callable(cfg.tuning.values) and cfg.tuning["values"] is None


def test_the_pipeline_takes_only_a_loaded_config(cfg):
    with pytest.raises(TypeError, match="load_config"):
        Pipeline(dict(cfg))
