"""The pipeline's stage list (a mixin of :class:`analysis.app.pipeline.Pipeline`): which stages a config
makes, for every (model, task), with the config each one's skip/resume key is computed from, the files
it writes, the folders it owns and the stages it runs after (:class:`analysis.app.runner.Stage`). The
stage bodies: :mod:`analysis.app.pipeline_trainer`, :mod:`analysis.app.pipeline_analysis`,
:mod:`analysis.app.pipeline_tuning`, :mod:`analysis.app.feature_stages`, :mod:`analysis.app.task_data`.
"""

from __future__ import annotations

from typing import Any, Callable

from analysis.app import feature_stages
from analysis.app.config import owner_kwargs
from analysis.app.runner import Stage
from analysis.app.task_data import data_tasks
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
    compare_cross_task_name,
    compare_table_name,
    compare_within_task_name,
    cross_task_name,
    task_table_name,
    within_task_name,
)
from analysis.runs.write import stability_paths
from analysis.app.config_sections import PipelineConfig


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


class StageList:
    """The stage builders (needs the :class:`Pipeline` attributes)."""

    cfg: PipelineConfig

    def stages(self) -> list[Stage]:
        cfg = self.cfg
        st = self._data_stages()
        data_ids = [s.id for s in st]
        st += feature_stages.sae_stages(self, data_ids)
        for model in cfg.models:
            for task in cfg.tasks:
                st += self._statistics_stages(task, model, data_ids)
        for model in cfg.models:
            st.append(self._report_stage(model))
        if len(cfg.models) >= 2:
            st.append(self._compare_stage())
        for model in cfg.models:
            for task in cfg.tasks:
                st += self._evaluation_stages(task, model)
        features = feature_stages.features_stage(self)
        st += [features] if features is not None else []
        st += self._tuning_stages() + self._steering_stages()
        st.append(
            Stage(
                "summary",
                "",
                {"v": 2, "summary": self.cfg.summary},
                [self.tree.report / SUMMARY_MD, self.tree.report / INDEX_HTML],
                self._summary,
                after=[s.id for s in st],
                owns=[self.tree.report],
            )
        )
        return st

    def _data_stages(self) -> list[Stage]:
        tasks = list(dict.fromkeys(self.evar_task(t) for t in self.cfg.tasks))
        return [
            Stage("data", t.key, t.depends, [t.csv], t.write, owns=t.owns)
            for t in data_tasks(self.cfg, self.evar_root, tasks)
        ]

    def _statistics_stages(self, task: str, model: str, data_ids: list[str]) -> list[Stage]:
        cfg, key, rd = self.cfg, f"{task}_{model}", self.run_dir(task, model)
        common = {"model": cfg.models[model], "task": cfg.tasks[task], "data": cfg.data, "seed": cfg.seed}
        outs = [rd / OVER_ZERO, rd / STATS, rd / MANIFEST]
        outs += [rd / FEATURES] if cfg.stats.features else []
        outs += [rd / TOP_CLIPS] if cfg.stats.top_k else []
        stats = Stage(
            "stats",
            key,
            {**common, "stats": cfg.stats, "trainer": cfg.trainer, "act_sum": self._act_sum()},
            outs,
            self._bind(self._statistics, task, model),
            after=list(data_ids) + feature_stages.stats_after(self, model),
            owns=[rd],
        )
        ident = Stage(
            "identify",
            key,
            {"identify": owner_kwargs("identify", cfg.identify), "top": cfg.tasks[task].top_rate},
            [rd / NEURONS_CSV, rd / NEURONS_PT],
            self._bind(self._identify, task, model),
            after=[stats.id],
            owns=[rd / f for f in NEURONS_FILES],
        )
        return [stats, ident]

    def _report_stage(self, model: str) -> Stage:
        rep, dest = self.cfg.report, self.tree.model_report(model)
        outs = [dest / task_table_name(model)]
        outs += [dest / cross_task_name(a, b) for a, b in rep["cross_task"]]
        outs += [dest / within_task_name(t) for t in rep["within_task"]]
        return Stage(
            "report",
            model,
            {"report": rep},
            outs,
            self._bind(self._report, model),
            after=[f"identify-{t}_{model}" for t in self.cfg.tasks],
            owns=[dest],
        )

    def _compare_stage(self) -> Stage:
        rep, dest, models = self.cfg.report, self.tree.compare, list(self.cfg.models)
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
        if cfg.stability.enabled:
            out.append(
                Stage(
                    "stability",
                    key,
                    {"stability": cfg.stability, "identify": owner_kwargs("identify", cfg.identify)},
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
                {"probe": cfg.probe},
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
                {"ablation": owner_kwargs("ablation", cfg.ablation), "trainer": cfg.trainer},
                [ad / ABLATION_CSV, ad / ABLATION_GROUPS_CSV, ad / ABLATION_CONFUSION_CSV],
                self._bind(self._ablation, task, model),
                after=[f"probe-{key}", f"identify-{key}"],
                owns=[ad],
            )
        )
        if cfg.gallery.enabled:
            gd = self.tree.gallery(task, model)
            out.append(
                Stage(
                    "gallery",
                    key,
                    {"gallery": cfg.gallery},
                    [gd / INDEX_HTML],
                    self._bind(self._gallery, task, model),
                    after=[f"identify-{key}"],
                    owns=[gd],
                )
            )
        return out

    @staticmethod
    def _bind(fn: Callable[..., None], *args: Any) -> Callable[[bool], None]:
        return lambda overwrite: fn(*args, overwrite=overwrite)
