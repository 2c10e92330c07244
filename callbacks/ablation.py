"""AblationCallback: evaluate many neuron-ablation conditions in one ``trainer.test`` pass.

Thin wrapper around :mod:`analysis.ablation` for ``trainer.test(AudioClassifier(encoder, probe))``:

* ``on_test_start``: loads the run folder (``classes.txt``, ``neurons.pt``, ``neurons.csv``,
  ``over_zero.pt``, ``stats.pt``), builds the conditions, checks the outputs are writable, registers one
  forward hook per neuron site that touches at least one condition.
* ``on_test_batch_end``: the baseline predictions are the ``logits`` the module's ``test_step`` just
  computed (so the baseline equals plain ``trainer.test`` accuracy exactly); every other condition of the
  round re-runs the encoder + probe on the same, already decoded batch with its channels ablated
  (``strategy='loop'``: one forward per condition; ``'expand'``: the batch repeated over several
  conditions along dim 0 with a per-row mask).
* ``on_test_end``: sums the round's counts over processes (one reduce), then runs the further rounds of
  matched random draws over the same test batches (:class:`callbacks.draw_rounds.DrawRounds`: sets of the
  same neurons per site share their draws; a set stops drawing once ``draws_stop_after`` draws beat it),
  removes the hooks and writes ``ablation.csv``, ``ablation_groups.csv``, ``ablation_confusion.csv`` (per
  condition true × predicted counts), ``ablation_matrix.pdf``, ``ablation_k_curve.pdf``,
  ``ablation_confusion.pdf`` (change in confusion vs baseline of the chosen conditions),
  ``ablation_conditions.json`` (the neuron sets, each set's draw profile and ``draws_used``) and logs
  scalars/figures to the Trainer's logger (process 0). Hooks are also removed on exception and at teardown.

Under DDP ``trainer.test``'s distributed sampler pads the data with repeated clips so that every process
gets as many; at ``on_test_start`` the processes exchange the dataset positions of their batches and each
clip is scored by exactly one of them (:func:`analysis.ablation.owned_positions`; repeats are dropped
before the encoder runs). The counts stay on the device until the end (no per-batch host sync).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, Optional, Union

import matplotlib.pyplot as plt
import pandas as pd
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from analysis import ablation as A
from analysis import draws as D
from analysis.significance import ALPHA
from analysis.ablation.spec import AUTO_DRAWS, ConditionSpec, NeuronList
from analysis.runs.conditions import conditions_from_run, read_dataset_means
from analysis.runs.write import check_ablation_writable, write_ablation
from callbacks.ablation_outputs import ablation_figures, check_condition_names, log_ablation
from callbacks.draw_rounds import DrawRounds, replay_batches
from callbacks.prefix_pass import expand_predictions
from callbacks.owned_rows import owned_rows, reduce_counts, rows_of
from callbacks.hooks import SiteHooks
from callbacks.source_checks import check_sources, checked_classes

log = logging.getLogger(__name__)

__all__ = ["AblationCallback", "NeuronList"]


class AblationCallback(Callback):
    """Zero / scale / mean-replace chosen neurons during ``trainer.test`` and score every condition.

    Args:
        out_dir: folder for the result files (created; existing results are an error unless overwrite).
        run_dir: neuron-statistics run folder (``classes.txt``, ``neurons.pt``, ``neurons.csv``,
            ``over_zero.pt``, ``stats.pt``). Needed for class sets, shared sets, top-k and mean mode.
        class_sets: add one condition per class with its AAPE set (from ``neurons.pt``).
        neuron_lists: explicit ``[[layer, neuron], ...]`` lists (the study's format) with their targets.
        shared: groups of classes whose AAPE sets are intersected (A ∩ B), e.g. ``[[ANG, HAP]]``.
        k_grid: top-k sizes for each class's neurons ordered by AAPE rank (empty = no k-curve).
        topk_classes: classes of the k-grid and of the lowest-entropy conditions (default: every class).
        lowest_entropy_k: k values (from the k-grid) of the threshold-free ``lowent:<c>:<k>`` conditions:
            each class's k lowest-entropy neurons among those preferring it, with matched random draws,
            whatever the selection's bars select (empty = none).
        lowest_entropy_draws: matched random draws per lowest-entropy condition (default: ``random_draws``).
        random_draws: size- and layer-matched random sets per condition at most (0 = none); ``auto``: the
            fewest whose smallest attainable p, 1 / (1 + R), passes Holm over ``corrected_tests`` tests at
            level :data:`analysis.significance.ALPHA` (:func:`analysis.draws.auto_random_draws`).
        corrected_tests: the number of tests the run's correction divides by, for ``random_draws: auto``
            (the pipeline sets every (task, model, class) of the run; default: this run's sets with draws).
        draws_stop_after: the sequential stop (Besag–Clifford ``h``): stop drawing for a set once this many
            of its draws changed its class's recall at least as much as the set (ties count against it);
            the set's p is then ``h / L`` after ``L`` draws. None: every set gets all its draws.
        share_draws: sets with the same neurons per site share their matched draws (one random condition
            yields the change of every class at once); False: one copy per set (the same masks).
        random_for_topk: also draw matched random sets for each top-k condition.
        index_plus_one: add the study authors' control (every neuron index + 1, same layer).
        gain: multiplier of the ablated channels in ``gain`` mode (0 = zero ablation, as the study).
        mode: ``gain`` or ``mean`` (replace by the dataset mean ``act_sum / n_positions`` of stats.pt).
        seed: seed of the random draws.
        class_aliases: maps names used in ``neuron_lists``/``shared``/``topk_classes`` to the task's
            class names (e.g. the study's ``ANG`` → a synthetic class), for stand-in runs.
        strategy: ``expand`` (default: the batch repeated over ``conditions_per_pass`` conditions along
            dim 0, per-row masks via ``encoder.positions(...).clip``; measured 0.78 × the time of C bare
            passes on CPU) or ``loop`` (one encoder forward per condition on the same batch; 1.02 ×, and
            no extra memory). Both give identical results.
        conditions_per_pass: conditions per forward in ``expand`` mode (memory grows with it).
        share_prefix: in ``expand`` mode, run each batch once up to the earliest ablated site of each pass
            and only the rest per condition (:mod:`callbacks.prefix_pass`; used when the encoder supports
            resuming, ``encoder.supports_resume``, and the module has a ``probe``); same predictions.
        confusion_conditions: conditions whose change in confusion vs the baseline is drawn in
            ``ablation_confusion.pdf`` (default: the explicit and shared conditions, else the class
            conditions with the largest drops of their own class's recall, at most
            :data:`analysis.figures.MAX_CONFUSION_PANELS`).
        selectors: baseline selectors beside AAPE (:mod:`analysis.selectors`: ``contrast``, ``magnitude``):
            each class's set of each selector, with the AAPE set's per-layer sizes, ablated and tested
            against matched random draws like the class sets (needs ``run_dir``).
        figures: write the PDF figures.
        overwrite: replace existing result files.
    """

    def __init__(
        self,
        out_dir: str,
        run_dir: Optional[str] = None,
        class_sets: bool = True,
        neuron_lists: Optional[list[NeuronList]] = None,
        shared: Optional[list[list[str]]] = None,
        k_grid: Optional[list[PositiveInt]] = None,
        topk_classes: Optional[list[str]] = None,
        lowest_entropy_k: Optional[list[PositiveInt]] = None,
        lowest_entropy_draws: Optional[NonNegativeInt] = None,
        random_draws: Union[NonNegativeInt, Literal["auto"]] = "auto",
        corrected_tests: Optional[PositiveInt] = None,
        draws_stop_after: Optional[PositiveInt] = 10,
        share_draws: bool = True,
        random_for_topk: bool = True,
        index_plus_one: bool = False,
        gain: float = 0.0,
        mode: Literal["gain", "mean"] = "gain",
        seed: int = 0,
        class_aliases: Optional[dict[str, str]] = None,
        strategy: Literal["expand", "loop"] = "expand",
        conditions_per_pass: PositiveInt = 4,
        share_prefix: bool = True,
        confusion_conditions: Optional[list[str]] = None,
        selectors: Optional[list[Literal["contrast", "magnitude"]]] = None,
        figures: bool = True,
        overwrite: bool = False,
    ) -> None:
        super().__init__()
        if mode not in ("gain", "mean"):
            raise ValueError(f"AblationCallback: mode must be 'gain' or 'mean', got {mode!r}")
        if strategy not in ("loop", "expand"):
            raise ValueError(f"AblationCallback: strategy must be 'loop' or 'expand', got {strategy!r}")
        if draws_stop_after is not None and int(draws_stop_after) < 1:
            raise ValueError(f"AblationCallback: draws_stop_after must be >= 1 or None, got {draws_stop_after}")
        try:
            self.spec = ConditionSpec(
                class_sets=class_sets,
                neuron_lists=neuron_lists,
                shared=shared,
                k_grid=k_grid,
                topk_classes=topk_classes,
                lowest_entropy_k=lowest_entropy_k,
                lowest_entropy_draws=lowest_entropy_draws,
                random_draws=random_draws,
                random_for_topk=random_for_topk,
                index_plus_one=index_plus_one,
                seed=seed,
                class_aliases=class_aliases,
                share_draws=share_draws,
                selectors=selectors,
            )
        except ValueError as e:
            raise ValueError(f"AblationCallback: {e}") from None
        self.out_dir = Path(out_dir)
        self.run_dir = Path(run_dir) if run_dir else None
        self.confusion_conditions = confusion_conditions
        self.corrected_tests = None if corrected_tests is None else int(corrected_tests)
        self.draws_stop_after = None if draws_stop_after is None else int(draws_stop_after)
        self.gain = float(gain)
        self.mode = mode
        self.strategy = strategy
        self.conditions_per_pass = max(1, int(conditions_per_pass))
        self.share_prefix = bool(share_prefix)
        self.figures = figures
        self.overwrite = overwrite
        self._hooks: Optional[SiteHooks] = None
        self._reset_state()

    # -- state -----------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self.conditions: list[A.Condition] = []
        self.classes: list[str] = []
        self.resolved_draws: Optional[int] = None
        self._max_draws: dict[str, int] = {}
        self._means: Optional[Tensor] = None
        self._rounds: Optional[DrawRounds] = None
        self._round: list[A.Condition] = []  # the conditions of the round being run (hooks index them)
        self._seen: dict[int, int] = {}  # dataloader → batches of round 1
        self._scales: list[Tensor] = []
        self._shifts: list[Tensor] = []
        self._active_sites: list[bool] = []
        self._cond: Optional[int] = None  # loop: index (in the round) of the condition being run
        self._rows: Optional[tuple[Tensor, int]] = None  # expand: (condition ids of this pass, clips per cond)
        self.correct: Optional[Tensor] = None
        self.n: Optional[Tensor] = None
        self.confusion: Optional[Tensor] = None
        self.flips: Optional[Tensor] = None  # [2, K, C] clips lost / gained against the baseline
        self._owned: Optional[dict[int, list[Optional[Tensor]]]] = None  # DDP: batch → rows this process scores
        self.table: Optional[pd.DataFrame] = None
        self.confusion_table: Optional[pd.DataFrame] = None
        self.summary: Optional[pd.DataFrame] = None

    # -- building --------------------------------------------------------------------------------
    def _conditions(self, site_neurons: list[int], random_draws: int) -> list[A.Condition]:
        return conditions_from_run(self.run_dir, site_neurons, self.classes, self.spec.with_draws(random_draws))

    def _resolve_draws(self, site_neurons: list[int]) -> int:
        """``random_draws``, or for ``auto`` the fewest draws that can pass the corrected level."""
        if self.spec.random_draws != AUTO_DRAWS:
            return int(self.spec.random_draws)
        tests = self.corrected_tests
        if tests is None:
            tests = sum(
                c.kind in ("class", "explicit", "shared") and bool(c.mask.any())
                for c in self._conditions(site_neurons, 0)
            )
        return D.auto_random_draws(max(1, tests), ALPHA)

    def build(self, encoder: Any, classes: Optional[list[str]] = None) -> list[A.Condition]:
        """Build every condition that may run for ``encoder`` (each profile's draws up to its most; public
        so tests and the pipeline can inspect them)."""
        site_neurons = [int(n) for n in encoder.site_neurons]
        if len(site_neurons) != len(encoder.neuron_sites):
            raise ValueError(
                f"encoder {type(encoder).__name__}: {len(encoder.neuron_sites)} neuron_sites but "
                f"{len(site_neurons)} site_neurons"
            )
        classes = checked_classes(self.run_dir, classes, "AblationCallback")
        if self.mode == "mean" and self.run_dir is None:
            raise ValueError("AblationCallback: class_sets / shared / k_grid / mode='mean' need run_dir")
        self.classes = classes
        self.resolved_draws = self._resolve_draws(site_neurons)
        self.conditions = self._conditions(site_neurons, self.resolved_draws)
        spec = self.spec.with_draws(self.resolved_draws)
        self._max_draws = {
            c.name: spec.draws_of(c.kind) for c in self.conditions if c.profile is not None and c.kind != "random"
        }
        self._means = read_dataset_means(self.run_dir) if self.mode == "mean" else None
        self._set_round(self.conditions, site_neurons)
        return self.conditions

    def _set_round(self, conds: list[A.Condition], site_neurons: list[int]) -> None:
        """Make ``conds`` the conditions the hooks apply (their per-site affine maps)."""
        self._round = list(conds)
        self._scales, self._shifts, self._active_sites = A.site_scales(
            self._round, site_neurons, gain=self.gain, mode=self.mode, means=self._means
        )

    def check_sources(self, pl_module: Any) -> None:
        """Refuse a run folder made by another model than ``pl_module.encoder``, and a probe fitted on
        other embeddings than the run folder's (:func:`callbacks.source_checks.check_sources`)."""
        if self.run_dir is not None:
            check_sources(self.run_dir, pl_module)

    # -- hooks -----------------------------------------------------------------------------------
    def _make_hook(self, l: int, encoder: Any):
        axis = encoder.channel_axis

        def hook(module, inputs, output):
            if self._cond is not None:
                i = self._cond
                if not self._round[i].mask[l].any():
                    return None
                return A.apply_channel_affine(output, self._scales[l][i], self._shifts[l][i], axis)
            if self._rows is not None:
                conds, per = self._rows
                pos = encoder.positions(encoder.neuron_sites[l], output)
                row_cond = conds.to(pos.clip.device)[torch.div(pos.clip, per, rounding_mode="floor")]
                return A.apply_channel_affine(output, self._scales[l], self._shifts[l], axis, row_cond)
            return None

        return hook

    def _register(self, encoder: Any) -> None:
        self._remove()
        self._hooks = SiteHooks(
            encoder,
            [
                (site, self._make_hook(l, encoder) if self._active_sites[l] else None)
                for l, site in enumerate(encoder.neuron_sites)
            ],
        ).attach()

    def _remove(self) -> None:
        if self._hooks is not None:
            self._hooks.remove()
        self._cond = None
        self._rows = None

    # -- Lightning hooks -------------------------------------------------------------------------
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if getattr(pl_module, "multilabel", False):
            raise ValueError("AblationCallback supports single-label tasks only (the probe is multi-label)")
        check_ablation_writable(self.out_dir, self.overwrite)
        self._reset_state()
        encoder = pl_module.encoder
        self.check_sources(pl_module)
        every = self.build(encoder, getattr(pl_module, "classes", None))
        check_condition_names(self.conditions, list(self.confusion_conditions or []))  # before the pass
        self._owned = owned_rows(trainer)
        self._register(encoder)  # the sites of every condition that may run
        self._rounds = DrawRounds(every, self.classes, self.draws_stop_after, self._max_draws)
        self._start_round(self._rounds.next_round(), encoder, pl_module.device)
        log.info(
            "AblationCallback: %d fixed conditions, up to %d matched draws per set (%d profiles), over %d sites",
            len(self._rounds.fixed),
            self.resolved_draws,
            len(self._rounds.draws),
            sum(self._active_sites),
        )

    def _start_round(self, conds: list[A.Condition], encoder: Any, device: Any) -> None:
        self._set_round(conds, [int(n) for n in encoder.site_neurons])
        K, C = len(conds), len(self.classes)
        self.correct = torch.zeros(K, C, dtype=torch.long, device=device)
        self.n = torch.zeros(C, dtype=torch.long, device=device)
        self.confusion = torch.zeros(K, C, C, dtype=torch.long, device=device)
        # clips lost / gained against the baseline, [2, K, C]: round 1 only (later rounds run without it)
        self.flips = torch.zeros(2, K, C, dtype=torch.long, device=device) if not self._rounds.ran else None

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.correct is None:
            return
        if not isinstance(outputs, dict) or "logits" not in outputs:
            raise ValueError("AblationCallback needs test_step to return a dict with 'logits' (use AudioClassifier)")
        self._seen[dataloader_idx] = max(self._seen.get(dataloader_idx, 0), batch_idx + 1)
        self._score(pl_module, batch, batch_idx, dataloader_idx, outputs["logits"])

    def _score(
        self, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int, logits: Optional[Tensor]
    ) -> None:
        """Add the counts of the round's conditions on one batch (``logits``: the baseline's, round 1)."""
        labels = batch["label"]
        if labels.dim() != 1:
            raise ValueError("AblationCallback supports single-label batches only (label must be [B])")
        audio, lengths = batch["audio"], batch.get("length")
        rows = rows_of(self._owned, batch_idx, dataloader_idx, audio.shape[0])
        if rows is not None:  # DDP: drop the clips another process scores
            if rows.numel() == 0:
                return
            rows = rows.to(audio.device)
            audio, labels = audio[rows], labels[rows]
            logits = None if logits is None else logits[rows]
            lengths = None if lengths is None else lengths[rows]
        B = audio.shape[0]
        K = len(self._round)
        preds = torch.empty(K, B, dtype=torch.long, device=labels.device)
        others = list(range(K))
        if logits is not None:
            preds[0] = logits.argmax(-1)
            others = others[1:]
        try:
            if self.strategy == "loop":
                for i in others:
                    self._cond = i
                    preds[i] = pl_module(audio, lengths).argmax(-1)
            else:
                share = (
                    self.share_prefix
                    and getattr(pl_module.encoder, "supports_resume", False)
                    and hasattr(pl_module, "probe")
                )
                set_rows = lambda rows: setattr(self, "_rows", rows)  # noqa: E731
                got = expand_predictions(
                    self._round, others, self.conditions_per_pass, pl_module, audio, lengths, set_rows, share
                )
                for i, p in got.items():
                    preds[i] = p
        finally:
            self._cond = None
            self._rows = None
        c, n = A.count_correct(preds, labels, len(self.classes))
        self.correct += c
        self.n += n
        self.confusion += A.count_confusion(preds, labels, len(self.classes))
        if self.flips is not None and logits is not None:
            self.flips += A.count_flips(preds, labels, len(self.classes))

    def _later_round(
        self, trainer: Trainer, pl_module: LightningModule, conds: list[A.Condition]
    ) -> tuple[Tensor, Tensor, None]:
        """Run ``conds`` over the batches of round 1 again; their counts summed over processes."""
        self._start_round(conds, pl_module.encoder, pl_module.device)
        replay_batches(trainer, pl_module, self._seen, lambda b, i, d: self._score(pl_module, b, i, d, None))
        correct, confusion = reduce_counts(trainer, [self.correct, self.confusion])
        return correct, confusion, None

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.correct is None or self._rounds is None:
            self._remove()
            return
        try:
            correct, confusion, n, flips = reduce_counts(trainer, [self.correct, self.confusion, self.n, self.flips])
            first = list(self._round)  # the conditions of round 1 (the only round run beside the baseline)
            self._rounds.finish_round(correct, confusion, n)
            self._rounds.run(lambda conds: self._later_round(trainer, pl_module, conds))
        finally:
            self._remove()
        self.conditions, self.correct, self.n, self.confusion = self._rounds.result()
        self.flips = A.flips_in_order(first, flips, self.conditions)
        self.table = A.results_table(self.conditions, self.classes, self.correct, self.n, self.flips)
        self.summary = A.summarise(self.table, self.conditions, h=self.draws_stop_after, max_draws=self._max_draws)
        self.confusion_table = A.confusion_table(self.conditions, self.classes, self.confusion)
        if trainer.is_global_zero:
            self._write(trainer)

    def _write(self, trainer: Trainer) -> None:
        record = {
            "classes": self.classes,
            "gain": self.gain,
            "mode": self.mode,
            "seed": self.spec.seed,
            "random_draws": self.resolved_draws,
            "draws_stop_after": self.draws_stop_after,
            "share_draws": self.spec.share_draws,
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "conditions": A.describe_conditions(self.conditions),
        }
        figs = {}
        if self.figures:
            figs = ablation_figures(
                self.table, self.summary, self.conditions, self.classes, self.confusion, self.confusion_conditions
            )
        try:
            write_ablation(
                self.out_dir, self.table, self.summary, record, figs, self.overwrite, confusion=self.confusion_table
            )
            if trainer.logger is not None:
                log_ablation(trainer.logger, trainer.global_step, self.table, self.summary, figs)
        finally:
            for fig in figs.values():
                plt.close(fig)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._remove()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._remove()
