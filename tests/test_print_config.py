"""``python -m analysis pipeline --print_config``: the full config with every default, loadable as it is; and
docs/configs.md, generated from the same schema, is up to date."""

from __future__ import annotations

import yaml

from analysis.app.cli import main
from analysis.app.config import SECTIONS, load_config
from analysis.app.config_reference import markdown

from conftest import REPO_ROOT

DEMO = REPO_ROOT / "configs" / "pipeline" / "demo.yaml"


def _strip(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def test_printed_config_is_the_loaded_config_and_loads_back_unchanged(tmp_path, capsys):
    assert main(["pipeline", "--config", str(DEMO), "--print_config"]) == 0
    text = capsys.readouterr().out
    printed = yaml.safe_load(text)
    assert printed == _strip(load_config(DEMO))
    again = tmp_path / "printed.yaml"
    again.write_text(text, encoding="utf-8")
    assert _strip(load_config(again)) == printed
    demo = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    assert printed["probe"]["seeds"] == demo["probe"]["seeds"] and printed["identify"]["top_rate"] is None


def test_defaults_alone_are_what_a_minimal_config_gets(tmp_path, capsys):
    minimal = {
        "tasks": {"synth_octave_sine": {}},
        "models": {
            "m": {
                "class_path": "lightning_modules.encoders.CrepeEncoder",
                "init_args": {"capacity": "tiny", "pretrained": False},
            }
        },
        "data": {"evar_root": str(tmp_path)},
        "report": {},
    }
    path = tmp_path / "minimal.yaml"
    path.write_text(yaml.safe_dump(minimal), encoding="utf-8")
    loaded = load_config(path)
    assert main(["pipeline", "--print_config"]) == 0
    defaults = yaml.safe_load(capsys.readouterr().out)
    assert set(defaults) == {"description", "out", "seed", "tasks", "models"} | set(SECTIONS)
    for section in SECTIONS:
        want = {**loaded[section], "evar_root": None} if section == "data" else loaded[section]
        assert defaults[section] == want, section
    assert (defaults["out"], defaults["seed"]) == (loaded["out"], loaded["seed"])


def test_pipeline_without_config_says_so(capsys):
    assert main(["pipeline"]) == 2
    assert "pipeline needs --config FILE" in capsys.readouterr().err


def test_configs_reference_is_generated_from_the_schema():
    page = (REPO_ROOT / "docs" / "configs.md").read_text(encoding="utf-8")
    assert page == markdown(), "docs/configs.md is out of date: run `make docs`"
    for section in SECTIONS:
        assert f"## `{section}`" in page
    assert "| `top_rate` |" in page and "| `random_draws` |" in page
