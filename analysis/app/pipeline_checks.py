"""The checks the pipeline makes before its first stage and before a stage reads a run folder (a mixin of
:class:`analysis.app.pipeline.Pipeline`): every task's metadata (the task exists, the splits the stages use
have rows, the class names of the config are classes of the task), every listed neuron exists in its model,
and a run folder was made by this config's model and data (:mod:`analysis.runs.identity`). Errors are
:class:`~analysis.app.config.PipelineError` naming the file and key.
"""

from __future__ import annotations

from typing import Any, Iterable

from analysis.app.config import PipelineError, check_class_names, check_neuron_lists, task_data_options
from analysis.runs.identity import RunMismatchError, check_run
from analysis.app.config_sections import PipelineConfig
from datamodules import EVARDataModule
from datamodules.tasks import UnknownTaskError


class DataChecks:
    """The metadata and run-folder checks (needs the :class:`Pipeline` attributes)."""

    cfg: PipelineConfig

    def metadata(self, task: str) -> EVARDataModule:
        """The task's datamodule after ``setup()`` for its metadata only (class list, the clips a
        statistics pass predicts): the metadata checks, independent of any model's sample rate."""
        dm = EVARDataModule(
            evar_root=str(self.evar_root),
            task=self.evar_task(task),
            seed=self.cfg.seed,
            predict_unsplit=self._identify_all(),
            **task_data_options(self.cfg, task),
        )
        dm.setup()
        return dm

    def expected_run(self, task: str, model: str) -> dict[str, Any]:
        """What the run folder of (task, model) must record (:mod:`analysis.runs.identity`): this config's
        encoder (class, name, checkpoint sha256, sites), task, classes, data list and counting settings."""
        dm = self.metadata(task)
        s = self.cfg.stats
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
        return sets_per_class * len(self.cfg.models) * sum(len(self.metadata(t).classes) for t in self.cfg.tasks)

    def check_run(self, task: str, model: str) -> None:
        """Refuse a run folder that this config's model and data did not make (names both values)."""
        try:
            check_run(
                self.run_dir(task, model),
                self.expected_run(task, model),
                require=True,
                consumer=f"model '{model}' and task '{task}' of {self.cfg.config_path}",
            )
        except RunMismatchError as e:
            raise PipelineError(str(e)) from e

    def check_data(self, skip: Iterable[str] = ()) -> None:
        """Before the first stage: read the metadata of every task (except the EVAR tasks in ``skip``:
        synthetic tasks the data stage has yet to write) — the task must exist and pass the metadata
        checks, the splits the stages use must have rows (:meth:`_needed_splits`), and the class names
        of neuron lists, shared groups and top-k classes must be classes of the task. Errors name the file
        and key."""
        cfg, where, skip = self.cfg, self.cfg.config_path, set(skip)
        for task in cfg.tasks:
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
        if self.cfg.ablation.neuron_lists or any(o["neuron_lists"] for o in self.cfg.tasks.values()):
            for model in [m for m in self.cfg.models if m not in self.feature_models]:
                check_neuron_lists(self.cfg, model, self.model_identity(model)["site_neurons"])
