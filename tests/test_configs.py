"""Every LightningCLI YAML under ``configs/`` parses and instantiates through the same LightningCLI
setup as ``train.py`` (in-process, ``run=False``).

Forms:
* ``configs/model/``, ``configs/data/``: group files (top-level ``class_path``/``init_args``),
  composed as ``--model <file>`` / ``--data <file>``;
* ``configs/trainer/``: group files of Trainer arguments, ``--trainer <file>``;
* ``configs/experiment/``: complete configs (``trainer``/``model``/``data`` keys), ``--config <file>``.

A group file is instantiated with neutral partners (CPU trainer, untrained CREPE tiny, the synthetic
task). Configs that need a real checkpoint file are skipped with the reason; EVAR roots are only read
in ``setup()``, which runs here for synthetic tasks only (their root is overridden by the fixture).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI

from conftest import REPO_ROOT, SYNTHETIC_TASKS

CONFIGS = REPO_ROOT / "configs"
CLI_GROUPS = ("model", "data", "trainer", "experiment")
FILES = sorted(p for g in CLI_GROUPS for p in (CONFIGS / g).glob("*.yaml"))
CPU_TRAINER = CONFIGS / "trainer" / "cpu.yaml"
NEUTRAL_MODEL = CONFIGS / "model" / "crepe_tiny_untrained.yaml"
NEUTRAL_DATA = CONFIGS / "data" / "synth_octave_sine.yaml"
#: options of the fit/validate/test/predict subcommands themselves (not of trainer/model/data)
SUBCOMMAND_KEYS = {"return_predictions", "ckpt_path", "weights_only"}


def make_cli(args: list[str]) -> LightningCLI:
    """The LightningCLI of ``train.py`` itself, without running a subcommand."""
    import train

    return train.main(args, run=False)


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")
    else:
        yield path, node


def needs_missing_checkpoint(cfg: Any) -> str | None:
    """Reason to skip when a ``*checkpoint*``/``*ckpt*``/``model_path`` string value names a file or folder
    that is absent (real weights no repository can ship)."""
    for key, value in walk(cfg):
        leaf = key.rsplit(".", 1)[-1].lower()
        if ("checkpoint" in leaf or "ckpt" in leaf or leaf == "model_path") and isinstance(value, str) and value:
            p = Path(value).expanduser()
            p = p if p.is_absolute() else REPO_ROOT / p
            if not p.exists():
                return f"needs a real checkpoint: {key}={value}"
    return None


def test_configs_are_found():
    names = {f"{p.parent.name}/{p.name}" for p in FILES}
    for required in ("model/crepe_tiny.yaml", "model/crepe_full.yaml", "model/crepe_tiny_untrained.yaml",
                     "trainer/cpu.yaml", "trainer/ddp_cpu.yaml", "trainer/bf16.yaml"):
        assert required in names


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_config_parses_and_instantiates(path: Path, synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative output dirs of callbacks/loggers land in tmp
    monkeypatch.setattr(sys, "argv", ["train.py"])
    cfg = yaml.safe_load(path.read_text())
    assert isinstance(cfg, dict) and cfg, f"{path}: empty or not a mapping"
    reason = needs_missing_checkpoint(cfg)
    if reason:
        pytest.skip(f"{path.relative_to(REPO_ROOT)} {reason}")
    group = path.parent.name
    root = ["--data.init_args.evar_root", str(synthetic_root)]
    if group == "model":
        assert "class_path" in cfg, f"{path}: a model group file needs a top-level class_path"
        args = ["--trainer", str(CPU_TRAINER), "--model", str(path), "--data", str(NEUTRAL_DATA), *root]
    elif group == "data":
        assert "class_path" in cfg, f"{path}: a data group file needs a top-level class_path"
        args = ["--trainer", str(CPU_TRAINER), "--model", str(NEUTRAL_MODEL), "--data", str(path)]
        task = (cfg.get("init_args") or {}).get("task")
        if task in SYNTHETIC_TASKS:
            args += root
    elif group == "trainer":
        assert "class_path" not in cfg and "trainer" not in cfg, f"{path}: Trainer arguments at top level"
        args = ["--trainer", str(path), "--model", str(NEUTRAL_MODEL), "--data", str(NEUTRAL_DATA), *root]
    else:  # experiment: a complete config
        assert {"model", "data"} <= set(cfg), f"{path}: an experiment config needs model and data keys"
        # subcommand options (e.g. predict's return_predictions) are not accepted without a
        # subcommand: check they are known ones, then parse the rest
        extra = set(cfg) & SUBCOMMAND_KEYS
        sub_cfg = {k: v for k, v in cfg.items() if k not in extra}
        flat = tmp_path / path.name
        flat.write_text(yaml.safe_dump(sub_cfg))
        args = ["--config", str(flat)]
        task = ((cfg.get("data") or {}).get("init_args") or {}).get("task")
        if task in SYNTHETIC_TASKS:
            args += root
    args += ["--trainer.default_root_dir", str(tmp_path / "lightning")]

    cli = make_cli(args)
    assert isinstance(cli.trainer, Trainer)
    assert isinstance(cli.model, LightningModule)
    assert isinstance(cli.datamodule, LightningDataModule)
    if hasattr(cli.model, "encoder"):
        enc = cli.model.encoder
        assert enc.neuron_sites and len(enc.site_neurons) == len(enc.neuron_sites)
        for site in enc.neuron_sites:
            enc.get_submodule(site)
        if group == "model" and path.stem.startswith("crepe"):
            assert enc.name == path.stem
    if getattr(cli.datamodule, "task", None) in SYNTHETIC_TASKS and "--data.init_args.evar_root" in args:
        cli.datamodule.setup("predict")
        assert len(cli.datamodule.classes) >= 2
    if group == "trainer":
        expected = cfg.get("devices")
        if isinstance(expected, int):
            assert cli.trainer.num_devices == expected
