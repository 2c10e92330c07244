"""The tuning stages of the pipeline (a mixin of :class:`analysis.app.pipeline.Pipeline`), with the
``tuning`` section (:class:`analysis.app.tuning.TuningOptions`):

* ``stimuli-<dimension>``        — the stimulus set, an EVAR task ``tuning_<dimension>`` under
  ``stimuli/`` (:func:`datamodules.stimuli.write_stimuli`; verb ``stimuli``), written at 16 kHz (read
  resampled by a model of another rate);
* ``tuning-<dimension>_<model>`` — the counting pass over it (``trainer.predict`` with
  :class:`callbacks.ActivationStatsCallback`, ``class_sums`` on, every clip counted, no embeddings or
  top clips; through ``train.py`` for several processes like ``stats``) → ``runs/tuning_<dimension>_<model>/``,
  then the curves and table → ``models/<model>/tuning/<dimension>.pt`` + ``.csv`` (verb ``tuning``);
* ``tuning_report-<model>``      — figures of each task's class units along every dimension, the range
  claims ``tuning_ranges.csv`` and the tuning page ``index.html`` in ``models/<model>/tuning/``;

and with ``steering.enabled`` (:class:`analysis.app.tuning.SteeringOptions`):

* ``steering-<task>_<model>``    — ``trainer.test`` of encoder + frozen probe with
  :class:`callbacks.SteeringCallback` (every class set and its random sets at every gain, one pass; through
  ``train.py test`` for several processes like ``ablation``) → ``steering/<task>_<model>/``;
* ``steering_report-<model>``    — every task's rows in one ``models/<model>/steering.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analysis.app.runner import Stage
from analysis.app.tuning import tuning_from_run
from analysis.app.tuning_report import build_tuning_report
from analysis.runs.atomic import save_csv
from analysis.runs.layout import (
    INDEX_HTML,
    STATS,
    STEERING_CSV,
    TUNING_RANGES_CSV,
    figure_preview,
    tuning_csv,
    tuning_figure_name,
    tuning_pt,
)
from analysis.runs.read import read_table
from analysis.app.config_sections import PipelineConfig
from callbacks import ActivationStatsCallback, SteeringCallback
from datamodules import EVARDataModule
from datamodules.stimuli import stimulus_task, write_stimuli
from datamodules.tasks import sr_dir
from lightning_modules import FeatureExtractor

#: Sample rate of the stimulus files.
STIMULUS_RATE = 16000


class TuningStages:
    """Stage builders and implementations of the tuning stages (needs the :class:`Pipeline` attributes)."""

    cfg: PipelineConfig

    def _stimulus_spec(self, dimension: str) -> dict[str, Any]:
        tu = self.cfg.tuning
        return {
            "dimension": dimension,
            "values": (tu["values"] or {}).get(dimension),
            "clips_per_value": tu.clips_per_value,
            "duration": tu.duration,
            "source": tu.source,
            "seed": int(self.cfg.seed if tu.seed is None else tu.seed),
        }

    def _tuning_stages(self) -> list[Stage]:
        tu, tree = self.cfg.tuning, self.tree
        dims = list(tu.dimensions)
        if not dims:
            return []
        out = []
        for d in dims:
            task = stimulus_task(d)
            csv = tree.stimuli / "evar" / "metadata" / f"{task}.csv"
            audio = tree.stimuli / "work" / sr_dir(STIMULUS_RATE) / task
            out.append(
                Stage(
                    "stimuli",
                    d,
                    self._stimulus_spec(d),
                    [csv],
                    self._bind(self._write_stimuli, d),
                    owns=[csv, csv.with_suffix(".yaml"), audio],
                )
            )
        for model in self.cfg.models:
            td = tree.tuning(model)
            for d in dims:
                rd = self.run_dir(stimulus_task(d), model)
                files = [td / tuning_pt(d), td / tuning_csv(d)]
                out.append(
                    Stage(
                        "tuning",
                        f"{d}_{model}",
                        {
                            "stimuli": self._stimulus_spec(d),
                            "model": self.cfg.models[model],
                            "curve": tu.curve,
                            "tokens": self.cfg.stats.tokens,
                            "level": self.cfg.stats.level,
                            "trainer": self.cfg.trainer,
                        },
                        [rd / STATS, *files],
                        self._bind(self._tuning, d, model),
                        after=[f"stimuli-{d}"],
                        owns=[rd, *files],
                    )
                )
            figs = [td / tuning_figure_name(d, t) for d in dims for t in self.cfg.tasks]
            outs = figs + [td / TUNING_RANGES_CSV, td / INDEX_HTML]
            out.append(
                Stage(
                    "tuning_report",
                    model,
                    {"dimensions": dims, "tasks": list(self.cfg.tasks)},
                    outs,
                    self._bind(self._tuning_report, model),
                    after=[f"tuning-{d}_{model}" for d in dims] + [f"identify-{t}_{model}" for t in self.cfg.tasks],
                    owns=outs + [figure_preview(f) for f in figs],
                )
            )
        return out

    def _write_stimuli(self, dimension: str, overwrite: bool) -> None:
        spec = self._stimulus_spec(dimension)
        write_stimuli(self.tree.stimuli, sample_rate=STIMULUS_RATE, overwrite=overwrite, **spec)

    def _stimulus_datamodule(self, dimension: str, sample_rate: int) -> EVARDataModule:
        tu, data = self.cfg.tuning, self.cfg.data
        rate = {} if sample_rate == STIMULUS_RATE else {"resample": True, "file_sample_rate": STIMULUS_RATE}
        return EVARDataModule(
            evar_root=str(self.tree.stimuli),
            task=stimulus_task(dimension),
            seed=self.cfg.seed,
            sample_rate=sample_rate,
            batch_size=tu.batch_size or data["batch_size"],
            num_workers=data["num_workers"],
            **rate,
        )

    def _tuning(self, dimension: str, model: str, overwrite: bool) -> None:
        task = stimulus_task(dimension)
        encoder = self.encoder(model)
        dm = self._stimulus_datamodule(dimension, int(encoder.sample_rate))
        staging = self._fresh_staging(task, model)
        s = self.cfg.stats
        cb_args = {
            "out_dir": str(staging),
            "suffix": model,
            "tokens": s["tokens"],
            "level": s["level"],
            "splits": None,
            "top_k": 0,
            "features": False,
            "class_sums": True,
            "overwrite": overwrite,
            "config": {
                "pipeline_config": self.cfg.config_path,
                "tuning": self._stimulus_spec(dimension),
                "model": model,
                "encoder": self.cfg.models[model],
                "data": dict(dm.hparams),
            },
        }
        if self.multi_process():
            del encoder  # the train.py subprocess builds its own
            self._statistics_subprocess(task, model, dm, cb_args)
        else:
            tr = self.trainer(model, task, "tuning", [ActivationStatsCallback(**cb_args)])
            tr.predict(FeatureExtractor(encoder), datamodule=dm, return_predictions=False)
        self._place_run(staging, task, model, dm, overwrite)
        tuning_from_run(
            self.run_dir(task, model),
            dimension,
            self.tree.tuning(model),
            curve=self.cfg.tuning.curve,
            overwrite=overwrite,
        )

    def _tuning_report(self, model: str, overwrite: bool) -> None:
        for t in self.cfg.tasks:
            self.check_run(t, model)
        runs: dict[str, Path] = {t: self.run_dir(t, model) for t in self.cfg.tasks}
        build_tuning_report(
            model,
            list(self.cfg.tuning.dimensions),
            runs,
            self.tree.tuning(model),
            overwrite=overwrite,
            tensorboard=self.tree.tensorboard / f"tuning_{model}",
        )

    # -- steering ----------------------------------------------------------------------------------
    def _steering_stages(self) -> list[Stage]:
        so, tree = self.cfg.steering, self.tree
        if not so.enabled:
            return []
        out = []
        for model in self._steered("models"):
            keys = [f"{t}_{model}" for t in self._steered("tasks")]
            for task, key in zip(self._steered("tasks"), keys):
                sd = tree.steering_run(task, model)
                out.append(
                    Stage(
                        "steering",
                        key,
                        {"steering": so, "seed": self.cfg.ablation.seed, "trainer": self.cfg.trainer},
                        [sd / STEERING_CSV],
                        self._bind(self._steering, task, model),
                        after=[f"probe-{key}", f"identify-{key}"],
                        owns=[sd],
                    )
                )
            out.append(
                Stage(
                    "steering_report",
                    model,
                    {"tasks": self._steered("tasks")},
                    [tree.steering(model)],
                    self._bind(self._steering_report, model),
                    after=[f"steering-{k}" for k in keys],
                )
            )
        return out

    def _steered(self, key: str) -> list[str]:
        """The config's models or tasks that the steering stages cover (``steering.models`` / ``.tasks``)."""
        return list(self.cfg.steering[key] or self.cfg[key])

    def _steering(self, task: str, model: str, overwrite: bool) -> None:
        self.check_run(task, model)
        so = self.cfg.steering
        cb_args = {
            "out_dir": str(self.tree.steering_run(task, model)),
            "run_dir": str(self.run_dir(task, model)),
            "gains": so.gains,
            "random_draws": so.random_draws,
            "seed": self.cfg.ablation.seed,
            "conditions_per_pass": so.conditions_per_pass,
            "task": task,
            "overwrite": overwrite,
        }
        batch = so.batch_size or self.cfg.ablation.batch_size or self.cfg.data.batch_size
        self._test_probe_with(SteeringCallback, "steering", task, model, cb_args, batch)

    def _steering_report(self, model: str, overwrite: bool) -> None:
        parts = [read_table(self.tree.steering_run(t, model) / STEERING_CSV) for t in self._steered("tasks")]
        save_csv(pd.concat(parts, ignore_index=True), self.tree.steering(model), overwrite=overwrite)
