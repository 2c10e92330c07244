"""Time of the pipeline's ``gallery`` stage on the demo: every (task, model) gallery of
``configs/pipeline/demo.yaml`` built from its run folder, with the config's ``gallery`` options. Target: all
of them together under 60 s.

The demo's ``data``, ``stats`` and ``identify`` stages are run first into ``--out`` (skipped when already
there). The galleries read ``top_clips.pt``, which the statistics pass writes (``stats.top_k`` > 0).

    python benchmarks/gallery_stage.py [--out outputs/bench_gallery] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from analysis.app.config import load_config
from analysis.app.gallery import build_gallery
from analysis.app.pipeline import Pipeline
from analysis.runs.layout import TOP_CLIPS

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 60.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "pipeline" / "demo.yaml"))
    ap.add_argument("--out", default=str(ROOT / "outputs" / "bench_gallery"))
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    cfg = load_config(a.config, out=a.out)
    pipe = Pipeline(cfg)
    pipe.run(["data", "stats", "identify"])
    opts = {k: v for k, v in cfg["gallery"].items() if k != "enabled"}
    runs = [(t, m, pipe.run_dir(t, m)) for m in cfg["models"] for t in cfg["tasks"]]
    for task, model, rd in runs:
        if not (rd / TOP_CLIPS).is_file():
            sys.exit(f"{rd / TOP_CLIPS} missing: the statistics pass did not write it (stats.top_k: 0?)")
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
    print(
        f"gallery stages of the demo: median {statistics.median(totals):.1f} s over {len(totals)} repeat(s) "
        f"(min {min(totals):.1f}, max {max(totals):.1f}); target < {TARGET_SECONDS:.0f} s"
    )


if __name__ == "__main__":
    main()
