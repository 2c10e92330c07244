"""``python -m analysis pipeline --config <yaml> [--out DIR] [--force]``: the whole study in one command.

Stages, for every (model, task) of the config:

1. ``data``      — write synthetic EVAR tasks (only when the config has ``data.synthetic``);
2. ``stats``     — ``trainer.predict`` with :class:`callbacks.ActivationStatsCallback` (counts on the
                   identification splits, embeddings of every clip) → ``runs/<task>_<model>/``;
3. ``identify``  — AAPE selection → ``neurons.csv`` / ``neurons.pt`` in the run folder;
4. ``report``    — task statistics table, cross-/within-task figures per model → ``reports/<model>/``;
5. ``stability`` — resampling stability and threshold sweep (optional);
6. ``probe``     — linear probe on the frozen embeddings, one fit per seed → ``probes/<task>_<model>/``;
7. ``ablation``  — ``trainer.test`` of encoder + frozen probe with :class:`callbacks.AblationCallback`
                   on the evaluation split → ``ablation/<task>_<model>/``;
8. ``summary``   — ``report/summary.md`` and ``report/index.html`` computed from the files above.

Each finished stage leaves a marker ``.stages/<stage>-<key>.json`` holding a hash of the part of the config
it depends on. A re-run skips a stage whose marker matches and whose outputs exist; a marker from a
different config is an error unless ``--force`` (outputs are never overwritten silently). A failing stage
stops the pipeline with a message naming it; outputs of completed stages stay intact.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

from analysis.io import save_json, save_text

log = logging.getLogger("aape.pipeline")

TOP_KEYS = {"out", "seed", "data", "tasks", "models", "trainer", "stats", "identify", "report", "stability",
            "probe", "ablation", "description"}


class PipelineError(RuntimeError):
    """A stage failed or the config is invalid; the message names the stage / key."""


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------
DEFAULTS: dict[str, Any] = {
    "out": "outputs/pipeline",
    "seed": 0,
    "data": {"evar_root": None, "synthetic": None, "batch_size": 16, "num_workers": 0},
    "tasks": {},
    "models": {},
    "trainer": {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"},
    "stats": {"tokens": "all", "level": "token", "identify_splits": ["train", "valid"]},
    "identify": {"mode": "default", "top_rate": None, "filter_rate": 0.95, "activation_bar_ratio": 0.95},
    "report": {"cross_task": [], "within_task": []},
    "stability": {"enabled": True, "replicates": 50, "scheme": "clips", "sweep": True},
    "probe": {"seeds": [42, 43, 44], "max_epochs": 200, "patience": 20, "lr": 3e-5, "weight_decay": 1e-8,
              "batch_size": None},
    "ablation": {"random_draws": 10, "k_grid": [], "gain": 0.0, "mode": "gain", "neuron_lists": [],
                 "shared": [], "index_plus_one": False, "seed": 0, "batch_size": None,
                 "class_aliases": None, "random_for_topk": True, "strategy": "expand"},
}


def _merge(base: dict, over: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(out.get(k), dict) and isinstance(v, dict) and k not in ("tasks", "models"):
            out[k] = _merge(out[k], v, f"{where}.{k}")
        else:
            out[k] = v
    return out


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(obj: Any, where: str) -> Any:
    """Replace ``${VAR}`` in every string of ``obj`` by the environment variable; unset → error."""
    if isinstance(obj, dict):
        return {k: expand_env(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, str):
        def sub(m: "re.Match[str]") -> str:
            if m.group(1) not in os.environ:
                raise PipelineError(f"{where}: environment variable {m.group(1)} is not set (used as {obj!r})")
            return os.environ[m.group(1)]

        return _VAR.sub(sub, obj)
    return obj


def load_config(path: str | Path, out: Optional[str] = None) -> dict[str, Any]:
    """Read and validate a pipeline YAML; ``out`` overrides its ``out``."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise PipelineError(f"{p}: cannot read pipeline config: {e}") from e
    except yaml.YAMLError as e:
        raise PipelineError(f"{p}: malformed YAML: {e}") from e
    if not isinstance(raw, dict):
        raise PipelineError(f"{p}: a pipeline config must be a mapping, got {type(raw).__name__}")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise PipelineError(f"{p}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    raw = expand_env(raw, str(p))
    cfg = _merge(DEFAULTS, raw, str(p))
    for section in ("data", "trainer", "stats", "identify", "report", "stability", "probe", "ablation"):
        extra = set(cfg[section]) - set(DEFAULTS[section])
        if extra:
            raise PipelineError(f"{p}: unknown key(s) {sorted(extra)} in '{section}'; "
                                f"allowed: {sorted(DEFAULTS[section])}")
    if out is not None:
        cfg["out"] = out
    if not cfg["tasks"]:
        raise PipelineError(f"{p}: 'tasks' is empty: name at least one task")
    if not cfg["models"]:
        raise PipelineError(f"{p}: 'models' is empty: name at least one model (class_path/init_args)")
    if isinstance(cfg["tasks"], list):
        cfg["tasks"] = {t: {} for t in cfg["tasks"]}
    for t, spec in cfg["tasks"].items():
        if spec is None:
            cfg["tasks"][t] = {}
        elif not isinstance(spec, dict):
            raise PipelineError(f"{p}: tasks.{t} must be a mapping of options, got {spec!r}")
    for m, spec in cfg["models"].items():
        if not isinstance(spec, dict) or "class_path" not in spec:
            raise PipelineError(f"{p}: models.{m} needs a 'class_path' (and optional 'init_args')")
    cfg["_config_path"] = str(p)
    return cfg


def instantiate(spec: dict[str, Any], where: str) -> Any:
    """Build ``class_path(**init_args)``; nested ``{class_path, init_args}`` values are built too."""
    cp = spec.get("class_path")
    if not isinstance(cp, str) or "." not in cp:
        raise PipelineError(f"{where}: class_path must be 'module.Class', got {cp!r}")
    mod, _, name = cp.rpartition(".")
    try:
        cls = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise PipelineError(f"{where}: cannot import {cp}: {e}") from e
    kwargs = {}
    for k, v in (spec.get("init_args") or {}).items():
        kwargs[k] = instantiate(v, f"{where}.{k}") if isinstance(v, dict) and "class_path" in v else v
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise PipelineError(f"{where}: {cp}({', '.join(kwargs)}): {e}") from e


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Stage bookkeeping
# ----------------------------------------------------------------------------------------------
@dataclass
class Stage:
    """One unit of work: ``name`` (data/stats/...), ``key`` (e.g. ``<task>_<model>``), the config slice it
    depends on (hashed), its output paths, and the function that produces them (called with
    ``overwrite``)."""

    name: str
    key: str
    depends: Any
    outputs: list[Path]
    run: Callable[[bool], None]
    after: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.key}" if self.key else self.name


class Runner:
    """Runs stages in order with skip/resume semantics (module docstring)."""

    def __init__(self, out: Path, force: bool = False, seed: Optional[int] = None) -> None:
        self.out = out
        self.force = force
        self.seed = seed
        self.marks = out / ".stages"
        self.hashes: dict[str, str] = {}
        self.timings: list[tuple[str, str, float]] = []

    def _marker(self, st: Stage) -> Path:
        return self.marks / f"{st.id}.json"

    def note(self, st: Stage) -> str:
        """Record (and return) the stage's hash: its config slice plus the hashes of what it builds on."""
        h = _hash({"depends": st.depends, "after": [self.hashes.get(a, "") for a in st.after]})
        self.hashes[st.id] = h
        return h

    def run(self, st: Stage) -> None:
        h = self.note(st)
        mk = self._marker(st)
        t0 = time.perf_counter()
        if mk.exists() and not self.force:
            old = json.loads(mk.read_text(encoding="utf-8"))
            if old.get("hash") == h and all(Path(o).exists() for o in st.outputs):
                log.info("stage %s: outputs exist and match the config, skipped", st.id)
                self.timings.append((st.id, "skipped", 0.0))
                return
            if old.get("hash") != h:
                raise PipelineError(
                    f"stage {st.id}: outputs in {self.out} were made with a different config "
                    f"(marker {mk}); re-run with --force to replace them, or choose another --out")
        existing = [o for o in st.outputs if Path(o).exists()]
        if existing and not self.force and not mk.exists():
            raise PipelineError(f"stage {st.id}: {existing[0]} already exists but no finished-stage marker does "
                                f"(an interrupted run or another tool's output); use --force to replace it")
        log.info("stage %s: running", st.id)
        try:
            if self.seed is not None:
                from lightning.pytorch import seed_everything

                seed_everything(self.seed, verbose=False)
            st.run(self.force)
        except PipelineError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised with the stage name
            raise PipelineError(f"stage {st.id} failed: {type(e).__name__}: {e} "
                                f"(outputs of completed stages are intact in {self.out})") from e
        missing = [str(o) for o in st.outputs if not Path(o).exists()]
        if missing:
            raise PipelineError(f"stage {st.id} finished but did not produce {missing}")
        dt = time.perf_counter() - t0
        self.timings.append((st.id, "ran", dt))
        save_json({"stage": st.id, "hash": h, "outputs": [str(o) for o in st.outputs], "seconds": round(dt, 2),
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, mk, overwrite=True)
        log.info("stage %s: done in %.1f s", st.id, dt)


# ----------------------------------------------------------------------------------------------
# Stage implementations
# ----------------------------------------------------------------------------------------------
class Pipeline:
    """Builds the stage list from a validated config (see :func:`load_config`)."""

    def __init__(self, cfg: dict[str, Any], force: bool = False) -> None:
        self.cfg = cfg
        self.out = Path(cfg["out"])
        self.runner = Runner(self.out, force=force, seed=int(cfg["seed"]))
        d = cfg["data"]
        if d.get("evar_root"):
            self.evar_root = Path(d["evar_root"])
        elif d.get("synthetic"):
            self.evar_root = self.out / "evar"
        elif os.environ.get("EVAR"):
            self.evar_root = Path(os.environ["EVAR"])
        else:
            raise PipelineError(f"{cfg['_config_path']}: set data.evar_root (or $EVAR, or data.synthetic)")

    # paths
    def run_dir(self, task: str, model: str) -> Path:
        return self.out / "runs" / f"{task}_{model}"

    def probe_dir(self, task: str, model: str) -> Path:
        return self.out / "probes" / f"{task}_{model}"

    def ablation_dir(self, task: str, model: str) -> Path:
        return self.out / "ablation" / f"{task}_{model}"

    def report_dir(self, model: str) -> Path:
        return self.out / "reports" / model

    def tb_dir(self) -> Path:
        return self.out / "tensorboard"

    # helpers
    def task_opts(self, task: str) -> dict[str, Any]:
        return dict(self.cfg["tasks"][task])

    def datamodule(self, task: str, **over: Any) -> Any:
        from datamodules import EVARDataModule

        opts = self.task_opts(task)
        dm_keys = {"label_map", "fold", "unit_sec", "task_def", "resample", "limit"}
        kw = {k: v for k, v in opts.items() if k in dm_keys}
        d = self.cfg["data"]
        kw.update(evar_root=str(self.evar_root), task=opts.get("evar_task", task), batch_size=d["batch_size"],
                  num_workers=d["num_workers"], seed=self.cfg["seed"])
        kw.update(over)
        return EVARDataModule(**kw)

    def manifest_config(self, task: str, model: str, dm: Any) -> dict[str, Any]:
        """What the statistics manifest records of this pipeline run."""
        return {"pipeline_config": self.cfg["_config_path"], "task": task, "task_options": self.task_opts(task),
                "model": model, "encoder": self.cfg["models"][model], "stats": self.cfg["stats"],
                "trainer": self.cfg["trainer"], "seed": self.cfg["seed"], "data": dict(dm.hparams)}

    def encoder(self, model: str) -> Any:
        return instantiate(self.cfg["models"][model], f"models.{model}")

    def trainer(self, model: str, task: str, stage: str, callbacks: list, devices: Optional[int] = None,
                **extra: Any) -> Any:
        import lightning.pytorch as pl
        from lightning.pytorch.loggers import TensorBoardLogger

        t = dict(self.cfg["trainer"])
        if devices is not None:
            t["devices"] = devices
            if devices == 1:
                t["strategy"] = "auto"
        logger = TensorBoardLogger(str(self.tb_dir()), name=f"{task}_{model}", version=stage)
        return pl.Trainer(callbacks=callbacks, logger=logger, enable_checkpointing=False,
                          enable_model_summary=False, **t, **extra)

    # stages ---------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        cfg, out = self.cfg, self.out
        st: list[Stage] = []
        syn = cfg["data"].get("synthetic")
        data_after: list[str] = []
        if syn:
            for task in cfg["tasks"]:
                evar_task = self.task_opts(task).get("evar_task", task)
                csv = self.evar_root / "evar" / "metadata" / f"{evar_task}.csv"
                st.append(Stage("data", evar_task, {"synthetic": syn, "task": evar_task}, [csv],
                                self._data_fn(evar_task, syn)))
                data_after.append(st[-1].id)
        for model in cfg["models"]:
            for task in cfg["tasks"]:
                key = f"{task}_{model}"
                rd = self.run_dir(task, model)
                common = {"model": cfg["models"][model], "task": cfg["tasks"][task], "data": cfg["data"],
                          "seed": cfg["seed"]}
                s_stats = Stage("stats", key, {**common, "stats": cfg["stats"], "trainer": cfg["trainer"]},
                                [rd / "over_zero.pt", rd / "stats.pt", rd / "features.pt", rd / "manifest.json"],
                                self._stats_fn(task, model), after=list(data_after))
                s_id = Stage("identify", key, {"identify": cfg["identify"], "top": self.task_opts(task).get("top_rate")},
                             [rd / "neurons.csv", rd / "neurons.pt"], self._identify_fn(task, model),
                             after=[s_stats.id])
                st += [s_stats, s_id]
        for model in cfg["models"]:
            ids = [f"identify-{t}_{model}" for t in cfg["tasks"]]
            rep = cfg["report"]
            outs = [self.report_dir(model) / f"task_level_neuron_statistics_{model}.csv"]
            outs += [self.report_dir(model) / f"cross_task-{a}-{b}.pdf" for a, b in rep["cross_task"]]
            outs += [self.report_dir(model) / f"within_task-{t}.pdf" for t in rep["within_task"]]
            st.append(Stage("report", model, {"report": rep}, outs, self._report_fn(model), after=ids))
        for model in cfg["models"]:
            for task in cfg["tasks"]:
                key = f"{task}_{model}"
                rd, pd_, ad = self.run_dir(task, model), self.probe_dir(task, model), self.ablation_dir(task, model)
                if cfg["stability"].get("enabled", True):
                    st.append(Stage("stability", key, {"stability": cfg["stability"], "identify": cfg["identify"]},
                                    [rd / "stability.csv"], self._stability_fn(task, model),
                                    after=[f"stats-{key}"]))
                st.append(Stage("probe", key, {"probe": cfg["probe"]}, [pd_ / "probe_results.csv"],
                                self._probe_fn(task, model), after=[f"stats-{key}"]))
                st.append(Stage("ablation", key, {"ablation": cfg["ablation"], "trainer": cfg["trainer"]},
                                [ad / "ablation.csv", ad / "ablation_summary.csv"], self._ablation_fn(task, model),
                                after=[f"probe-{key}", f"identify-{key}"]))
        st.append(Stage("summary", "", {"v": 1}, [out / "report" / "summary.md", out / "report" / "index.html"],
                        self._summary_fn(), after=[s.id for s in st]))
        return st

    def run(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for s in self.stages():
            self.runner.run(s)

    # implementations -------------------------------------------------------------------------
    def _data_fn(self, task: str, syn: dict) -> Callable[[bool], None]:
        def fn(overwrite: bool) -> None:
            from datamodules.synthetic import write_task

            opts = {k: v for k, v in syn.items() if k in {"clips_per_class", "duration", "octaves"}}
            write_task(self.evar_root, task, seed=int(syn.get("seed", self.cfg["seed"])), overwrite=overwrite, **opts)

        return fn

    def _stats_fn(self, task: str, model: str) -> Callable[[bool], None]:
        def fn(overwrite: bool) -> None:
            devices = self.cfg["trainer"].get("devices", 1)
            if isinstance(devices, int) and devices > 1:
                self._stats_subprocess(task, model, overwrite)
                return
            from callbacks import ActivationStatsCallback
            from lightning_modules import FeatureExtractor

            s = self.cfg["stats"]
            dm = self.datamodule(task)
            staging = self._fresh_staging(task, model)
            cb = ActivationStatsCallback(out_dir=str(staging), suffix=model, tokens=s["tokens"],
                                         level=s["level"], splits=s["identify_splits"], overwrite=overwrite,
                                         config=self.manifest_config(task, model, dm))
            tr = self.trainer(model, task, "stats", [cb])
            tr.predict(FeatureExtractor(self.encoder(model)), datamodule=dm, return_predictions=False)
            self._place_run(staging, task, model, dm, overwrite)

        return fn

    def _fresh_staging(self, task: str, model: str) -> Path:
        """An empty private folder the statistics callback writes into (``.staging/<task>_<model>``)."""
        staging = self.out / ".staging" / f"{task}_{model}"
        if staging.exists():
            shutil.rmtree(staging)  # leftovers of an interrupted attempt, never a result
        staging.mkdir(parents=True)
        return staging

    def _place_run(self, staging: Path, task: str, model: str, dm: Any, overwrite: bool) -> None:
        """Move the finished run folder (named by the callback after the EVAR task, which a pipeline task
        may alias) to ``runs/<task>_<model>`` in one rename. An existing run folder is replaced only
        under ``--force`` (its old neurons/stability files go with it: they belong to old counts)."""
        src, dst = staging / f"{dm.task}_{model}", self.run_dir(task, model)
        if not src.is_dir():
            raise PipelineError(f"stage stats-{task}_{model}: the statistics callback wrote no folder {src}")
        if dst.exists():
            if not overwrite:
                raise PipelineError(f"stage stats-{task}_{model}: {dst} already exists (use --force to replace it)")
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        shutil.rmtree(staging)
        try:
            staging.parent.rmdir()  # .staging/ when no other stage is using it
        except OSError:
            pass

    def _stats_subprocess(self, task: str, model: str, overwrite: bool) -> None:
        """devices > 1: Lightning's DDP re-launches the command line, so run ``train.py predict``."""
        s, t = self.cfg["stats"], self.cfg["trainer"]
        dm = self.datamodule(task)
        staging = self._fresh_staging(task, model)
        cli_cfg = {
            "trainer": {**t, "logger": False, "enable_checkpointing": False, "callbacks": [{
                "class_path": "callbacks.ActivationStatsCallback",
                "init_args": {"out_dir": str(staging), "suffix": model, "tokens": s["tokens"],
                              "level": s["level"], "splits": s["identify_splits"], "overwrite": overwrite,
                              "config": self.manifest_config(task, model, dm)}}]},
            "seed_everything": self.cfg["seed"],
            "model": {"class_path": "lightning_modules.FeatureExtractor",
                      "init_args": {"encoder": self.cfg["models"][model]}},
            "data": {"class_path": "datamodules.EVARDataModule", "init_args": dict(dm.hparams)},
            "return_predictions": False,
        }
        cfg_path = self.out / ".stages" / f"predict-{task}_{model}.yaml"
        save_text(yaml.safe_dump(cli_cfg, sort_keys=False), cfg_path, overwrite=True)
        root = Path(__file__).resolve().parent.parent
        r = subprocess.run([sys.executable, str(root / "train.py"), "predict", "--config", str(cfg_path)],
                           cwd=str(self.out / ".stages"))
        if r.returncode != 0:
            raise PipelineError(f"stage stats-{task}_{model}: train.py predict exited with {r.returncode} "
                                f"(config {cfg_path})")
        self._place_run(staging, task, model, dm, overwrite)

    def _identify_fn(self, task: str, model: str) -> Callable[[bool], None]:
        def fn(overwrite: bool) -> None:
            from analysis.identify import identify_run

            i = self.cfg["identify"]
            top = self.task_opts(task).get("top_rate", i.get("top_rate"))
            identify_run(self.run_dir(task, model), mode=i["mode"], top_rate=top, filter_rate=i["filter_rate"],
                         activation_bar_ratio=i["activation_bar_ratio"], overwrite=overwrite)

        return fn

    def _report_fn(self, model: str) -> Callable[[bool], None]:
        def fn(overwrite: bool) -> None:
            from analysis.report import ReportSpec, build_report

            rep = self.cfg["report"]
            spec = ReportSpec(cross_task=[tuple(p) for p in rep["cross_task"]],
                              within_task=list(rep["within_task"]))
            build_report(self.out / "runs", model, spec=spec, dest=self.report_dir(model),
                         tensorboard=self.tb_dir() / f"report_{model}", overwrite=overwrite)

        return fn

    def _stability_fn(self, task: str, model: str) -> Callable[[bool], None]:
        def fn(overwrite: bool) -> None:
            from analysis.stability import stability_run

            s, i = self.cfg["stability"], self.cfg["identify"]
            top = self.task_opts(task).get("top_rate", i.get("top_rate"))
            stability_run(self.run_dir(task, model), mode=i["mode"], top_rate=top, filter_rate=i["filter_rate"],
                          activation_bar_ratio=i["activation_bar_ratio"], scheme=s["scheme"],
                          replicates=int(s["replicates"]), seed=int(self.cfg["seed"]), sweep=bool(s["sweep"]),
                          overwrite=overwrite)

        return fn

    def _probe_fn(self, task: str, model: str) -> Callable[[bool], None]:
        def fn(overwrite: bool) -> None:
            from analysis.probe_seeds import fit_seeds

            p = self.cfg["probe"]
            fit_seeds(self.run_dir(task, model), self.probe_dir(task, model), seeds=list(p["seeds"]),
                      max_epochs=int(p["max_epochs"]), patience=int(p["patience"]), lr=float(p["lr"]),
                      weight_decay=float(p["weight_decay"]), batch_size=p["batch_size"],
                      accelerator=self.cfg["trainer"].get("accelerator", "cpu"),
                      tensorboard=str(self.tb_dir()), name=f"{task}_{model}", overwrite=overwrite)

        return fn

    def _ablation_fn(self, task: str, model: str) -> Callable[[bool], None]:
        def fn(overwrite: bool) -> None:
            from analysis.probe_seeds import best_checkpoint
            from callbacks import AblationCallback
            from lightning_modules import AudioClassifier

            a = self.cfg["ablation"]
            opts = self.task_opts(task)
            cb = AblationCallback(
                out_dir=str(self.ablation_dir(task, model)), run_dir=str(self.run_dir(task, model)),
                neuron_lists=opts.get("neuron_lists", a["neuron_lists"]), shared=opts.get("shared", a["shared"]),
                k_grid=list(a["k_grid"]), random_draws=int(a["random_draws"]), index_plus_one=bool(a["index_plus_one"]),
                gain=float(a["gain"]), mode=a["mode"], seed=int(a["seed"]),
                random_for_topk=bool(a["random_for_topk"]), strategy=a["strategy"],
                class_aliases=opts.get("class_aliases", a["class_aliases"]), overwrite=overwrite)
            ckpt = best_checkpoint(self.probe_dir(task, model))
            bs = a.get("batch_size") or self.cfg["data"]["batch_size"]
            dm = self.datamodule(task, batch_size=bs)
            tr = self.trainer(model, task, "ablation", [cb], devices=1)
            tr.test(AudioClassifier(self.encoder(model), probe_checkpoint=str(ckpt)), datamodule=dm, verbose=False)

        return fn

    def _summary_fn(self) -> Callable[[bool], None]:
        def fn(overwrite: bool) -> None:
            write_report(self, overwrite=overwrite)

        return fn


# ----------------------------------------------------------------------------------------------
# Final report
# ----------------------------------------------------------------------------------------------
def result_files(out: Path, skip: Path) -> list[str]:
    """Result files under ``out`` (relative, sorted), leaving out hidden folders (stage markers, staging),
    TensorBoard logs, the synthetic audio and ``skip`` (the report folder itself)."""
    left_out = {"tensorboard"}
    files = []
    for p in out.rglob("*"):
        rel = p.relative_to(out)
        if (not p.is_file() or p.parent == skip or any(part.startswith(".") for part in rel.parts)
                or left_out & set(rel.parts) or rel.parts[:2] == ("evar", "work")):
            continue
        files.append(rel.as_posix())
    return sorted(files)


def write_report(pl_: Pipeline, overwrite: bool = False) -> None:
    """``report/summary.md`` + ``report/index.html`` + ``report/headline.csv`` from the stage outputs."""
    import pandas as pd

    from analysis.io import save_csv
    from analysis.summary import (ReportInputs, findings, headline_rows, selection_warnings, task_rows,
                                  write_index_html, write_summary_md)

    out, cfg = pl_.out, pl_.cfg
    dest = out / "report"
    heads, abl, manifests, probes, notes = [], {}, {}, [], {}
    for model in cfg["models"]:
        for task in cfg["tasks"]:
            rd, ad = pl_.run_dir(task, model), pl_.ablation_dir(task, model)
            abl[(model, task)] = ad / "ablation.csv"
            notes[(model, task)] = selection_warnings(rd)
            heads.append(headline_rows(model, task, rd, ad / "ablation.csv"))
            manifests[str(rd.relative_to(out))] = json.loads((rd / "manifest.json").read_text(encoding="utf-8"))
            pr = pl_.probe_dir(task, model) / "probe_results.csv"
            if pr.exists():
                df = pd.read_csv(pr)
                df.insert(0, "task", task)
                df.insert(0, "model", model)
                probes.append(df)
    headline = pd.concat(heads, ignore_index=True)
    tasks = task_rows(headline, abl)
    files = result_files(out, skip=dest)
    inp = ReportInputs(tasks=tasks, headline=headline, findings=findings(tasks, notes),
                       figures=["../" + f for f in files if f.endswith(".pdf")],
                       files=["../" + f for f in files] + (["../evar/work/"]
                                                          if (out / "evar" / "work").is_dir() else []),
                       manifests=manifests, probe=pd.concat(probes, ignore_index=True) if probes else None)
    save_csv(headline, dest / "headline.csv", overwrite=overwrite)
    save_csv(tasks, dest / "tasks.csv", overwrite=overwrite)
    save_text(write_summary_md(inp), dest / "summary.md", overwrite=overwrite)
    save_text(write_index_html(inp), dest / "index.html", overwrite=overwrite)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="pipeline YAML (configs/pipeline/*.yaml)")
    p.add_argument("--out", default=None, help="output folder (overrides the config's 'out')")
    p.add_argument("--force", action="store_true", help="re-run every stage, replacing existing outputs")
    p.add_argument("--only", nargs="*", default=None,
                   help="run only stages whose name is listed (data stats identify report stability probe "
                        "ablation summary); earlier stages must be finished")
    return p


def _setup_logging() -> None:
    """INFO messages of this project's loggers on stderr (Lightning keeps its own handler)."""
    h = logging.StreamHandler()
    h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("aape", "analysis", "callbacks", "datamodules", "lightning_modules"):
        lg = logging.getLogger(name)
        if not lg.handlers:
            lg.addHandler(h)
        lg.setLevel(logging.INFO)
        lg.propagate = False


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    try:
        cfg = load_config(args.config, out=args.out)
        pipe = Pipeline(cfg, force=args.force)
        t0 = time.perf_counter()
        pipe.out.mkdir(parents=True, exist_ok=True)
        for s in pipe.stages():
            if args.only is not None and s.name not in args.only:
                pipe.runner.note(s)
                continue
            pipe.runner.run(s)
        dt = time.perf_counter() - t0
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    ran = sum(1 for _, how, _ in pipe.runner.timings if how == "ran")
    skipped = sum(1 for _, how, _ in pipe.runner.timings if how == "skipped")
    print(f"[aape] pipeline finished in {dt:.1f} s ({ran} stages ran, {skipped} skipped); "
          f"report: {pipe.out / 'report' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
