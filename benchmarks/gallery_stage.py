"""Time of the pipeline's ``gallery`` stage on the demo: every (task, model) gallery of
``configs/pipeline/demo.yaml`` built from its run folder, with the config's ``gallery`` options. Target: all
of them together under 60 s.

The demo's ``data``, ``stats`` and ``identify`` stages are run first into ``--out`` (skipped when already
there). The galleries need ``top_clips.pt`` from the statistics pass; ``--oracle`` writes it instead with the
brute-force reference of ``tests/_top_clips.py`` where it is missing (a stand-in for a statistics pass that
does not write it; the oracle's own time is not counted).

    python benchmarks/gallery_stage.py [--out outputs/bench_gallery] [--oracle] [--repeats 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _top_clips import brute_force_top_clips, write_top_clips  # noqa: E402 - the tests' oracle (--oracle)
from analysis.app.config import load_config  # noqa: E402
from analysis.app.gallery import build_gallery  # noqa: E402
from analysis.app.pipeline import Pipeline  # noqa: E402
from analysis.app.specs import instantiate, run_sources  # noqa: E402
from analysis.runs.layout import TOP_CLIPS  # noqa: E402
from analysis.runs.read import read_run  # noqa: E402
from datamodules import EVARDataModule  # noqa: E402

TARGET_SECONDS = 60.0


def ensure_top_clips(run_dir: Path, k: int) -> None:
    run = read_run(run_dir)
    enc, data = run_sources(run.manifest, run_dir)
    dm = EVARDataModule(**{**data, "num_workers": 0})
    dm.setup()
    splits = run.stats.get("splits") or ("train", "valid", "test")
    write_top_clips(run_dir, brute_force_top_clips(instantiate(enc, str(run_dir)), dm, k=k,
                                                   tokens=run.stats.get("tokens", "all"), splits=splits))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "pipeline" / "demo.yaml"))
    ap.add_argument("--out", default=str(ROOT / "outputs" / "bench_gallery"))
    ap.add_argument("--oracle", action="store_true", help="write missing top_clips.pt with the test oracle")
    ap.add_argument("--k", type=int, default=8, help="clips per neuron of the oracle's top_clips.pt")
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    cfg = load_config(a.config, out=a.out)
    pipe = Pipeline(cfg)
    pipe.run(["data", "stats", "identify"])
    opts = {k: v for k, v in cfg["gallery"].items() if k != "enabled"}
    runs = [(t, m, pipe.run_dir(t, m)) for m in cfg["models"] for t in cfg["tasks"]]
    for task, model, rd in runs:
        if not (rd / TOP_CLIPS).is_file():
            if not a.oracle:
                sys.exit(f"{rd / TOP_CLIPS} missing: the statistics pass did not write it (use --oracle)")
            t0 = time.perf_counter()
            ensure_top_clips(rd, a.k)
            print(f"oracle top_clips.pt for {task}_{model}: {time.perf_counter() - t0:.1f} s (not counted)")
    totals = []
    for r in range(a.repeats):
        total = 0.0
        with tempfile.TemporaryDirectory() as tmp:
            for task, model, rd in runs:
                t0 = time.perf_counter()
                index = build_gallery(rd, dest=Path(tmp) / f"{task}_{model}", evar_root=str(pipe.evar_root), **opts)
                dt = time.perf_counter() - t0
                total += dt
                shown = len(list((index.parent / "neurons").glob("*.html")))
                images = len(list((index.parent / "images").glob("*.png")))
                print(f"repeat {r}: gallery {task}_{model}: {dt:.1f} s ({shown} neurons, {images} images)")
        totals.append(total)
        print(f"repeat {r}: all gallery stages {total:.1f} s")
    print(f"gallery stages of the demo: median {statistics.median(totals):.1f} s over {len(totals)} repeat(s) "
          f"(min {min(totals):.1f}, max {max(totals):.1f}); target < {TARGET_SECONDS:.0f} s")


if __name__ == "__main__":
    main()
