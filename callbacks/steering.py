"""SteeringCallback: every class set and its matched random sets scaled by every gain of a grid, in one
``trainer.test`` pass of encoder + frozen probe.

Thin wrapper around :mod:`analysis.steering` (maths) and :mod:`analysis.ablation` (conditions, channel
maps, DDP ownership of clips), like :class:`callbacks.AblationCallback`: the baseline is the ``logits`` of
the module's own ``test_step`` (gain 1, exactly the unablated model); every (set, gain ≠ 1) re-runs the
encoder + probe on the same decoded batch, ``conditions_per_pass`` of them per forward (the batch repeated
along dim 0 with a per-row channel scale). Counts stay on the device and are summed over processes once;
process 0 writes ``steering.csv`` (+ ``steering.pdf``) into ``out_dir`` and logs the figure.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import matplotlib.pyplot as plt
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from analysis import ablation as A
from analysis import steering as G
from analysis.runs.conditions import conditions_from_run
from analysis.runs.identity import check_run, encoder_identity
from analysis.runs.read import read_classes
from analysis.runs.write import check_steering_writable, write_steering
from analysis.tuning_figures import steering_figure
from callbacks.owned_rows import owned_rows, rows_of
from callbacks.hooks import SiteHooks

log = logging.getLogger(__name__)


class SteeringCallback(Callback):
    """Scale each class's AAPE set (``neurons.pt`` of ``run_dir``) and ``random_draws`` size- and
    layer-matched random sets per class by every gain of ``gains`` during ``trainer.test``.

    Args:
        out_dir: folder of ``steering.csv`` / ``steering.pdf`` (existing files are an error unless overwrite).
        run_dir: the task's statistics run folder (``classes.txt``, ``neurons.pt``, ``over_zero.pt``).
        gains: the gain grid (1 is the unablated model: read from the baseline pass, never re-run).
        random_draws: matched random sets per class set (the same sets at every gain).
        seed: seed of the random draws (the ablation's draws for the same seed).
        conditions_per_pass: (set, gain) conditions per forward (memory grows with it).
        task: the ``task`` column (default: the datamodule's task).
        figures: write ``steering.pdf``.
        overwrite: replace existing results.
    """

    COUNTS = ("correct", "n", "prob")

    def __init__(
        self,
        out_dir: str,
        run_dir: str,
        gains: Optional[list[float]] = None,
        random_draws: NonNegativeInt = 8,
        seed: int = 0,
        conditions_per_pass: PositiveInt = 8,
        task: Optional[str] = None,
        figures: bool = True,
        overwrite: bool = False,
    ) -> None:
        super().__init__()
        self.gains = G.check_gains(G.DEFAULT_GAINS if gains is None else gains)
        if random_draws < 0:
            raise ValueError(f"SteeringCallback: random_draws must be >= 0, got {random_draws}")
        self.out_dir, self.run_dir = Path(out_dir), Path(run_dir)
        self.random_draws, self.seed = int(random_draws), int(seed)
        self.conditions_per_pass = max(1, int(conditions_per_pass))
        self.task, self.figures, self.overwrite = task, figures, overwrite
        self._hooks: Optional[SiteHooks] = None
        self._rows: Optional[tuple[Tensor, int]] = None
        self._owned = None
        self.correct = self.n = self.prob = None
        self.table = None

    def build(self, encoder: Any, classes: list[str]) -> list[tuple[A.Condition, float]]:
        """The (condition, gain) pairs and per-site scales for ``encoder`` (public for tests/benchmarks)."""
        site_neurons = [int(n) for n in encoder.site_neurons]
        run_classes = read_classes(self.run_dir)
        if list(run_classes) != list(classes):
            raise ValueError(
                f"SteeringCallback: classes of the run folder {self.run_dir} {run_classes} differ from "
                f"the probe's classes {list(classes)}"
            )
        self.classes = list(classes)
        spec = A.ConditionSpec(random_draws=self.random_draws, seed=self.seed)
        base = conditions_from_run(self.run_dir, site_neurons, self.classes, spec)
        self.pairs = G.steering_conditions([c for c in base if c.kind in ("baseline", "class", "random")], self.gains)
        self._scales = G.steering_scales(self.pairs, site_neurons)
        self._active = [bool((s != 1).any()) for s in self._scales]
        return self.pairs

    def _make_hook(self, l: int, encoder: Any):
        axis = encoder.channel_axis

        def hook(module, inputs, output):
            if self._rows is None:
                return None
            conds, per = self._rows
            pos = encoder.positions(encoder.neuron_sites[l], output)
            row_cond = conds.to(pos.clip.device)[torch.div(pos.clip, per, rounding_mode="floor")]
            scale = self._scales[l].to(output.device, output.dtype)
            return A.apply_channel_affine(output, scale, torch.zeros_like(scale), axis, row_cond)

        return hook

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        check_steering_writable(self.out_dir, self.overwrite)
        encoder = pl_module.encoder
        check_run(
            self.run_dir, encoder_identity(encoder), consumer=f"the encoder under test ({type(encoder).__name__})"
        )
        self.build(encoder, list(getattr(pl_module, "classes", None) or read_classes(self.run_dir)))
        K, C, dev = 1 + len(self.pairs), len(self.classes), pl_module.device
        self.correct = torch.zeros(K, C, dtype=torch.long, device=dev)
        self.n = torch.zeros(C, dtype=torch.long, device=dev)
        self.prob = torch.zeros(K, C, C, dtype=torch.float64, device=dev)
        self._owned = owned_rows(trainer)  # the ablation's DDP ownership of clips
        self._remove()
        self._hooks = SiteHooks(
            encoder,
            [(s, self._make_hook(l, encoder) if self._active[l] else None) for l, s in enumerate(encoder.neuron_sites)],
        ).attach()

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
            raise ValueError("SteeringCallback needs test_step to return a dict with 'logits' (use AudioClassifier)")
        audio, lengths, labels, logits = batch["audio"], batch.get("length"), batch["label"], outputs["logits"]
        rows = rows_of(self._owned, batch_idx, dataloader_idx, audio.shape[0])
        if rows is not None:
            if rows.numel() == 0:
                return
            rows = rows.to(audio.device)
            audio, labels, logits = audio[rows], labels[rows], logits[rows]
            lengths = None if lengths is None else lengths[rows]
        B, K = audio.shape[0], 1 + len(self.pairs)
        out = torch.empty(K, B, logits.shape[-1], dtype=logits.dtype, device=logits.device)
        out[0] = logits
        ids = list(range(1, K))
        try:
            for s in range(0, len(ids), self.conditions_per_pass):
                chunk = ids[s : s + self.conditions_per_pass]
                self._rows = (torch.as_tensor(chunk), B)
                a = audio.repeat(len(chunk), *([1] * (audio.dim() - 1)))
                ln = None if lengths is None else lengths.repeat(len(chunk))
                out[chunk] = pl_module(a, ln).view(len(chunk), B, -1)
        finally:
            self._rows = None
        c, n = A.count_correct(out.argmax(-1), labels, len(self.classes))
        self.correct += c
        self.n += n
        self.prob += G.count_probabilities(out.float().softmax(-1), labels, len(self.classes))

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._remove()
        if self.correct is None:
            return
        counts = [getattr(self, k) for k in self.COUNTS]
        flat = torch.cat([c.double().flatten() for c in counts])  # exact for the integer counts (< 2**53)
        if trainer.world_size > 1:
            flat = trainer.strategy.reduce(flat, reduce_op="sum")
        parts = A.unpack_counts(flat.cpu(), [c.shape for c in counts])
        self.correct, self.n, self.prob = parts[0].round().long(), parts[1].round().long(), parts[2]
        task = self.task or getattr(trainer.datamodule, "task", "task")
        self.table = G.steering_table(task, self.classes, self.pairs, self.gains, self.correct, self.n, self.prob)
        if trainer.is_global_zero:
            self._write(trainer, task)

    def _write(self, trainer: Trainer, task: str) -> None:
        fig = (
            steering_figure(
                self.table[self.table["metric"] == "probability"],
                f"{task}: probability of the class vs gain of its set",
            )
            if self.figures
            else None
        )
        try:
            write_steering(self.out_dir, self.table, fig, self.overwrite)
            exp = getattr(trainer.logger, "experiment", None) if trainer.logger is not None else None
            if fig is not None and hasattr(exp, "add_figure"):
                exp.add_figure("steering/probability", fig, close=False)
        finally:
            if fig is not None:
                plt.close(fig)

    def _remove(self) -> None:
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None
        self._rows = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._remove()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._remove()
