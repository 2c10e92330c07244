"""The pipeline's analysis stages (a mixin of :class:`analysis.app.pipeline.Pipeline`): ``identify``,
``report``, ``compare``, ``stability``, ``probe``, ``gallery`` and ``summary``, each calling the same
public function as its CLI verb after checking the run folders it reads against the config.
"""

from __future__ import annotations

from typing import Any

from analysis.app.compare import build_compare
from analysis.app.config import owner_kwargs
from analysis.app.gallery import build_gallery
from analysis.app.identify import identify_run
from analysis.app.probe import fit_seeds
from analysis.app.report import ReportSpec, build_report
from analysis.app.stability import stability_run
from analysis.app.summary import write_summary
from analysis.app.config_sections import PipelineConfig


class AnalysisStages:
    """Stage bodies that read run folders and write tables, figures and pages (needs the :class:`Pipeline`
    attributes)."""

    cfg: PipelineConfig

    def _selection(self, task: str) -> dict[str, Any]:
        """The ``identify`` section (its owner's names) with the task's own ``top_rate`` when it has one."""
        sel = owner_kwargs("identify", self.cfg.identify)
        if self.cfg.tasks[task].top_rate is not None:
            sel["top_rate"] = self.cfg.tasks[task].top_rate
        return sel

    def _identify(self, task: str, model: str, overwrite: bool) -> None:
        self.check_run(task, model)
        identify_run(self.run_dir(task, model), overwrite=overwrite, **self._selection(task))

    def _report(self, model: str, overwrite: bool) -> None:
        for task in self.cfg.tasks:
            self.check_run(task, model)
        build_report(
            self.tree.runs,
            model,
            spec=ReportSpec(**self.cfg.report),
            dest=self.tree.model_report(model),
            tensorboard=self.tree.tensorboard / f"report_{model}",
            overwrite=overwrite,
            tasks=list(self.cfg.tasks),
        )

    def _compare(self, overwrite: bool) -> None:
        for model in self.cfg.models:
            for task in self.cfg.tasks:
                self.check_run(task, model)
        build_compare(
            {m: self.tree.runs for m in self.cfg.models},
            spec=ReportSpec(**self.cfg.report),
            dest=self.tree.compare,
            overwrite=overwrite,
            tasks=list(self.cfg.tasks),
        )

    def _stability(self, task: str, model: str, overwrite: bool) -> None:
        self.check_run(task, model)
        opts = {k: v for k, v in self.cfg.stability.items() if k != "enabled"}
        stability_run(
            self.run_dir(task, model), seed=int(self.cfg.seed), overwrite=overwrite, **self._selection(task), **opts
        )

    def _probe(self, task: str, model: str, overwrite: bool) -> None:
        self.check_run(task, model)
        fit_seeds(
            self.run_dir(task, model),
            self.probe_dir(task, model),
            accelerator=self.cfg.trainer.accelerator,
            tensorboard=str(self.tree.tensorboard),
            name=f"{task}_{model}",
            overwrite=overwrite,
            **self.cfg.probe,
        )

    def _gallery(self, task: str, model: str, overwrite: bool) -> None:
        self.check_run(task, model)
        opts = {k: v for k, v in self.cfg.gallery.items() if k != "enabled"}
        build_gallery(
            self.run_dir(task, model),
            dest=self.tree.gallery(task, model),
            evar_root=str(self.evar_root),
            tensorboard=self.tree.tensorboard / f"{task}_{model}" / "gallery",
            overwrite=overwrite,
            **opts,
        )

    def _summary(self, overwrite: bool) -> None:
        write_summary(self.tree, self.cfg.models, self.cfg.tasks, overwrite=overwrite, **self.cfg.summary)
