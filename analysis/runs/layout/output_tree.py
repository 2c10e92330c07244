"""The folders of a pipeline output tree (see :mod:`analysis.runs.layout`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.runs.layout.gallery_folder import GALLERY_DIR
from analysis.runs.layout.result_folders import STEERING_CSV, TUNING_DIR
from analysis.runs.layout.statistics_folder import run_folder
from analysis.runs.layout.sae_folder import site_slug


@dataclass(frozen=True)
class OutputTree:
    """The folders of a pipeline run under ``root``::

    evar/                     synthetic EVAR root (when the config asks for synthetic data)
    runs/<task>_<model>/      statistics run folders (+ neurons.*, stability.csv, threshold_sweep.csv)
    models/<model>/           task table and cross-/within-task figures of one model
    models/<model>/tuning/    tuning curves per stimulus dimension (<dimension>.pt/.csv, figures)
    models/<model>/steering.csv  steering curves (gain grid) of every task's class sets
    stimuli/                  EVAR root of the tuning stimulus sets (tuning_<dimension>)
    steering/<task>_<model>/  steering.csv, steering.pdf of one task (gain grid on each class set)
    compare/                  the models side by side (pipelines with two or more models)
    probes/<task>_<model>/    probe_results.csv, probe_seed<seed>.ckpt
    ablation/<task>_<model>/  the ablation files
    gallery/<task>_<model>/   listening gallery of one run (index.html, neurons/, images/, audio/)
    saes/<model>/<site>/      a trained sparse autoencoder (sae.pt, metrics.csv, activation_cache/)
    report/                   summary.md, index.html, ablation_summary.csv (every ablated set's verdict),
                              tasks.csv, threshold_free.csv,
                              reproduction.csv
    tensorboard/              TensorBoard logs of every stage
    .stages/                  stage markers: <stage>-<key>.json when finished, <stage>-<key>.running.json
                              while running (left behind by an interrupted stage); configs of subprocess stages
    .staging/                 private folders a stage writes into before one rename
    .pipeline.lock            held (flock) by the pipeline writing into this tree
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, task: str, model: str) -> Path:
        return run_folder(self.runs, task, model)

    def probe(self, task: str, model: str) -> Path:
        return self.probes / f"{task}_{model}"

    def ablation(self, task: str, model: str) -> Path:
        return self.ablations / f"{task}_{model}"

    def gallery(self, task: str, model: str) -> Path:
        return self.galleries / f"{task}_{model}"

    @property
    def saes(self) -> Path:
        return self.root / "saes"

    def sae(self, model: str, site: str) -> Path:
        """The SAE folder of ``model``'s site ``site``."""
        return self.saes / model / site_slug(site)

    @property
    def galleries(self) -> Path:
        return self.root / GALLERY_DIR

    def model_report(self, model: str) -> Path:
        return self.models / model

    def tuning(self, model: str) -> Path:
        """``models/<model>/tuning/``: the tuning tables, curves and figures of one model."""
        return self.models / model / TUNING_DIR

    def steering(self, model: str) -> Path:
        """``models/<model>/steering.csv``."""
        return self.models / model / STEERING_CSV

    def steering_run(self, task: str, model: str) -> Path:
        """``steering/<task>_<model>/``: the steering pass of one task (``steering.csv``, ``steering.pdf``)."""
        return self.root / "steering" / f"{task}_{model}"

    @property
    def stimuli(self) -> Path:
        """The EVAR root of the tuning stimulus sets (never the user's EVAR root)."""
        return self.root / "stimuli"

    @property
    def probes(self) -> Path:
        return self.root / "probes"

    @property
    def ablations(self) -> Path:
        return self.root / "ablation"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def folders(self) -> list[Path]:
        """Every folder the pipeline writes into (what it may clean up; nothing else under ``root``)."""
        return [
            self.runs,
            self.models,
            self.compare,
            self.probes,
            self.ablations,
            self.galleries,
            self.report,
            self.saes,
            self.synthetic_evar_root,
            self.stimuli,
            self.root / "steering",
            self.stages,
            self.staging_root,
        ]

    @property
    def compare(self) -> Path:
        return self.root / "compare"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def synthetic_evar_root(self) -> Path:
        return self.root / "evar"

    @property
    def stages(self) -> Path:
        return self.root / ".stages"

    def staging(self, task: str, model: str) -> Path:
        return self.staging_root / f"{task}_{model}"

    @property
    def staging_root(self) -> Path:
        return self.root / ".staging"

    @property
    def lock(self) -> Path:
        """The lock file a running pipeline holds (one pipeline per output tree at a time)."""
        return self.root / ".pipeline.lock"

    def stage_marker(self, stage_id: str) -> Path:
        """Marker of a finished stage (its config hash and outputs)."""
        return self.stages / f"{stage_id}.json"

    def stage_running(self, stage_id: str) -> Path:
        """Marker of a stage that started and has not finished (present after an interruption)."""
        return self.stages / f"{stage_id}.running.json"
