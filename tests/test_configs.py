"""Every LightningCLI YAML under ``configs/`` parses and instantiates through the same LightningCLI
setup as ``train.py`` (in-process, ``run=False``).

Forms:
* ``configs/model/``, ``configs/data/``: group files (top-level ``class_path``/``init_args``),
  composed as ``--model <file>`` / ``--data <file>``;
* ``configs/trainer/``: group files of Trainer arguments, ``--trainer <file>``;
* ``configs/experiment/``: complete configs (``trainer``/``model``/``data`` keys), ``--config <file>``.

A group file is instantiated with neutral partners (CPU trainer, untrained CREPE tiny, the synthetic
task). A config that points at real weights no repository can ship (an M2D release, a Hugging Face
folder, a probe trained on real data) is instantiated with a stand-in of the same format: the tiny
official-format M2D checkpoints of ``tests/fixtures`` (the same family and patch grid), a tiny random
Hugging Face folder of the same family, a probe checkpoint of the right width and class count. Only a
missing file without a stand-in is skipped with the reason. EVAR roots are only read in ``setup()``,
which runs here for synthetic tasks only (their root is overridden by the fixture).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI

from conftest import M2D_REFERENCE, REPO_ROOT, SYNTHETIC_TASKS

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


def missing_weights(cfg: Any) -> Iterator[tuple[str, str]]:
    """``(key, value)`` of every ``*checkpoint*``/``*ckpt*``/``model_path`` string naming a file or folder
    that is absent (real weights no repository can ship)."""
    for key, value in walk(cfg):
        leaf = key.rsplit(".", 1)[-1].lower()
        if ("checkpoint" in leaf or "ckpt" in leaf or leaf == "model_path") and isinstance(value, str) and value:
            p = Path(value).expanduser()
            p = p if p.is_absolute() else REPO_ROOT / p
            if not p.exists():
                yield key, value


FAMILIES = REPO_ROOT / "tests" / "fixtures" / "m2d_families"
#: M2D run-folder name fragment of a real release → official-format tiny checkpoint of the same kind.
M2D_STAND_INS = [
    ("m2d_as_", FAMILIES / "m2d_as_vit_tiny-80x608p16x16p32k-261126-fixture" / "checkpoint-0.pth"),
    ("m2d_s_", FAMILIES / "m2d_s_vit_tiny-80x608p80x2p16k-261126-fixture" / "checkpoint-0.pth"),
    ("m2d_x_", FAMILIES / "m2d_x_vit_tiny-80x608p16x16p16k-261126-fixture" / "checkpoint-0.pth"),
    ("m2d_clap_", FAMILIES / "m2d_clap_vit_tiny-80x608p16x16p16k-261126-fixture" / "checkpoint-0.pth"),
    ("", M2D_REFERENCE / "m2d_vit_tiny-80x608p16x16p16k-261125-dd1bs512-e300_enconly" / "checkpoint-0.pth"),
]
STAND_IN_HEADS = 4  # the tiny fixtures' heads (not stored in the checkpoints)


def _m2d_stand_in(value: str) -> Path:
    name = Path(value).parent.name
    return next(f for prefix, f in M2D_STAND_INS if name.startswith(prefix))


def _probe_stand_in(folder: Path, embed_dim: int, num_classes: int) -> Path:
    """A LinearProbe checkpoint of the given width and class count (untrained weights)."""
    from lightning_modules.linear_probe import LinearProbe

    probe = LinearProbe(num_classes=num_classes, embed_dim=embed_dim, classes=[f"c{i}" for i in range(num_classes)])
    trainer = Trainer(
        logger=False,
        enable_checkpointing=False,
        accelerator="cpu",
        enable_progress_bar=False,
        default_root_dir=str(folder),
    )
    trainer.strategy.connect(probe)
    path = folder / f"probe_{embed_dim}x{num_classes}.ckpt"
    trainer.save_checkpoint(path)
    return path


def stand_in_overrides(cfg: Any, prefix: str, folder: Path) -> list[str]:
    """CLI overrides replacing every missing weights file of ``cfg`` by a stand-in (see module docstring);
    ``pytest.skip`` when one has none. ``prefix``: the CLI group of the model (``model.``)."""
    out: list[str] = []
    for key, value in missing_weights(cfg):
        leaf = key.rsplit(".", 1)[-1]
        if not key.startswith(("model.", "init_args.")):
            pytest.skip(f"needs a real checkpoint: {key}={value}")
        # model.init_args.X (complete config) or init_args.X (model group file) -> --model.X
        flag = "--" + prefix + key.removeprefix("model.").removeprefix("init_args.")
        if leaf == "checkpoint":
            out += [f"{flag}={_m2d_stand_in(value)}", f"{flag.rsplit('.', 1)[0]}.num_heads={STAND_IN_HEADS}"]
        elif leaf == "model_path":
            pytest.importorskip("transformers", reason="the hf extra (transformers) is not installed")
            from _hf_models import save_tiny

            kind = (cfg_get(cfg, key.rsplit(".", 1)[0]) or {}).get("kind")
            out.append(f"{flag}={save_tiny(kind, folder / f'hf_{kind}')}")
        elif leaf == "probe_checkpoint":
            task = cfg_get(cfg, "data.init_args").get("task")
            n_classes = {"cremad": 6, "gtzan": 10}[task]
            out.append(f"{flag}={_probe_stand_in(folder, 320, n_classes)}")
        else:
            pytest.skip(f"needs a real checkpoint: {key}={value}")
    return out


def cfg_get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg


def test_configs_are_found():
    names = {f"{p.parent.name}/{p.name}" for p in FILES}
    for required in (
        "model/crepe_tiny.yaml",
        "model/crepe_full.yaml",
        "model/crepe_tiny_untrained.yaml",
        "trainer/cpu.yaml",
        "trainer/ddp_cpu.yaml",
        "trainer/bf16.yaml",
    ):
        assert required in names


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_config_parses_and_instantiates(path: Path, synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative output dirs of callbacks/loggers land in tmp
    monkeypatch.setattr(sys, "argv", ["train.py"])
    cfg = yaml.safe_load(path.read_text())
    assert isinstance(cfg, dict) and cfg, f"{path}: empty or not a mapping"
    group = path.parent.name
    stand_ins = stand_in_overrides(cfg, "model.", tmp_path)
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
    args += ["--trainer.default_root_dir", str(tmp_path / "lightning"), *stand_ins]

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
