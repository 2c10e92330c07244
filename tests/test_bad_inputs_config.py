"""Bad inputs at the pipeline config: types, ranges, unknown keys at every level, refused before any stage with
the file and the key path."""

from __future__ import annotations

import pytest

from analysis.app.cli import main as cli_main
from analysis.app.config import PipelineError, load_config
from analysis.runs import layout

from _bad_inputs import MODEL, TASK, fake_run, pipeline_config, run_pipeline, write_config

# ============================================================================ 3. configs
CONFIG_CASES = [
    ({"tasks": {TASK: {"top_rate": -0.05}}}, f"tasks.{TASK}.top_rate: top_rate must be in (0, 1]"),
    ({"tasks": {TASK: {"top_rate": 0}}}, f"tasks.{TASK}.top_rate: top_rate must be in (0, 1]"),
    ({"identify": {"top_rate": 1.5}}, "identify.top_rate: top_rate must be in (0, 1]"),
    ({"identify": {"top_rate": "abc"}}, "identify.top_rate: Expected a <class 'float'> (got 'abc')"),
    ({"identify": {"filter_rate": 1.0}}, "identify.filter_rate: filter_rate must be in (0, 1)"),
    (
        {"identify": {"activation_bar_ratio": 0}},
        "identify.activation_bar_ratio: activation_bar_ratio must be in (0, 1)",
    ),
    ({"tasks": {TASK: {"top_rat": 0.1}}}, f"unknown key(s) ['top_rat'] in 'tasks.{TASK}'"),
    (
        {"stats": {"identify_splits": "train"}},
        "stats.identify_splits: Expected a typing.Literal['all']; Expected a <class 'list'> (got 'train')",
    ),
    ({"stats": {"identify_splits": ["tran"]}}, "stats.identify_splits: Expected a typing.Literal"),
    ({"stats": {"tokens": "foo"}}, "stats.tokens: Expected a typing.Literal['all', 'patches'] (got 'foo')"),
    ({"report": {"within_task": TASK}}, "report.within_task: Expected a <class 'list'>"),
    ({"report": {"within_task": ["nope"]}}, "report.within_task[0]: 'nope' is not a task of this config"),
    ({"report": {"cross_task": [[TASK, "nope"]]}}, "report.cross_task[0]: ['nope'] not a task of this config"),
    ({"probe": {"seeds": 42}}, "probe.seeds: Expected a <class 'collections.abc.Sequence'> (got 42)"),
    ({"probe": {"seeds": [42, "a"]}}, "probe.seeds: Expected a <class 'int'>"),
    ({"probe": {"seeds": []}}, "probe.seeds: seeds must be a non-empty list of integers"),
    ({"probe": {"seeds": [1, 1]}}, "probe.seeds: seeds must be distinct"),
    ({"probe": {"lr": -1.0}}, "probe.lr: Not of type PositiveFloat"),
    ({"probe": {"max_epochs": 0}}, "probe.max_epochs: Not of type PositiveInt"),
    ({"probe": {"patience": -1}}, "probe.patience: Not of type NonNegativeInt"),
    ({"stability": {"replicates": 0}}, "stability.replicates: Not of type PositiveInt"),
    ({"ablation": {"random_draws": -1}}, "ablation.random_draws: Not of type NonNegativeInt"),
    ({"ablation": {"k_grid": [0]}}, "ablation.k_grid: Not of type PositiveInt"),
    ({"ablation": {"gain": "x"}}, "ablation.gain: Expected a <class 'float'> (got 'x')"),
    ({"ablation": {"replacement": "zero"}}, "ablation.replacement: Expected a typing.Literal['gain', 'mean']"),
    (
        {"ablation": {"neuron_lists": [{"name": "x", "neurons": [[0, 1]], "target": ["a"]}]}},
        "ablation.neuron_lists[0]: unknown key 'target'; NeuronList accepts ['name', 'neurons', 'targets']",
    ),
    ({"tasks": {TASK: {"neuron_lists": [{"name": "x", "neurons": "0,1"}]}}}, f"tasks.{TASK}.neuron_lists"),
    ({"data": {"batch_size": 0}}, "data.batch_size: Not of type PositiveInt"),
    ({"data": {"synthetic": {"clips_per_clas": 3}}}, "unknown key(s) ['clips_per_clas'] in 'data.synthetic'"),
    ({"data": {"synthetic": {"clips_per_class": 1}}}, "data.synthetic.clips_per_class: clips_per_class must be >= 3"),
    ({"tasks": {TASK: {"fold": 0}}}, f"tasks.{TASK}.fold: Not of type PositiveInt"),
    ({"tasks": {"esc50": {"fold": 9}}}, "tasks.esc50.fold: fold 9 is out of range: task 'esc50' has folds 1..5"),
    ({"tasks": {TASK: {"label_map": 5}}}, f"tasks.{TASK}.label_map: Expected a <class 'str'>"),
    (
        {"tasks": {TASK: {"label_map": "midi_to_bananas"}}},
        f"tasks.{TASK}.label_map: Unknown label_map 'midi_to_bananas'",
    ),
    ({"tasks": {TASK: {"predict_splits": ["tran"]}}}, f"tasks.{TASK}.predict_splits"),
    (
        {"tasks": {TASK: {"task_def": {"unit_secs": 1}}}},
        f"tasks.{TASK}.task_def: task_def of '{TASK}': unknown task field",
    ),
    ({"trainer": {"devices": 0}}, "trainer.devices: Not of type PositiveInt"),
    ({"trainer": {"num_nodes": 0}}, "trainer.num_nodes: Not of type PositiveInt"),
    ({"seed": "abc"}, "seed must be an integer, got 'abc'"),
    ({"out": 5}, "out must be a folder path, got 5"),
    (
        {"models": {MODEL: {"class_path": "lightning_modules.encoders.CrepeEncoder", "init_args": "tiny"}}},
        f"models.{MODEL}.init_args must be a mapping, got 'tiny'",
    ),
    (
        {"models": {MODEL: {"class_path": "lightning_modules.encoders.CrepeEncoder", "init_args": {"hop": 5}}}},
        f"models.{MODEL}.init_args: unknown key 'hop'",
    ),
    (
        {"models": {MODEL: {"class_path": "lightning_modules.encoders.CrepeEncoder", "init_args": {"hop_ms": "x"}}}},
        f"models.{MODEL}.init_args.hop_ms: Expected a <class 'float'> (got 'x')",
    ),
]


@pytest.mark.parametrize("over, message", CONFIG_CASES, ids=[m.split(":")[0] for _, m in CONFIG_CASES])
def test_bad_config_is_refused_before_any_stage_naming_file_and_key(synthetic_root, tmp_path, over, message):
    from analysis.app.pipeline import Pipeline

    cfg = pipeline_config(synthetic_root, tmp_path / "out")
    for section, value in over.items():
        if section == "tasks":
            cfg["tasks"] = {t: {**cfg["tasks"].get(t, {}), **o} for t, o in {**cfg["tasks"], **value}.items()}
        elif isinstance(value, dict) and isinstance(cfg.get(section), dict) and section != "models":
            cfg[section] = {**cfg[section], **value}
        else:
            cfg[section] = value
    path = write_config(cfg, tmp_path / "bad.yaml")
    with pytest.raises(PipelineError) as e:
        Pipeline(load_config(path))
    assert str(path) in str(e.value) and message in str(e.value)
    assert not (tmp_path / "out").exists()


def test_class_names_of_the_ablation_are_checked_before_any_stage(synthetic_root, tmp_path, capsys):
    cfg = pipeline_config(synthetic_root, tmp_path / "out")
    cfg["tasks"][TASK]["shared"] = [["octave_2", "octave_9"]]
    assert run_pipeline(write_config(cfg, tmp_path / "p.yaml")) == 1
    err = capsys.readouterr().err
    assert f"tasks.{TASK}.shared[0]: 'octave_9' is not a class of task '{TASK}'" in err
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize(
    "over, message",
    [
        (
            {"ablation": {"neuron_lists": [{"name": "x", "neurons": [[0, 1], [9, 0]], "targets": []}]}},
            f"ablation.neuron_lists[0].neurons: [9, 0] is not a [layer, neuron] of model '{MODEL}' (6 layers",
        ),
        ({"tasks": {"nowhere": {"task_def": {"unit_sec": 1.0}}}}, "tasks.nowhere: Metadata CSV not found"),
        ({"tasks": {TASK: {"evar_task": "no_such_task"}}}, f"tasks.{TASK}: Unknown task 'no_such_task'"),
    ],
    ids=["neuron-out-of-range", "missing-metadata", "unknown-evar-task"],
)
def test_data_and_model_references_are_checked_before_any_stage(synthetic_root, tmp_path, capsys, over, message):
    cfg = pipeline_config(synthetic_root, tmp_path / "out", **over)
    cfg["report"] = {}
    assert run_pipeline(write_config(cfg, tmp_path / "p.yaml")) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "p.yaml") in err and message in err
    assert not (tmp_path / "out" / "runs").exists() and not (tmp_path / "out" / ".stages").exists()


def test_top_rate_outside_its_range_is_refused_by_identify_itself(tmp_path, capsys):
    d = fake_run(tmp_path)
    (d / layout.NEURONS_PT).unlink()
    for rate in ("-0.05", "0", "1.5"):
        assert cli_main(["identify", "--run", str(d), "--top-rate", rate]) == 2
        assert f"top_rate must be in (0, 1] (a share of the neurons), got {float(rate)}" in capsys.readouterr().err
    assert not (d / layout.NEURONS_PT).exists()
