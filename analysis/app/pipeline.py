"""``python -m analysis pipeline --config <yaml> [--out DIR] [--force] [--only STAGE ...]``: the whole
study in one command.

Stages, for every (model, task) of the config, each calling the same public function as its CLI verb:

1. ``data``      — tasks the pipeline writes: synthetic tones (``data.synthetic``; verb ``synth``) or
                   notes rendered from a SoundFont (``data.soundfont``; verb ``soundfont``);
                   :mod:`analysis.app.task_data`;
   ``sae``       — with ``sae.enabled``: a sparse autoencoder per (model, site) → ``saes/<model>/<site>/``
                   (verb ``sae``); the feature model ``<model>_sae`` (its latents as units) then runs every
                   later stage like any model (:mod:`analysis.app.feature_stages`);
2. ``stats``     — ``trainer.predict`` with :class:`callbacks.ActivationStatsCallback` (counts on the
                   identification splits — ``all``: every clip, rows without a split included —, top
                   clips, embeddings of every predicted clip) → ``runs/<task>_<model>/``
                   (``train.py predict``; through a ``train.py`` subprocess when the ``trainer`` section
                   asks for several processes, as Lightning's DDP re-launches the command line);
3. ``identify``  — AAPE selection → ``neurons.csv`` / ``neurons.pt`` in the run folder (verb ``identify``);
4. ``report``    — task statistics table, cross-/within-task figures per model → ``models/<model>/``
                   (verb ``report``); with two or more models also ``compare`` — the models side by
                   side: one task table, the figures with one column per model, the entropy
                   distribution of all neurons → ``compare/`` (verb ``compare``);
5. ``stability`` — resampling stability and threshold sweep (verb ``stability``; optional);
6. ``probe``     — linear probe on the frozen embeddings, one fit per seed → ``probes/<task>_<model>/``
                   (verb ``probe``);
7. ``ablation``  — ``trainer.test`` of encoder + frozen probe with :class:`callbacks.AblationCallback` on the
                   evaluation split → ``ablation/<task>_<model>/`` (``train.py test``; with the configured
                   ``trainer``, through a subprocess like ``stats``; the probe fit stays on one device);
8. ``gallery``   — the listening gallery of each run (top clips, spectrogram + activation overlay, audio)
                   → ``gallery/<task>_<model>/`` (verb ``gallery``; only with ``gallery.enabled``);
   ``features``  — with feature models: ``compare/neurons_vs_features.csv`` (neurons vs features per task
                   and site);
   ``stimuli``, ``tuning``, ``tuning_report`` — tuning curves along stimulus dimensions (only with
                   ``tuning.dimensions``), ``steering``, ``steering_report`` — class sets scaled by a gain
                   grid (only with ``steering.enabled``; both in :mod:`analysis.app.pipeline_tuning`);
9. ``summary``   — ``report/summary.md`` and ``report/index.html`` from the files above, linking the
                   galleries (verb ``summary``).

Where each part lives: the stage list :mod:`analysis.app.pipeline_stages`, the checks before any stage
:mod:`analysis.app.pipeline_checks`, the stage bodies :mod:`analysis.app.pipeline_trainer` (stats, ablation:
a Trainer here or ``train.py`` subprocesses), :mod:`analysis.app.pipeline_analysis` (identify, report,
compare, stability, probe, gallery, summary) and :mod:`analysis.app.pipeline_tuning`, the verb's arguments
and logging :mod:`analysis.app.pipeline_command`; this module puts them together (:class:`Pipeline`,
:func:`run_pipeline`) and is the import path of all of them.

Skip/resume semantics, the output lock and ``--only``: :mod:`analysis.app.runner`. Config schema:
:mod:`analysis.app.config`. Every stage that reads a run folder first checks its ``manifest.json``
against the config (:mod:`analysis.runs.identity`: model, checkpoint sha256, task, classes, data list,
counting settings), so a folder made by another model or from other data is refused, not analysed under
this config's name.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from torch import nn

from analysis.app import feature_stages
from analysis.app.config import IDENTIFY_ALL, PipelineError, check_models, load_config, task_data_options
from analysis.app.pipeline_analysis import AnalysisStages
from analysis.app.pipeline_checks import DataChecks
from analysis.app.pipeline_command import add_arguments, setup_logging
from analysis.app.pipeline_stages import STAGE_NAMES, StageList
from analysis.app.pipeline_trainer import _ABLATION_PIPELINE_KEYS as _ABLATION_PIPELINE_KEYS
from analysis.app.pipeline_trainer import TrainerStages
from analysis.app.pipeline_tuning import TuningStages
from analysis.app.runner import OutputLock, Runner, Stage
from analysis.app.specs import instantiate
from analysis.app.task_data import writer_section
from analysis.runs.identity import encoder_identity
from analysis.runs.layout import INDEX_HTML, OutputTree
from analysis.app.config_sections import PipelineConfig
from datamodules import EVARDataModule
from datamodules.evar import resolve_evar_root

__all__ = [
    "STAGE_NAMES",
    "Pipeline",
    "PipelineError",
    "Runner",
    "Stage",
    "add_arguments",
    "instantiate",
    "load_config",
    "run_pipeline",
    "setup_logging",
]


class Pipeline(StageList, DataChecks, TrainerStages, AnalysisStages, TuningStages):
    """Builds the stage list from a validated config (see :func:`analysis.app.config.load_config`) and runs
    it. The stage list: :class:`~analysis.app.pipeline_stages.StageList`; the checks before any stage:
    :class:`~analysis.app.pipeline_checks.DataChecks`; the stage bodies:
    :class:`~analysis.app.pipeline_trainer.TrainerStages` (stats, ablation),
    :class:`~analysis.app.pipeline_analysis.AnalysisStages` (identify, report, compare, stability, probe,
    gallery, summary), :class:`~analysis.app.pipeline_tuning.TuningStages` (stimuli, tuning, steering)."""

    def __init__(self, cfg: PipelineConfig, force: bool = False) -> None:
        if not isinstance(cfg, PipelineConfig):
            raise TypeError(
                f"Pipeline needs a loaded config (analysis.app.config.load_config), got {type(cfg).__name__}"
            )
        self.cfg = cfg
        self.tree = OutputTree(cfg.out)
        self.out = self.tree.root
        self.runner = Runner(self.tree, force=force, seed=int(cfg.seed))
        self._identity: dict[str, dict[str, Any]] = {}
        check_models(cfg)
        #: feature models (SAE latents as units, :mod:`analysis.app.feature_stages`), added to cfg.models
        try:
            self.feature_models = feature_stages.plan(self)
        except ValueError as e:
            raise PipelineError(str(e)) from e
        d = cfg.data
        if writer_section(cfg) and not d["evar_root"]:
            self.evar_root = self.tree.synthetic_evar_root
        else:
            try:
                self.evar_root = resolve_evar_root(d["evar_root"])
            except ValueError as e:
                raise PipelineError(
                    f"{cfg.config_path}: set data.evar_root (or $EVAR, or data.synthetic, or data.soundfont): {e}"
                )

    # -- paths and builders -----------------------------------------------------------------------
    def run_dir(self, task: str, model: str) -> Path:
        return self.tree.run(task, model)

    def probe_dir(self, task: str, model: str) -> Path:
        return self.tree.probe(task, model)

    def ablation_dir(self, task: str, model: str) -> Path:
        return self.tree.ablation(task, model)

    def evar_task(self, task: str) -> str:
        return self.cfg.tasks[task].evar_task or task

    def datamodule(self, task: str, encoder: nn.Module, **over: Any) -> EVARDataModule:
        """The task's datamodule at ``encoder``'s sample rate (audio from ``work/<sr>/``)."""
        kw = {**task_data_options(self.cfg, task), "sample_rate": int(encoder.sample_rate), **over}
        return EVARDataModule(evar_root=str(self.evar_root), task=self.evar_task(task), seed=self.cfg.seed, **kw)

    def manifest_config(self, task: str, model: str, dm: EVARDataModule) -> dict[str, Any]:
        """What the statistics manifest records of this pipeline run."""
        return {
            "pipeline_config": self.cfg.config_path,
            "task": task,
            "task_options": self.cfg.tasks[task],
            "model": model,
            "encoder": self.cfg.models[model],
            "stats": self.cfg.stats,
            "trainer": self.cfg.trainer,
            "seed": self.cfg.seed,
            "data": dict(dm.hparams),
        }

    def encoder(self, model: str) -> nn.Module:
        return instantiate(self.cfg.models[model], f"models.{model}")

    def model_identity(self, model: str) -> dict[str, Any]:
        """The model keys of :mod:`analysis.runs.identity` of ``model`` (its encoder is built once)."""
        if model not in self._identity:
            self._identity[model] = encoder_identity(self.encoder(model))
        return self._identity[model]

    # -- readings of the config ---------------------------------------------------------------------
    def _identify_all(self) -> bool:
        """``stats.identify_splits: all``: predict and count every clip (rows without a split too)."""
        return self.cfg.stats.identify_splits == IDENTIFY_ALL

    def _counted_splits(self) -> Optional[list[str]]:
        """The statistics callback's ``splits``: None (every predicted clip) under ``all``."""
        return None if self._identify_all() else self.cfg.stats.identify_splits

    def _act_sum(self) -> bool:
        """Activation sums are computed when asked for or when the ablation replaces neurons by their mean."""
        return bool(self.cfg.stats.act_sum) or self.cfg.ablation.replacement == "mean"

    # -- running -------------------------------------------------------------------------------------
    def run(self, only: Optional[Sequence[str]] = None) -> None:
        """Run every stage (``only``: just the stages with those names; the stages they build on must have
        finished with this config). Holds the output lock throughout; first removes what killed writes
        left behind and checks the data."""
        self.out.mkdir(parents=True, exist_ok=True)
        with OutputLock(self.tree, note=str(self.cfg.config_path)):
            self.runner.clean()
            stages = self.stages()
            for s in stages:
                self.runner.note(s)
            self.check_data(skip={s.key for s in stages if s.name == "data" and self.runner.finished(s) is not None})
            self.check_ablation_lists()
            chosen = {s.id for s in stages if only is None or s.name in only}
            by_id = {s.id: s for s in stages}
            for s in stages:
                if s.id in chosen:
                    for dep in s.after:
                        if dep not in chosen and dep in by_id:
                            self.runner.require_finished(by_id[dep], s.id)
            for s in stages:
                if s.id in chosen:
                    self.runner.run(s)


def run_pipeline(
    config: str, out: Optional[str] = None, force: bool = False, only: Optional[Sequence[str]] = None
) -> int:
    """Load ``config``, run its stages and print the final line; 1 with the message on a PipelineError."""
    setup_logging()
    try:
        pipe = Pipeline(load_config(config, out=out), force=force)
        t0 = time.perf_counter()
        pipe.run(only)
        dt = time.perf_counter() - t0
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    timings = pipe.runner.timings
    ran = sum(1 for _, how, _ in timings if how == "ran")
    skipped = sum(1 for _, how, _ in timings if how == "skipped")
    print(
        f"[aape] pipeline finished in {dt:.1f} s ({ran} stages ran, {skipped} skipped); "
        f"report: {pipe.tree.report / INDEX_HTML}"
    )
    return 0
