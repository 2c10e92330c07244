"""Cost of the ablation stage at the default number of matched draws vs today's R = 8, on the demo.

For each (task, model) of a finished demo run folder (read only): the test batches are decoded once into
memory; the *new* ablation (the config's ``ablation`` section: ``random_draws: auto``, shared draws, the
sequential stop) is first run once, untimed, on those batches to learn its rounds (which draws each round
runs); then, batch by batch and in an order that alternates from batch to batch, the time of *today's*
ablation of the batch (R = 8 per set, each set its own draws, lowest-entropy sets 4, no stop: one pass) and
of the new one (every round's conditions on the batch) are measured back to back. Printed: per pair and
pooled, the median of the per-batch ratios new / today with quartiles, the conditions each runs, and the
cost per test (seconds per set tested against draws, summed over the pairs). Audio decoding is excluded
(a later round re-reads the test split from disk in the real stage).

    python benchmarks/ablation_draws.py --run /tmp/draws_demo [--config configs/pipeline/demo.yaml]
                                        [--pairs synth_octave_sine_crepe_tiny ...] [--batches 0] [--repeats 2]

``--count-from TODAY_RUN`` instead compares the conditions that finished ablation stages ran (today's run
folder vs ``--run``, from ``ablation_conditions.json``): every condition goes through every test clip, so
their ratio is the stage's cost ratio up to the later rounds' re-reading of the test split.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch


from analysis.app.config import load_config
from analysis.app.pipeline import _ABLATION_PIPELINE_KEYS, Pipeline
from analysis.runs.layout import OutputTree
from analysis.runs.read import best_checkpoint, read_ablation_conditions
from callbacks.ablation import AblationCallback
from callbacks.draw_rounds import DrawRounds
from callbacks.owned_rows import reduce_counts
from lightning_modules import AudioClassifier

TODAY = dict(random_draws=8, lowest_entropy_draws=4, share_draws=False, draws_stop_after=None)
ONE_PROCESS = SimpleNamespace(world_size=1)


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a finished demo output folder (read only)")
    ap.add_argument("--config", default="configs/pipeline/demo.yaml")
    ap.add_argument("--pairs", nargs="*", default=None, help="<task>_<model> (default: every pair)")
    ap.add_argument("--batches", type=int, default=0, help="test batches per pair (0: all)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--count-from", default=None, help="a finished run folder of today's ablation: count only")
    return ap.parse_args()


def count_conditions(p: Pipeline, today: Path, pairs: list[tuple[str, str]]) -> None:
    """Conditions run by the finished ablation stages of ``today`` and of ``p``'s folder, per pair."""
    tot = [0, 0]
    for t, m in pairs:
        ran = []
        for root in (today, p.out):
            rec = read_ablation_conditions(OutputTree(root).ablation(t, m))
            ran.append(len(rec["conditions"]))
        tests = sum(
            c["kind"] in ("class", "explicit", "shared") and c.get("profile") is not None
            for c in read_ablation_conditions(p.ablation_dir(t, m))["conditions"]
        )
        tot = [tot[0] + ran[0], tot[1] + ran[1]]
        print(f"{t}_{m}: conditions {ran[0]} today vs {ran[1]} ({ran[1] / ran[0]:.2f} x), {tests} tested sets")
    print(f"ALL: conditions {tot[0]} today vs {tot[1]} ({tot[1] / tot[0]:.2f} x) (target <= 2)")


def callback(p: Pipeline, task: str, model: str, **over) -> AblationCallback:
    a = {k: v for k, v in p.cfg["ablation"].items() if k not in _ABLATION_PIPELINE_KEYS}
    a.update(
        {
            k: p.cfg["tasks"][task][k]
            for k in ("neuron_lists", "shared", "class_aliases")
            if p.cfg["tasks"][task][k] is not None
        }
    )
    if a.get("random_draws") == "auto" and a.get("corrected_tests") is None:
        a["corrected_tests"] = p.corrected_tests()
    a.update(over, figures=False)
    return AblationCallback(out_dir="unused", run_dir=str(p.run_dir(task, model)), **a)


def drive(cb: AblationCallback, module, batches, rounds: list[list[str]] | None = None) -> list[list[str]]:
    """Run ``cb``'s rounds over ``batches`` as the callback does in a test pass; returns the rounds (given:
    replays those rounds' conditions instead of choosing them)."""
    every = cb.conditions
    by_name = {c.name: c for c in every}
    dr = DrawRounds(every, cb.classes, cb.draws_stop_after, cb._max_draws)
    cb._rounds = dr  # the callback's round state, as on_test_start sets it
    if rounds is not None:
        for i, names in enumerate(rounds):
            cb._start_round([by_name[n] for n in names], module.encoder, "cpu")
            for b in batches:
                cb._score(module, b, 0, 0, module(b["audio"], b.get("length")) if i == 0 else None)
        return rounds
    conds = dr.next_round()
    first = True
    while conds:
        cb._start_round(conds, module.encoder, "cpu")
        for b in batches:
            cb._score(module, b, 0, 0, module(b["audio"], b.get("length")) if first else None)
        counts = reduce_counts(ONE_PROCESS, [cb.correct, cb.confusion, cb.n])
        dr.finish_round(*counts[:2], counts[2] if first else None)
        first = False
        conds = dr.next_round()
    return dr.history


def bench_pair(p: Pipeline, task: str, model: str, a: argparse.Namespace) -> dict:
    encoder = p.encoder(model)
    module = AudioClassifier(encoder, probe_checkpoint=str(best_checkpoint(p.probe_dir(task, model)))).eval()
    dm = p.datamodule(task, encoder, batch_size=p.cfg["ablation"]["batch_size"] or p.cfg["data"]["batch_size"])
    dm.setup("test")
    batches = list(dm.test_dataloader())
    batches = batches[: a.batches] if a.batches else batches
    old, new = callback(p, task, model, **TODAY), callback(p, task, model)
    with torch.inference_mode():
        for cb in (old, new):
            cb.build(encoder, module.classes)
            cb._register(encoder)
        try:
            old_rounds = [[c.name for c in old.conditions]]
            new_rounds = drive(new, module, batches)  # untimed: which draws each round runs
            tests = sum(c.profile is not None and c.kind in ("class", "explicit", "shared") for c in new.conditions)
            ratios, t_old, t_new = [], 0.0, 0.0
            for r in range(a.repeats):
                for i, b in enumerate(batches):
                    runs = [(old, old_rounds), (new, new_rounds)]
                    times = {}
                    for cb, rounds in runs if (i + r) % 2 == 0 else runs[::-1]:
                        t0 = time.perf_counter()
                        drive(cb, module, [b], rounds)
                        times[id(cb)] = time.perf_counter() - t0
                    ratios.append(times[id(new)] / times[id(old)])
                    t_old += times[id(old)] / a.repeats
                    t_new += times[id(new)] / a.repeats
        finally:
            old._remove()
            new._remove()
    return dict(
        pair=f"{task}_{model}",
        ratios=ratios,
        t_old=t_old,
        t_new=t_new,
        tests=tests,
        old_conditions=len(old_rounds[0]),
        new_conditions=sum(map(len, new_rounds)),
        rounds=len(new_rounds),
        draws=new.resolved_draws,
        clips=sum(int(b["label"].numel()) for b in batches),
    )


def quartiles(rs: list[float]) -> tuple[float, float, float]:
    return tuple(statistics.quantiles(rs, n=4)) if len(rs) > 1 else (rs[0],) * 3


def main() -> None:
    a = parse()
    torch.manual_seed(0)
    cfg = load_config(a.config, out=a.run)
    p = Pipeline(cfg)
    pairs = [(t, m) for t in cfg["tasks"] for m in cfg["models"]]
    if a.pairs:
        pairs = [(t, m) for t, m in pairs if f"{t}_{m}" in a.pairs]
    print(
        f"{a.config} on {a.run}: today R = 8 (lowest-entropy 4, own draws, one pass) vs the default "
        f"(random_draws {cfg['ablation']['random_draws']}, draws_stop_after {cfg['ablation']['draws_stop_after']}, "
        f"shared); torch threads {torch.get_num_threads()}"
    )
    if a.count_from:
        count_conditions(p, Path(a.count_from), pairs)
        return
    results = []
    for t, m in pairs:
        res = bench_pair(p, t, m, a)
        results.append(res)
        q1, med, q3 = quartiles(res["ratios"])
        print(
            f"{res['pair']}: {res['clips']} clips, R = {res['draws']}, conditions {res['old_conditions']} today vs "
            f"{res['new_conditions']} in {res['rounds']} rounds; time {res['t_old']:.1f} s vs {res['t_new']:.1f} s; "
            f"per-batch ratio median {med:.2f} (quartiles {q1:.2f}-{q3:.2f}, {len(res['ratios'])} batches)"
        )
    every = [r for res in results for r in res["ratios"]]
    q1, med, q3 = quartiles(every)
    t_old, t_new = sum(r["t_old"] for r in results), sum(r["t_new"] for r in results)
    tests = sum(r["tests"] for r in results)
    print(
        f"ALL: stage time {t_old:.1f} s today vs {t_new:.1f} s (ratio of sums {t_new / t_old:.2f}); per-batch ratio "
        f"median {med:.2f} (quartiles {q1:.2f}-{q3:.2f}, {len(every)} batches) (target <= 2)"
    )
    if tests:
        print(
            f"cost per test ({tests} sets tested against draws): {t_old / tests:.2f} s today vs "
            f"{t_new / tests:.2f} s at the default"
        )


if __name__ == "__main__":
    main()
