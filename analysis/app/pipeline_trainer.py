"""The pipeline's Lightning stages (a mixin of :class:`analysis.app.pipeline.Pipeline`): ``stats``
(``trainer.predict`` with :class:`callbacks.ActivationStatsCallback`) and ``ablation`` (``trainer.test`` of
encoder + frozen probe with :class:`callbacks.AblationCallback`).

With one process they run a Trainer here; when the ``trainer`` section asks for several processes
(:meth:`TrainerStages.multi_process`) they run ``train.py predict|test`` as a subprocess, as Lightning's DDP
launcher re-runs the command line. The statistics callback writes into a private staging folder that is
moved to ``runs/<task>_<model>/`` in one rename once complete.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import yaml
from lightning.pytorch.loggers import TensorBoardLogger

from analysis.app.config import PipelineError, owner_kwargs
from analysis.runs.atomic import record_move, save_text
from analysis.runs.layout import run_folder
from analysis.runs.read import best_checkpoint
from analysis.app.config_sections import PipelineConfig
from callbacks import AblationCallback, ActivationStatsCallback
from datamodules import EVARDataModule
from lightning_modules import AudioClassifier, FeatureExtractor

#: Keys of the ``ablation`` section that are not AblationCallback arguments.
_ABLATION_PIPELINE_KEYS = ("batch_size",)
#: Per-task options that override the ``ablation`` section's.
_TASK_ABLATION_KEYS = ("neuron_lists", "shared", "class_aliases")


class TrainerStages:
    """The ``stats`` and ``ablation`` stage bodies and the Trainer / ``train.py`` launching they share with
    the tuning stages (needs the :class:`Pipeline` attributes)."""

    cfg: PipelineConfig

    def trainer(self, model: str, task: str, stage: str, callbacks: list) -> pl.Trainer:
        """A Trainer with the ``trainer`` section (one process; see :meth:`multi_process`)."""
        logger = TensorBoardLogger(str(self.tree.tensorboard), name=f"{task}_{model}", version=stage)
        return pl.Trainer(
            callbacks=callbacks,
            logger=logger,
            enable_checkpointing=False,
            enable_model_summary=False,
            **self.cfg.trainer,
        )

    def multi_process(self) -> bool:
        """Whether the ``trainer`` section runs several processes (then the Lightning stages run through a
        ``train.py`` subprocess: Lightning's DDP launcher re-runs the command line)."""
        t = self.cfg.trainer
        d = t["devices"]
        one = d in (1, "1") or (isinstance(d, list) and len(d) == 1) or (d == "auto" and t["accelerator"] == "cpu")
        return int(t.num_nodes) > 1 or not one

    def processes(self) -> Optional[int]:
        """The number of processes the ``trainer`` section asks for, when it says (None: ``auto``, -1)."""
        t = self.cfg.trainer
        d = t["devices"]
        per_node = len(d) if isinstance(d, list) else int(d) if str(d).lstrip("-").isdigit() else -1
        return per_node * int(t.num_nodes) if per_node > 0 else None

    def _statistics_callback(
        self, task: str, model: str, staging: Path, dm: EVARDataModule, overwrite: bool
    ) -> dict[str, Any]:
        s = {k: v for k, v in self.cfg.stats.items() if k != "identify_splits"}
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
                f"{self.cfg.config_path}: trainer.devices: task {task!r} has {n} clip{'s' if n != 1 else ''} to "
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
                    "init_args": {"encoder": self.cfg.models[model]},
                },
                "data": {"class_path": "datamodules.EVARDataModule", "init_args": dict(dm.hparams)},
                "return_predictions": False,
            },
        )

    def _cli_trainer(self, callback: str, args: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.cfg.trainer,
            "logger": False,
            "enable_checkpointing": False,
            "callbacks": [{"class_path": callback, "init_args": args}],
        }

    def _train_py(self, verb: str, stage: str, task: str, model: str, cli_cfg: dict[str, Any]) -> None:
        """Run ``train.py <verb>`` with ``cli_cfg`` (written to ``.stages/<verb>-<task>_<model>.yaml``)."""
        cli_cfg = {**cli_cfg, "seed_everything": self.cfg.seed}
        cfg_path = self.tree.stages / f"{verb}-{task}_{model}.yaml"
        save_text(yaml.safe_dump(cli_cfg, sort_keys=False), cfg_path, overwrite=True)
        train_py = Path(__file__).resolve().parents[2] / "train.py"
        r = subprocess.run([sys.executable, str(train_py), verb, "--config", str(cfg_path)], cwd=str(self.tree.stages))
        if r.returncode != 0:
            raise PipelineError(
                f"stage {stage}-{task}_{model}: train.py {verb} exited with {r.returncode} (config {cfg_path})"
            )

    def _ablation(self, task: str, model: str, overwrite: bool) -> None:
        self.check_run(task, model)
        a = owner_kwargs("ablation", {k: v for k, v in self.cfg.ablation.items() if k not in _ABLATION_PIPELINE_KEYS})
        opts = self.cfg.tasks[task]
        a.update({k: opts[k] for k in _TASK_ABLATION_KEYS if opts[k] is not None})
        if a.get("random_draws") == "auto" and a.get("corrected_tests") is None:
            a["corrected_tests"] = self.corrected_tests()
        cb_args = {
            **a,
            "out_dir": str(self.ablation_dir(task, model)),
            "run_dir": str(self.run_dir(task, model)),
            "overwrite": overwrite,
        }
        batch = self.cfg.ablation.batch_size or self.cfg.data.batch_size
        self._test_probe_with(AblationCallback, "ablation", task, model, cb_args, batch)

    def _test_probe_with(
        self, callback: type, stage: str, task: str, model: str, cb_args: dict[str, Any], batch_size: int
    ) -> None:
        """``trainer.test`` of the model's encoder + its frozen probe with ``callback(**cb_args)`` on the task's
        test split: in this process, or through a ``train.py test`` subprocess when the ``trainer`` section
        asks for several processes."""
        encoder = self.encoder(model)
        dm = self.datamodule(task, encoder, batch_size=batch_size)
        probe = str(best_checkpoint(self.probe_dir(task, model)))
        if self.multi_process():
            del encoder  # the train.py subprocess builds its own
            self._train_py(
                "test",
                stage,
                task,
                model,
                {
                    "trainer": self._cli_trainer(f"callbacks.{callback.__name__}", cb_args),
                    "model": {
                        "class_path": "lightning_modules.AudioClassifier",
                        "init_args": {"encoder": self.cfg.models[model], "probe_checkpoint": probe},
                    },
                    "data": {"class_path": "datamodules.EVARDataModule", "init_args": dict(dm.hparams)},
                    "verbose": False,
                },
            )
            return
        tr = self.trainer(model, task, stage, [callback(**cb_args)])
        tr.test(AudioClassifier(encoder, probe_checkpoint=probe), datamodule=dm, verbose=False)
