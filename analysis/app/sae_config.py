"""``python -m analysis sae --config configs/sae/<name>.yaml``: train one SAE on one site of an encoder,
outside the pipeline (same function as the pipeline's ``sae`` stage, :func:`analysis.app.sae.train_sae`).

The YAML (every key but ``encoder`` and ``site`` optional)::

    out: outputs/sae_demo            # the SAE folder is <out>/<site>/ (sae.pt, metrics.csv)
    seed: 0
    encoder: {class_path: ..., init_args: {...}}
    site: blocks.5.relu
    data:
      evar_root: null                # default: <out>/evar, written from `synthetic`
      synthetic: {clips_per_class: 60, duration: 1.0, octaves: [1, 2, 3, 4, 5, 6]}
      tasks: [synth_octave_sine]     # their train splits train, their valid splits give the metrics
      batch_size: 32
      num_workers: 0
    trainer: {accelerator: cpu, precision: 32-true}
    sae: {...}                       # train_sae options (SAELens names: d_sae, k, l1_coefficient, ...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from analysis.app.config import (
    SAE_PIPELINE_ARGS,
    PipelineError,
    _parse,
    _parser,
    _synthetic_parser,
)
from analysis.app.sae import train_sae
from analysis.app.specs import instantiate
from analysis.runs.layout import site_slug
from datamodules import EVARDataModule
from datamodules.sae_audio import MixedAudioDataModule
from datamodules.synthetic import write_task

TOP_KEYS = {"description", "out", "seed", "encoder", "site", "data", "trainer", "sae"}
DATA_KEYS = {"evar_root", "synthetic", "tasks", "batch_size", "num_workers"}


def _options_parser():
    p = _parser()
    p.add_function_arguments(train_sae, skip=SAE_PIPELINE_ARGS)
    return p


def load_sae_config(path: str | Path) -> dict[str, Any]:
    """Read and check the YAML (module docstring); errors name the file and the key."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise PipelineError(f"{p}: cannot read the SAE config: {e}") from e
    if not isinstance(raw, dict):
        raise PipelineError(f"{p}: an SAE config must be a mapping")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise PipelineError(f"{p}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    for key in ("encoder", "site"):
        if key not in raw:
            raise PipelineError(f"{p}: '{key}' is required")
    data = dict(raw.get("data") or {})
    bad = set(data) - DATA_KEYS
    if bad:
        raise PipelineError(f"{p}: unknown key(s) {sorted(bad)} in 'data'; allowed: {sorted(DATA_KEYS)}")
    if data.get("synthetic") is not None:
        data["synthetic"] = _parse(_synthetic_parser, data["synthetic"], p, "data.synthetic")
    tasks = data.get("tasks") or ["synth_octave_sine"]
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise PipelineError(f"{p}: data.tasks must be a list of task names, got {tasks!r}")
    trainer = dict(raw.get("trainer") or {})
    if set(trainer) - {"accelerator", "precision"}:
        raise PipelineError(f"{p}: trainer: only accelerator and precision are read, got {sorted(trainer)}")
    return {
        "out": str(raw.get("out", "outputs/sae")),
        "seed": int(raw.get("seed", 0)),
        "encoder": raw["encoder"],
        "site": str(raw["site"]),
        "data": {**data, "tasks": tasks},
        "trainer": trainer,
        "sae": _parse(_options_parser, raw.get("sae"), p, "sae"),
        "_config_path": str(p),
    }


def sae_from_config(config: str | Path, out: Optional[str] = None, overwrite: bool = False) -> dict[str, Any]:
    """Train the SAE of ``config`` (writing the synthetic tasks first when the config asks for them and
    they are missing); returns its metrics row."""
    cfg = load_sae_config(config)
    root = Path(out or cfg["out"])
    d = cfg["data"]
    evar_root = Path(d["evar_root"]) if d.get("evar_root") else root / "evar"
    syn = d.get("synthetic")
    for task in d["tasks"]:
        if syn is not None and not (evar_root / "evar" / "metadata" / f"{task}.csv").is_file():
            s = dict(syn)
            seed = s.pop("seed")
            write_task(evar_root, task, seed=cfg["seed"] if seed is None else int(seed), **s)
    encoder = instantiate(cfg["encoder"], f"{cfg['_config_path']}: encoder")
    dms = [
        EVARDataModule(
            evar_root=str(evar_root),
            task=t,
            sample_rate=int(encoder.sample_rate),
            seed=cfg["seed"],
            batch_size=int(d.get("batch_size", 32)),
            num_workers=int(d.get("num_workers", 0)),
        )
        for t in d["tasks"]
    ]
    data = MixedAudioDataModule(
        dms, batch_size=int(d.get("batch_size", 32)), num_workers=int(d.get("num_workers", 0)), seed=cfg["seed"]
    )
    return train_sae(
        encoder,
        cfg["site"],
        data,
        root / site_slug(cfg["site"]),
        **cfg["sae"],
        seed=cfg["seed"],
        accelerator=cfg["trainer"].get("accelerator", "cpu"),
        precision=cfg["trainer"].get("precision", "32-true"),
        tensorboard=root / "tensorboard",
        name=f"sae_{site_slug(cfg['site'])}",
        overwrite=overwrite,
    )
