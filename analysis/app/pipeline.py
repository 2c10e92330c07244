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

Skip/resume semantics, the output lock and ``--only``: :mod:`analysis.app.runner`. Config schema:
:mod:`analysis.app.config`. Every stage that reads a run folder first checks its ``manifest.json``
against the config (:mod:`analysis.runs.identity`: model, checkpoint sha256, task, classes, data list,
counting settings), so a folder made by another model or from other data is refused, not analysed under
this config's name.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import lightning.pytorch as pl
import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from analysis.app import feature_stages
from analysis.app.compare import build_compare
from analysis.app.config import (
    IDENTIFY_ALL,
    PipelineError,
    check_class_names,
    check_models,
    check_neuron_lists,
    load_config,
    owner_kwargs,
    task_data_options,
)
from analysis.app.gallery import build_gallery
from analysis.app.identify import identify_run
from analysis.app.pipeline_tuning import TuningStages
from analysis.app.probe import fit_seeds
from analysis.app.report import ReportSpec, build_report
from analysis.app.runner import OutputLock, Runner, Stage
from analysis.app.specs import instantiate
from analysis.app.stability import stability_run
from analysis.app.summary import write_summary
from analysis.app.task_data import data_tasks, writer_section
from analysis.runs.atomic import record_move, save_text
from analysis.runs.identity import RunMismatchError, check_run, encoder_identity
from analysis.runs.layout import (
    ABLATION_CONFUSION_CSV,
    ABLATION_CSV,
    ABLATION_GROUPS_CSV,
    ENTROPY_DISTRIBUTION_PDF,
    FEATURES,
    INDEX_HTML,
    MANIFEST,
    NEURONS_CSV,
    NEURONS_FILES,
    NEURONS_PT,
    OVER_ZERO,
    PROBE_RESULTS,
    STABILITY_CSV,
    STATS,
    SUMMARY_MD,
    TOP_CLIPS,
    OutputTree,
    compare_cross_task_name,
    compare_table_name,
    compare_within_task_name,
    cross_task_name,
    run_folder,
    task_table_name,
    within_task_name,
)
from analysis.runs.read import best_checkpoint
from analysis.runs.write import stability_paths
from callbacks import AblationCallback, ActivationStatsCallback
from datamodules import EVARDataModule
from datamodules.evar import resolve_evar_root
from datamodules.tasks import UnknownTaskError
from lightning_modules import AudioClassifier, FeatureExtractor

log = logging.getLogger("aape.pipeline")

STAGE_NAMES = (
    "data",
    "sae",
    "stats",
    "identify",
    "report",
    "compare",
    "stability",
    "probe",
    "ablation",
    "gallery",
    "features",
    "stimuli",
    "tuning",
    "tuning_report",
    "steering",
    "steering_report",
    "summary",
)
#: Keys of the ``ablation`` section that are not AblationCallback arguments.
_ABLATION_PIPELINE_KEYS = ("batch_size",)
#: Per-task options that override the ``ablation`` section's.
_TASK_ABLATION_KEYS = ("neuron_lists", "shared", "class_aliases")

__all__ = ["Pipeline", "PipelineError", "Runner", "Stage", "instantiate", "load_config", "run_pipeline"]


class Pipeline(TuningStages):
    """Builds the stage list from a validated config (see :func:`analysis.app.config.load_config`)."""

    def __init__(self, cfg: dict[str, Any], force: bool = False) -> None:
        self.cfg = cfg
        self.tree = OutputTree(cfg["out"])
        self.out = self.tree.root
        self.runner = Runner(self.tree, force=force, seed=int(cfg["seed"]))
        self._identity: dict[str, dict[str, Any]] = {}
        check_models(cfg)
        #: feature models (SAE latents as units, :mod:`analysis.app.feature_stages`), added to cfg["models"]
        try:
            self.feature_models = feature_stages.plan(self)
        except ValueError as e:
            raise PipelineError(str(e)) from e
        d = cfg["data"]
        if writer_section(cfg) and not d["evar_root"]:
            self.evar_root = self.tree.synthetic_evar_root
        else:
            try:
                self.evar_root = resolve_evar_root(d["evar_root"])
            except ValueError as e:
                raise PipelineError(
                    f"{cfg['_config_path']}: set data.evar_root (or $EVAR, or data.synthetic, or data.soundfont): {e}"
                )

    # -- paths and builders -----------------------------------------------------------------------
    def run_dir(self, task: str, model: str) -> Path:
        return self.tree.run(task, model)

    def probe_dir(self, task: str, model: str) -> Path:
        return self.tree.probe(task, model)

    def ablation_dir(self, task: str, model: str) -> Path:
        return self.tree.ablation(task, model)

    def evar_task(self, task: str) -> str:
        return self.cfg["tasks"][task]["evar_task"] or task

    def datamodule(self, task: str, encoder: nn.Module, **over: Any) -> EVARDataModule:
        """The task's datamodule at ``encoder``'s sample rate (audio from ``work/<sr>/``)."""
        kw = {**task_data_options(self.cfg, task), "sample_rate": int(encoder.sample_rate), **over}
        return EVARDataModule(evar_root=str(self.evar_root), task=self.evar_task(task), seed=self.cfg["seed"], **kw)

    def manifest_config(self, task: str, model: str, dm: EVARDataModule) -> dict[str, Any]:
        """What the statistics manifest records of this pipeline run."""
        return {
            "pipeline_config": self.cfg["_config_path"],
            "task": task,
            "task_options": self.cfg["tasks"][task],
            "model": model,
            "encoder": self.cfg["models"][model],
            "stats": self.cfg["stats"],
            "trainer": self.cfg["trainer"],
            "seed": self.cfg["seed"],
            "data": dict(dm.hparams),
        }

    def encoder(self, model: str) -> nn.Module:
        return instantiate(self.cfg["models"][model], f"models.{model}")

    def model_identity(self, model: str) -> dict[str, Any]:
        """The model keys of :mod:`analysis.runs.identity` of ``model`` (its encoder is built once)."""
        if model not in self._identity:
            self._identity[model] = encoder_identity(self.encoder(model))
        return self._identity[model]

    def metadata(self, task: str) -> EVARDataModule:
        """The task's datamodule after ``setup()`` for its metadata only (class list, the clips a
        statistics pass predicts): the metadata checks, independent of any model's sample rate."""
        dm = EVARDataModule(
            evar_root=str(self.evar_root),
            task=self.evar_task(task),
            seed=self.cfg["seed"],
            predict_unsplit=self._identify_all(),
            **task_data_options(self.cfg, task),
        )
        dm.setup()
        return dm

    def expected_run(self, task: str, model: str) -> dict[str, Any]:
        """What the run folder of (task, model) must record (:mod:`analysis.runs.identity`): this config's
        encoder (class, name, checkpoint sha256, sites), task, classes, data list and counting settings."""
        dm = self.metadata(task)
        s = self.cfg["stats"]
        return {
            **self.model_identity(model),
            "task": dm.task,
            "classes": dm.classes,
            "data_list_sha256": dm.data_list_sha256(),
            "tokens": s["tokens"],
            "level": s["level"],
            "splits": self._counted_splits(),
        }

    def corrected_tests(self) -> int:
        """The tests of this run that one correction covers: every (task, model, class), once for the AAPE
        set and once for each baseline selector's set (``ablation.selectors``), as the summary corrects."""
        sets_per_class = 1 + len(self.cfg.get("ablation", {}).get("selectors") or [])
        return sets_per_class * len(self.cfg["models"]) * sum(len(self.metadata(t).classes) for t in self.cfg["tasks"])

    def check_run(self, task: str, model: str) -> None:
        """Refuse a run folder that this config's model and data did not make (names both values)."""
        try:
            check_run(
                self.run_dir(task, model),
                self.expected_run(task, model),
                require=True,
                consumer=f"model '{model}' and task '{task}' of {self.cfg['_config_path']}",
            )
        except RunMismatchError as e:
            raise PipelineError(str(e)) from e

    def check_data(self, skip: Iterable[str] = ()) -> None:
        """Before the first stage: read the metadata of every task (except the EVAR tasks in ``skip``:
        synthetic tasks the data stage has yet to write) — the task must exist and pass the metadata
        checks, the splits the stages use must have rows (:meth:`_needed_splits`), and the class names
        of neuron lists, shared groups and top-k classes must be classes of the task. Errors name the file
        and key."""
        cfg, where, skip = self.cfg, self.cfg["_config_path"], set(skip)
        for task in cfg["tasks"]:
            if self.evar_task(task) in skip:
                continue
            try:
                dm = self.metadata(task)
                dm.require_splits(self._needed_splits())
            except (ValueError, FileNotFoundError, UnknownTaskError) as e:
                raise PipelineError(f"{where}: tasks.{task}: {e}") from e
            check_class_names(cfg, task, dm.classes)

    def _needed_splits(self) -> dict[str, str]:
        """Splits every task must have rows in (split → the stage that needs it): train and test (the probe
        fits on train and is tested on test, the ablation tests on test) and each listed identification
        split."""
        needs = {"train": "the probe fits on it", "test": "the probe and the ablation are tested on it"}
        splits = self._counted_splits()
        for s in splits or ():
            needs.setdefault(s, "stats.identify_splits counts it")
        return needs

    def check_ablation_lists(self) -> None:
        """Before the first stage, when the config lists neurons to ablate: each model is built and every
        listed ``[layer, neuron]`` must exist in it."""
        if self.cfg["ablation"]["neuron_lists"] or any(o["neuron_lists"] for o in self.cfg["tasks"].values()):
            for model in [m for m in self.cfg["models"] if m not in self.feature_models]:
                check_neuron_lists(self.cfg, model, self.model_identity(model)["site_neurons"])

    def trainer(self, model: str, task: str, stage: str, callbacks: list) -> pl.Trainer:
        """A Trainer with the ``trainer`` section (one process; see :meth:`multi_process`)."""
        logger = TensorBoardLogger(str(self.tree.tensorboard), name=f"{task}_{model}", version=stage)
        return pl.Trainer(
            callbacks=callbacks,
            logger=logger,
            enable_checkpointing=False,
            enable_model_summary=False,
            **self.cfg["trainer"],
        )

    def multi_process(self) -> bool:
        """Whether the ``trainer`` section runs several processes (then the Lightning stages run through a
        ``train.py`` subprocess: Lightning's DDP launcher re-runs the command line)."""
        t = self.cfg["trainer"]
        d = t["devices"]
        one = d in (1, "1") or (isinstance(d, list) and len(d) == 1) or (d == "auto" and t["accelerator"] == "cpu")
        return int(t.get("num_nodes", 1)) > 1 or not one

    def processes(self) -> Optional[int]:
        """The number of processes the ``trainer`` section asks for, when it says (None: ``auto``, -1)."""
        t = self.cfg["trainer"]
        d = t["devices"]
        per_node = len(d) if isinstance(d, list) else int(d) if str(d).lstrip("-").isdigit() else -1
        return per_node * int(t.get("num_nodes", 1)) if per_node > 0 else None

    # -- the stage list -----------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        cfg = self.cfg
        st = self._data_stages()
        data_ids = [s.id for s in st]
        st += feature_stages.sae_stages(self, data_ids)
        for model in cfg["models"]:
            for task in cfg["tasks"]:
                st += self._statistics_stages(task, model, data_ids)
        for model in cfg["models"]:
            st.append(self._report_stage(model))
        if len(cfg["models"]) >= 2:
            st.append(self._compare_stage())
        for model in cfg["models"]:
            for task in cfg["tasks"]:
                st += self._evaluation_stages(task, model)
        features = feature_stages.features_stage(self)
        st += [features] if features is not None else []
        st += self._tuning_stages() + self._steering_stages()
        st.append(
            Stage(
                "summary",
                "",
                {"v": 2, "summary": self.cfg["summary"]},
                [self.tree.report / SUMMARY_MD, self.tree.report / INDEX_HTML],
                self._summary,
                after=[s.id for s in st],
                owns=[self.tree.report],
            )
        )
        return st

    def _data_stages(self) -> list[Stage]:
        tasks = list(dict.fromkeys(self.evar_task(t) for t in self.cfg["tasks"]))
        return [
            Stage("data", t.key, t.depends, [t.csv], t.write, owns=t.owns)
            for t in data_tasks(self.cfg, self.evar_root, tasks)
        ]

    def _statistics_stages(self, task: str, model: str, data_ids: list[str]) -> list[Stage]:
        cfg, key, rd = self.cfg, f"{task}_{model}", self.run_dir(task, model)
        common = {"model": cfg["models"][model], "task": cfg["tasks"][task], "data": cfg["data"], "seed": cfg["seed"]}
        outs = [rd / OVER_ZERO, rd / STATS, rd / MANIFEST]
        outs += [rd / FEATURES] if cfg["stats"].get("features", True) else []
        outs += [rd / TOP_CLIPS] if cfg["stats"].get("top_k", 0) else []
        stats = Stage(
            "stats",
            key,
            {**common, "stats": cfg["stats"], "trainer": cfg["trainer"], "act_sum": self._act_sum()},
            outs,
            self._bind(self._statistics, task, model),
            after=list(data_ids) + feature_stages.stats_after(self, model),
            owns=[rd],
        )
        ident = Stage(
            "identify",
            key,
            {"identify": owner_kwargs("identify", cfg["identify"]), "top": cfg["tasks"][task]["top_rate"]},
            [rd / NEURONS_CSV, rd / NEURONS_PT],
            self._bind(self._identify, task, model),
            after=[stats.id],
            owns=[rd / f for f in NEURONS_FILES],
        )
        return [stats, ident]

    def _report_stage(self, model: str) -> Stage:
        rep, dest = self.cfg["report"], self.tree.model_report(model)
        outs = [dest / task_table_name(model)]
        outs += [dest / cross_task_name(a, b) for a, b in rep["cross_task"]]
        outs += [dest / within_task_name(t) for t in rep["within_task"]]
        return Stage(
            "report",
            model,
            {"report": rep},
            outs,
            self._bind(self._report, model),
            after=[f"identify-{t}_{model}" for t in self.cfg["tasks"]],
            owns=[dest],
        )

    def _compare_stage(self) -> Stage:
        rep, dest, models = self.cfg["report"], self.tree.compare, list(self.cfg["models"])
        outs = [dest / compare_table_name(models), dest / ENTROPY_DISTRIBUTION_PDF]
        outs += [dest / compare_cross_task_name(a, b) for a, b in rep["cross_task"]]
        outs += [dest / compare_within_task_name(t) for t in rep["within_task"]]
        return Stage(
            "compare",
            "",
            {"report": rep, "models": models},
            outs,
            self._compare,
            after=[f"report-{m}" for m in models],
            owns=[dest],
        )

    def _evaluation_stages(self, task: str, model: str) -> list[Stage]:
        cfg, key = self.cfg, f"{task}_{model}"
        rd, pd_, ad = self.run_dir(task, model), self.probe_dir(task, model), self.ablation_dir(task, model)
        out = []
        if cfg["stability"]["enabled"]:
            out.append(
                Stage(
                    "stability",
                    key,
                    {"stability": cfg["stability"], "identify": owner_kwargs("identify", cfg["identify"])},
                    [rd / STABILITY_CSV],
                    self._bind(self._stability, task, model),
                    after=[f"stats-{key}"],
                    owns=list(stability_paths(rd).values()),
                )
            )
        out.append(
            Stage(
                "probe",
                key,
                {"probe": cfg["probe"]},
                [pd_ / PROBE_RESULTS],
                self._bind(self._probe, task, model),
                after=[f"stats-{key}"],
                owns=[pd_],
            )
        )
        out.append(
            Stage(
                "ablation",
                key,
                {"ablation": owner_kwargs("ablation", cfg["ablation"]), "trainer": cfg["trainer"]},
                [ad / ABLATION_CSV, ad / ABLATION_GROUPS_CSV, ad / ABLATION_CONFUSION_CSV],
                self._bind(self._ablation, task, model),
                after=[f"probe-{key}", f"identify-{key}"],
                owns=[ad],
            )
        )
        if cfg["gallery"]["enabled"]:
            gd = self.tree.gallery(task, model)
            out.append(
                Stage(
                    "gallery",
                    key,
                    {"gallery": cfg["gallery"]},
                    [gd / INDEX_HTML],
                    self._bind(self._gallery, task, model),
                    after=[f"identify-{key}"],
                    owns=[gd],
                )
            )
        return out

    def run(self, only: Optional[Sequence[str]] = None) -> None:
        """Run every stage (``only``: just the stages with those names; the stages they build on must have
        finished with this config). Holds the output lock throughout; first removes what killed writes
        left behind and checks the data."""
        self.out.mkdir(parents=True, exist_ok=True)
        with OutputLock(self.tree, note=str(self.cfg["_config_path"])):
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

    # -- stage implementations ------------------------------------------------------------------------
    @staticmethod
    def _bind(fn: Callable[..., None], *args: Any) -> Callable[[bool], None]:
        return lambda overwrite: fn(*args, overwrite=overwrite)

    def _identify_all(self) -> bool:
        """``stats.identify_splits: all``: predict and count every clip (rows without a split too)."""
        return self.cfg["stats"]["identify_splits"] == IDENTIFY_ALL

    def _counted_splits(self) -> Optional[list[str]]:
        """The statistics callback's ``splits``: None (every predicted clip) under ``all``."""
        return None if self._identify_all() else self.cfg["stats"]["identify_splits"]

    def _act_sum(self) -> bool:
        """Activation sums are computed when asked for or when the ablation replaces neurons by their mean."""
        return bool(self.cfg["stats"].get("act_sum", False)) or self.cfg["ablation"]["replacement"] == "mean"

    def _statistics_callback(
        self, task: str, model: str, staging: Path, dm: EVARDataModule, overwrite: bool
    ) -> dict[str, Any]:
        s = {k: v for k, v in self.cfg["stats"].items() if k != "identify_splits"}
        return {
            **s,
            "out_dir": str(staging),
            "suffix": model,
            "splits": self._counted_splits(),
            "act_sum": self._act_sum(),
            "overwrite": overwrite,
            "config": self.manifest_config(task, model, dm),
        }

    def _statistics(self, task: str, model: str, overwrite: bool) -> None:
        encoder = self.encoder(model)
        dm = self.datamodule(task, encoder, predict_unsplit=self._identify_all())
        staging = self._fresh_staging(task, model)
        cb_args = self._statistics_callback(task, model, staging, dm, overwrite)
        if self.multi_process():
            if self.processes() is not None:
                self._check_enough_clips(task, dm, self.processes())
            del encoder  # the train.py subprocess builds its own
            self._statistics_subprocess(task, model, dm, cb_args)
        else:
            tr = self.trainer(model, task, "stats", [ActivationStatsCallback(**cb_args)])
            tr.predict(FeatureExtractor(encoder), datamodule=dm, return_predictions=False)
        self._place_run(staging, task, model, dm, overwrite)

    def _check_enough_clips(self, task: str, dm: EVARDataModule, processes: int) -> None:
        """Every DDP process needs at least one clip: say so before launching them."""
        dm.setup()
        n = sum(len(ds) for ds in dm.predict_datasets())
        if n < processes:
            raise PipelineError(
                f"{self.cfg['_config_path']}: trainer.devices: task {task!r} has {n} clip{'s' if n != 1 else ''} to "
                f"predict but the statistics stage would run {processes} processes; use trainer.devices <= {n}"
            )

    def _fresh_staging(self, task: str, model: str) -> Path:
        """An empty private folder the statistics callback writes into."""
        staging = self.tree.staging(task, model)
        if staging.exists():
            shutil.rmtree(staging)  # leftovers of an interrupted attempt, never a result
        staging.mkdir(parents=True)
        return staging

    def _place_run(self, staging: Path, task: str, model: str, dm: EVARDataModule, overwrite: bool) -> None:
        """Move the finished run folder (named by the callback after the EVAR task, which a pipeline task
        may alias) to ``runs/<task>_<model>`` in one rename. An existing run folder is replaced only
        under ``--force`` (its old neurons/stability files go with it: they belong to old counts)."""
        src, dst = run_folder(staging, dm.task, model), self.run_dir(task, model)
        if not src.is_dir():
            raise PipelineError(f"stage stats-{task}_{model}: the statistics callback wrote no folder {src}")
        if dst.exists():
            if not overwrite:
                raise PipelineError(f"stage stats-{task}_{model}: {dst} already exists (use --force to replace it)")
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        record_move(src, dst)
        shutil.rmtree(staging)
        try:
            staging.parent.rmdir()  # .staging/ when no other stage is using it
        except OSError:
            pass

    def _statistics_subprocess(self, task: str, model: str, dm: EVARDataModule, cb_args: dict[str, Any]) -> None:
        """Several processes: Lightning's DDP re-launches the command line, so run ``train.py predict``."""
        self._train_py(
            "predict",
            "stats",
            task,
            model,
            {
                "trainer": self._cli_trainer("callbacks.ActivationStatsCallback", cb_args),
                "model": {
                    "class_path": "lightning_modules.FeatureExtractor",
                    "init_args": {"encoder": self.cfg["models"][model]},
                },
                "data": {"class_path": "datamodules.EVARDataModule", "init_args": dict(dm.hparams)},
                "return_predictions": False,
            },
        )

    def _cli_trainer(self, callback: str, args: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.cfg["trainer"],
            "logger": False,
            "enable_checkpointing": False,
            "callbacks": [{"class_path": callback, "init_args": args}],
        }

    def _train_py(self, verb: str, stage: str, task: str, model: str, cli_cfg: dict[str, Any]) -> None:
        """Run ``train.py <verb>`` with ``cli_cfg`` (written to ``.stages/<verb>-<task>_<model>.yaml``)."""
        cli_cfg = {**cli_cfg, "seed_everything": self.cfg["seed"]}
        cfg_path = self.tree.stages / f"{verb}-{task}_{model}.yaml"
        save_text(yaml.safe_dump(cli_cfg, sort_keys=False), cfg_path, overwrite=True)
        train_py = Path(__file__).resolve().parents[2] / "train.py"
        r = subprocess.run([sys.executable, str(train_py), verb, "--config", str(cfg_path)], cwd=str(self.tree.stages))
        if r.returncode != 0:
            raise PipelineError(
                f"stage {stage}-{task}_{model}: train.py {verb} exited with {r.returncode} (config {cfg_path})"
            )

    def _selection(self, task: str) -> dict[str, Any]:
        """The ``identify`` section (its owner's names) with the task's own ``top_rate`` when it has one."""
        sel = owner_kwargs("identify", self.cfg["identify"])
        if self.cfg["tasks"][task]["top_rate"] is not None:
            sel["top_rate"] = self.cfg["tasks"][task]["top_rate"]
        return sel

    def _identify(self, task: str, model: str, overwrite: bool) -> None:
        self.check_run(task, model)
        identify_run(self.run_dir(task, model), overwrite=overwrite, **self._selection(task))

    def _report(self, model: str, overwrite: bool) -> None:
        for task in self.cfg["tasks"]:
            self.check_run(task, model)
        build_report(
            self.tree.runs,
            model,
            spec=ReportSpec(**self.cfg["report"]),
            dest=self.tree.model_report(model),
            tensorboard=self.tree.tensorboard / f"report_{model}",
            overwrite=overwrite,
            tasks=list(self.cfg["tasks"]),
        )

    def _compare(self, overwrite: bool) -> None:
        for model in self.cfg["models"]:
            for task in self.cfg["tasks"]:
                self.check_run(task, model)
        build_compare(
            {m: self.tree.runs for m in self.cfg["models"]},
            spec=ReportSpec(**self.cfg["report"]),
            dest=self.tree.compare,
            overwrite=overwrite,
            tasks=list(self.cfg["tasks"]),
        )

    def _stability(self, task: str, model: str, overwrite: bool) -> None:
        self.check_run(task, model)
        opts = {k: v for k, v in self.cfg["stability"].items() if k != "enabled"}
        stability_run(
            self.run_dir(task, model), seed=int(self.cfg["seed"]), overwrite=overwrite, **self._selection(task), **opts
        )

    def _probe(self, task: str, model: str, overwrite: bool) -> None:
        self.check_run(task, model)
        fit_seeds(
            self.run_dir(task, model),
            self.probe_dir(task, model),
            accelerator=self.cfg["trainer"]["accelerator"],
            tensorboard=str(self.tree.tensorboard),
            name=f"{task}_{model}",
            overwrite=overwrite,
            **self.cfg["probe"],
        )

    def _ablation(self, task: str, model: str, overwrite: bool) -> None:
        self.check_run(task, model)
        a = owner_kwargs(
            "ablation", {k: v for k, v in self.cfg["ablation"].items() if k not in _ABLATION_PIPELINE_KEYS}
        )
        opts = self.cfg["tasks"][task]
        a.update({k: opts[k] for k in _TASK_ABLATION_KEYS if opts[k] is not None})
        if a.get("random_draws") == "auto" and a.get("corrected_tests") is None:
            a["corrected_tests"] = self.corrected_tests()
        cb_args = {
            **a,
            "out_dir": str(self.ablation_dir(task, model)),
            "run_dir": str(self.run_dir(task, model)),
            "overwrite": overwrite,
        }
        encoder = self.encoder(model)
        dm = self.datamodule(
            task, encoder, batch_size=self.cfg["ablation"]["batch_size"] or self.cfg["data"]["batch_size"]
        )
        probe = str(best_checkpoint(self.probe_dir(task, model)))
        if self.multi_process():
            del encoder  # the train.py subprocess builds its own
            self._train_py(
                "test",
                "ablation",
                task,
                model,
                {
                    "trainer": self._cli_trainer("callbacks.AblationCallback", cb_args),
                    "model": {
                        "class_path": "lightning_modules.AudioClassifier",
                        "init_args": {"encoder": self.cfg["models"][model], "probe_checkpoint": probe},
                    },
                    "data": {"class_path": "datamodules.EVARDataModule", "init_args": dict(dm.hparams)},
                    "verbose": False,
                },
            )
            return
        tr = self.trainer(model, task, "ablation", [AblationCallback(**cb_args)])
        tr.test(AudioClassifier(encoder, probe_checkpoint=probe), datamodule=dm, verbose=False)

    def _gallery(self, task: str, model: str, overwrite: bool) -> None:
        self.check_run(task, model)
        opts = {k: v for k, v in self.cfg["gallery"].items() if k != "enabled"}
        build_gallery(
            self.run_dir(task, model),
            dest=self.tree.gallery(task, model),
            evar_root=str(self.evar_root),
            tensorboard=self.tree.tensorboard / f"{task}_{model}" / "gallery",
            overwrite=overwrite,
            **opts,
        )

    def _summary(self, overwrite: bool) -> None:
        write_summary(self.tree, self.cfg["models"], self.cfg["tasks"], overwrite=overwrite, **self.cfg["summary"])


# -- command line -----------------------------------------------------------------------------------
def add_arguments(p: Any) -> None:
    p.add_argument("--config", default=None, help="pipeline YAML (configs/pipeline/*.yaml); required")
    p.add_argument(
        "--print_config",
        action="store_true",
        help="print the config with every default filled in and exit (without --config: the defaults of every section)",
    )
    p.add_argument("--out", default=None, help="output folder (overrides the config's 'out')")
    p.add_argument("--force", action="store_true", help="re-run every stage, replacing existing outputs")
    p.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=STAGE_NAMES,
        metavar="STAGE",
        help=f"run only these stages ({' '.join(STAGE_NAMES)}); earlier stages must be finished",
    )


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record is emitted (callers and tests may
    replace it between pipeline runs in one process)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging() -> None:
    """INFO messages of this project's loggers on stderr (Lightning keeps its own handler)."""
    h = _StderrHandler()
    h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("aape", "analysis", "callbacks", "datamodules", "lightning_modules"):
        lg = logging.getLogger(name)
        if not lg.handlers:
            lg.addHandler(h)
        lg.setLevel(logging.INFO)
        lg.propagate = False


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
