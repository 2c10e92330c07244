"""The pipeline's sparse-autoencoder stages (``sae`` section, :class:`~analysis.app.sae.SAEPipelineOptions`).

* ``sae`` — one stage per (model, site): :func:`~analysis.app.sae.train_sae` on the train splits of the
  ``train_tasks`` → ``saes/<model>/<site>/`` (``sae.pt``, ``metrics.csv``); skipped for the SAEs listed in
  ``load``.
* The **feature model** ``<model><suffix>`` (:class:`~lightning_modules.encoders.FeatureEncoder`: the model
  with its SAEs spliced in, whose unit sites are the latents) joins the config's models, so every later
  stage (stats, identify, report, compare, stability, probe, ablation, gallery, summary) runs on it exactly
  as on a model of neurons.
* ``features`` — ``compare/neurons_vs_features.csv``: per task and site, neurons vs features
  (:mod:`analysis.neurons_vs_features`), after both models' stability and ablation stages; its
  ``probe_accuracy`` columns: the probe's test accuracy of the original model (neuron rows) and with the
  SAE's reconstruction spliced in at the site, error term dropped (feature rows; :mod:`analysis.app.spliced_probe`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from analysis.app.config_renames import owner_kwargs
from analysis.app.runner import Stage
from analysis.app.sae import train_sae
from analysis.app.spliced_probe import spliced_probe_accuracy
from analysis.neurons_vs_features import comparison_row
from analysis.runs.layout import (
    ABLATION_GROUPS_CSV,
    NEURONS_VS_FEATURES_COLUMNS,
    NEURONS_VS_FEATURES_CSV,
    SAE_FILE,
    SAE_METRICS_CSV,
    site_slug,
)
from analysis.runs.read import (
    read_classes,
    read_neurons,
    read_over_zero,
    read_stability,
    read_table,
)
from analysis.runs.write import write_neurons_vs_features
from datamodules.sae_audio import MixedAudioDataModule

#: ``pipe`` below is the :class:`analysis.app.pipeline.Pipeline` (not imported: it imports this module).
Pipeline = Any
FEATURE_ENCODER = "lightning_modules.encoders.FeatureEncoder"
#: Keys of the ``sae`` section that are not :func:`train_sae` arguments.
PIPELINE_KEYS = ("enabled", "models", "sites", "load", "train_tasks", "suffix")
#: The probe columns of a row without a probe for its task.
NO_PROBE = {"probe_accuracy": float("nan"), "probe_accuracy_lo": float("nan"), "probe_accuracy_hi": float("nan")}


@dataclass
class FeatureModel:
    """A model of SAE features: ``base`` with an SAE at each of ``sites`` (files ``paths``; ``trained``:
    made by this pipeline's ``sae`` stage rather than loaded)."""

    name: str
    base: str
    sites: list[str]
    paths: list[Path]
    trained: list[bool] = field(default_factory=list)

    def spec(self, base_spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "class_path": FEATURE_ENCODER,
            "init_args": {"encoder": base_spec, "saes": [str(p) for p in self.paths], "name": self.name},
        }


def plan(pipe: Pipeline) -> dict[str, FeatureModel]:
    """The feature models of the config (none unless ``sae.enabled``); adds their specs to ``models``."""
    cfg, sae = pipe.cfg, pipe.cfg.sae
    if not sae.enabled:
        return {}
    out: dict[str, FeatureModel] = {}
    for base in sae.models or list(cfg.models):
        declared = list(pipe.encoder(base).neuron_sites)
        sites = sae.sites or declared
        bad = [s for s in sites if s not in declared]
        if bad:
            raise ValueError(f"{cfg.config_path}: sae.sites: {bad} are not sites of model {base!r} ({declared})")
        load = (sae.load or {}).get(base, {})
        paths = [Path(load[s]).resolve() if s in load else (pipe.tree.sae(base, s) / SAE_FILE).resolve() for s in sites]
        fm = FeatureModel(f"{base}{sae['suffix']}", base, list(sites), paths, [s not in load for s in sites])
        out[fm.name] = fm
    for fm in out.values():
        cfg.models[fm.name] = fm.spec(cfg.models[fm.base])
    return out


def train_options(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.sae.items() if k not in PIPELINE_KEYS}


def sae_stage_id(base: str, site: str) -> str:
    return f"sae-{base}-{site_slug(site)}"


def sae_stages(pipe: Pipeline, data_ids: list[str]) -> list[Stage]:
    """One ``sae`` stage per SAE this pipeline trains."""
    cfg, st = pipe.cfg, []
    tasks = cfg.sae.train_tasks or list(cfg.tasks)
    for fm in pipe.feature_models.values():
        for site, trained in zip(fm.sites, fm.trained):
            if not trained:
                continue
            dest = pipe.tree.sae(fm.base, site)
            conf = {
                "sae": train_options(cfg),
                "model": cfg.models[fm.base],
                "site": site,
                "tasks": tasks,
                "data": cfg.data,
                "seed": cfg.seed,
                "trainer": cfg.trainer,
            }
            st.append(
                Stage(
                    "sae",
                    f"{fm.base}-{site_slug(site)}",
                    conf,
                    [dest / SAE_FILE, dest / SAE_METRICS_CSV],
                    pipe._bind(run_sae, pipe, fm.base, site, tasks),
                    after=list(data_ids),
                    owns=[dest],
                )
            )
    return st


def stats_after(pipe: Pipeline, model: str) -> list[str]:
    """The ``sae`` stages a feature model's statistics build on."""
    fm = pipe.feature_models.get(model)
    return [] if fm is None else [sae_stage_id(fm.base, s) for s, t in zip(fm.sites, fm.trained) if t]


def run_sae(pipe: Pipeline, base: str, site: str, tasks: list[str], overwrite: bool) -> None:
    cfg = pipe.cfg
    encoder = pipe.encoder(base)
    dms = [pipe.datamodule(t, encoder) for t in tasks]
    data = MixedAudioDataModule(dms, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers, seed=cfg.seed)
    t = cfg.trainer
    train_sae(
        encoder,
        site,
        data,
        pipe.tree.sae(base, site),
        **train_options(cfg),
        seed=int(cfg.seed),
        accelerator=t["accelerator"],
        devices=1,
        precision=t["precision"],
        tensorboard=pipe.tree.tensorboard,
        name=f"sae_{base}_{site_slug(site)}",
        overwrite=overwrite,
    )


def features_stage(pipe: Pipeline) -> Optional[Stage]:
    """The ``features`` stage (None without feature models)."""
    if not pipe.feature_models:
        return None
    cfg = pipe.cfg
    after = []
    for fm in pipe.feature_models.values():
        for model in (fm.base, fm.name):
            for task in cfg.tasks:
                after += [f"identify-{task}_{model}", f"ablation-{task}_{model}"]
                after += [f"stability-{task}_{model}"] if cfg.stability.enabled else []
    out = pipe.tree.compare / NEURONS_VS_FEATURES_CSV
    conf = {
        "models": {m: cfg.models[m] for m in cfg.models},
        "tasks": list(cfg.tasks),
        "stability": cfg.stability,
        "ablation": owner_kwargs("ablation", cfg.ablation),
        "identify": owner_kwargs("identify", cfg.identify),
    }
    return Stage("features", "", conf, [out], pipe._bind(run_features, pipe), after=after, owns=[out])


def neurons_vs_features(pipe: Pipeline) -> pd.DataFrame:
    """Rows of ``neurons_vs_features.csv`` for every feature model, task and site."""
    rows = []
    for fm in pipe.feature_models.values():
        for task in pipe.cfg.tasks:
            nrun, frun = pipe.run_dir(task, fm.base), pipe.run_dir(task, fm.name)
            classes = read_classes(nrun)
            base_sites = list(pipe.model_identity(fm.base)["sites"])
            base_units = list(pipe.model_identity(fm.base)["site_neurons"])
            widths = list(pipe.model_identity(fm.name)["site_neurons"])
            probe = spliced_probe_accuracy(pipe, fm.name, task, list(fm.sites))
            for j, site in enumerate(fm.sites):
                layer = base_sites.index(site)
                for kind, run, model, units, lay in (
                    ("neuron", nrun, fm.base, base_units[layer], layer),
                    ("feature", frun, fm.name, widths[j], j),
                ):
                    oz = read_over_zero(run)
                    summary = pipe.ablation_dir(task, model) / ABLATION_GROUPS_CSV
                    row = comparison_row(
                        task,
                        fm.base,
                        site,
                        kind,
                        units,
                        read_neurons(run, len(classes), oz.shape[0]),
                        classes,
                        lay,
                        oz,
                        read_stability(run),
                        read_table(summary) if summary.is_file() else None,
                        fm.name,
                    )
                    rows.append({**row, **probe.get("original" if kind == "neuron" else site, NO_PROBE)})
    return pd.DataFrame(rows, columns=NEURONS_VS_FEATURES_COLUMNS)


def run_features(pipe: Pipeline, overwrite: bool) -> None:
    write_neurons_vs_features(pipe.tree.compare, neurons_vs_features(pipe), overwrite=overwrite)
