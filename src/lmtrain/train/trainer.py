"""The training loop: optimizer steps, evaluation and checkpoints, each announced as an event.

The trainer prints nothing and writes no logs: metrics.jsonl, the console, TensorBoard and the health checks are
observers on its event bus. It receives prepared token arrays, loaded benchmark tasks and what a resume restores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from lmtrain import checkpoint as ckpt
from lmtrain.config import RUN_CONFIG, RunConfig
from lmtrain.distributed.world import World, rank_seed
from lmtrain.errors import TrainingFailed
from lmtrain.eval.generate import continuation
from lmtrain.eval.loss import loss_sums
from lmtrain.files import write_text_atomic
from lmtrain.findings import Finding
from lmtrain.hardware import peak_flops, stale_note
from lmtrain.runtime import autocast, configure_device, seed_everything, select_device, select_dtype
from lmtrain.train.benchmarks import RunTasks
from lmtrain.train.data import TrainingData
from lmtrain.train.ema import EMA
from lmtrain.train.events import (
    CheckpointSaved,
    EndReason,
    Evaluated,
    EventBus,
    FailureReason,
    Plan,
    RunEnded,
    RunFailed,
    RunStarted,
    StepEnded,
    Warned,
)
from lmtrain.train.failures import failure_message, failure_of
from lmtrain.train.parts import build_training, plan_of
from lmtrain.train.relay import Outbox
from lmtrain.train.resume import Restore, check_restore
from lmtrain.train.schedule import check_warmup
from lmtrain.train.signals import StopSignals
from lmtrain.train.snapshot import Position, restore_state, run_record, save_snapshot
from lmtrain.train.step import StepClock, StepResult

if TYPE_CHECKING:
    from lmtrain.tasks.evaluate import LoadedTask


class Trainer:
    """One training run of `cfg` on `data` into folder `out`, announcing events on `bus`."""

    def __init__(
        self,
        *,
        cfg: RunConfig,
        data: TrainingData,
        out: Path,
        bus: EventBus,
        restore: Restore | None = None,
        weights: Mapping[str, torch.Tensor] | None = None,
        changes: tuple[str, ...] = (),
        findings: tuple[Finding, ...] = (),
        cache_dir: Path | None = None,
        world: World | None = None,
        tasks: Sequence[LoadedTask] = (),
    ) -> None:
        """`weights`: loaded before the first step (the restore's or --init-from's). `cache_dir`: where the device's
        peak FLOP/s is measured once (None: no MFU). `world`: this rank's process group (default: one process); rank 0
        alone writes files. `tasks`: the benchmark tasks scored every --tasks-every steps and at the end."""
        self.cfg, self.data, self.out, self.bus, self.restore = cfg, data, out, bus, restore
        self.changes, self.findings, tc = changes, findings, cfg.train
        self.world = world or World(device=select_device(tc.device), timeout_s=tc.distributed.timeout)
        self.layout = tc.layout(self.world.world_size)
        self.device, self.dtype = self.world.device, select_dtype(tc.dtype, self.world.device)
        configure_device(self.device)
        self.cache_dir, self.peak_checked = cache_dir, False
        self.peak = peak_flops(self.device, self.dtype, cache_dir) if cache_dir is not None else None
        self.feed = data.feed(cfg)
        if restore is not None:
            check_restore(restore, self.data.sources, self.feed.eval_windows)
        seed_everything(tc.seed)  # the same initial weights on every rank
        step = build_training(
            cfg,
            feed=self.feed,
            device=self.device,
            dtype=self.dtype,
            world=self.world,
            weights=weights,
            weights_from=restore.checkpoint if restore is not None else Path(tc.init_from or "checkpoint"),
        )
        self.model, self.runner, self.optimizer, self.scaler = step.model, step.runner, step.optimizer, step.scaler
        self.sampler, self.schedule, self.train_step = step.sampler, step.schedule, step
        self.total_steps = self.schedule.total_steps
        self.stop_at = min(self.total_steps, tc.stop_at or self.total_steps)
        check_warmup(self.schedule, tc.schedule.allow_long_warmup)
        self.step, self.best_val = 0, math.inf
        if restore is not None:
            self.step, self.best_val = restore_state(restore, self.model, self.optimizer, self.scaler, self.world)
        elif self.world.rank > 0:  # dropout differs per rank
            torch.manual_seed(rank_seed(tc.seed, self.world.rank))
        self.ema = EMA(self.model, tc.optimizer.ema) if tc.optimizer.ema else None
        self.benchmarks = RunTasks(
            tasks, tc.evaluation, tokenizer=data.tokenizer, world=self.world, device=self.device, dtype=self.dtype
        )
        if self.ema is not None and restore is not None and restore.ema is not None:
            self.ema.load(self.model, restore.ema)  # a run that turns --ema on starts it from the current weights
        self.outbox = Outbox(self.world, bus)
        self.first_step, self.skipped_in_row = self.step + 1, 0
        self.pending: list[tuple[int, StepResult]] = []
        self.last_val: tuple[int, float] | None = None
        self.last_save: int | None = self.step if restore is not None else None
        self.clock = StepClock()
        self.step_began = time.monotonic()  # a collective failing --dist-timeout after this timed out
        self._plan = self.plan()

    @property
    def tokens_per_step(self) -> int:
        return self.layout.global_batch * self.cfg.seq_len

    def plan(self) -> Plan:
        """The run as planned: steps, tokens, parameters, data, device."""
        return plan_of(
            self.cfg,
            self.train_step,
            self.data,
            start_step=self.step,
            stop_at=self.stop_at,
            eval_windows=self.feed.eval_windows,
            world=self.world,
            peak=self.peak.measured_flops if self.peak else None,
            parallel=self.parallelism,
        )

    @property
    def parallelism(self) -> str:
        """single (one process), ddp or fsdp."""
        return self.cfg.train.distributed.parallel if self.world.distributed else "single"

    def run(self) -> int:
        """Train to the end, to --stop-at or to a signal and return the exit code; a failure raises TrainingFailed.

        A signal to any rank stops every rank after the same step (the stop flag is reduced over ranks each step)."""
        if self.world.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            record = run_record(self.cfg, self.layout, parallel=self.parallelism, backend=self.world.backend)
            write_text_atomic(self.out / RUN_CONFIG, json.dumps(record, indent=2) + "\n")
        self.bus.publish(
            RunStarted(
                out=self.out,
                config=self.cfg,
                plan=self._plan,
                resumed_from=self.restore.checkpoint if self.restore is not None else None,
                changes=self.changes,
                findings=self.findings,
            )
        )
        if self.step >= self.stop_at:
            return self._end(EndReason.ALREADY_DONE, 0)
        stop = 0
        with StopSignals() as signals, self.outbox.capturing(lambda: self.step):
            try:
                if self.restore is None and self.cfg.origin is not None and self.cfg.train.evaluation.every:
                    self._evaluate()  # step 0: the loss of the model it starts from (--eval-every 0: none)
                self.model.train()
                self.clock.mark()
                while self.step < self.stop_at:
                    stop = self.world.max_int(signals.received or 0)
                    if stop:
                        break
                    self.step_began = time.monotonic()
                    self._advance()
                self._final_checkpoint(evaluate=not stop)
                if not stop and self.benchmarks.due(self.step, final=True):
                    self._score_tasks()
            except Exception as exc:
                self.pending = []
                waited = time.monotonic() - self.step_began
                reason, what = failure_of(exc, world=self.world, step=self.step + 1, waited_s=waited)
                raise self._fail(reason, self.step, what) from None
        if stop:
            return self._end(EndReason.SIGNAL, 128 + stop)
        return self._end(EndReason.FINISHED if self.step >= self.total_steps else EndReason.STOP_AT, 0)

    def _advance(self) -> None:
        """Take one optimizer step; log, evaluate and save where due."""
        tc = self.cfg.train
        result = self.train_step(self.step)
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.step)
        self.pending.append((self.step, result))
        if result.skipped:
            self._note_skip()
        else:
            self.skipped_in_row = 0
        eval_every, save_every = tc.evaluation.every, tc.checkpoints.every
        eval_due = bool(eval_every) and self.step % eval_every == 0
        save_due = bool(save_every) and self.step % save_every == 0
        if self._is_log_point(self.step) or eval_due or save_due:
            self._flush()
        if eval_due or save_due:  # every checkpoint carries its validation loss
            val = self._evaluate()
            if save_due:
                self._save(val)
        if self.benchmarks.due(self.step):
            self._score_tasks()

    def _is_log_point(self, step: int) -> bool:
        return step % self.cfg.train.logging.every == 0 or step in (self.first_step, self.stop_at)

    def _flush(self) -> None:
        """Read the pending steps' values in one transfer, check them, and announce them."""
        if not self.pending:
            return
        rows = [torch.stack((r.loss.float(), r.grad_norm.float(), r.bad.float())) for _, r in self.pending]
        values = self.world.mean(torch.stack(rows)).tolist()  # the global batch's loss; bad > 0 if any rank's was
        self.outbox.deliver()
        seconds = self.clock.lap(len(self.pending))
        per_step, pending, self.pending = seconds / len(rows), self.pending, []
        tokens_per_s = self.tokens_per_step / per_step
        if not self.peak_checked and (self._plan.mfu(tokens_per_s) or 0.0) > 1.0:
            self._check_peak(pending[-1][0], tokens_per_s)
        for (step, result), (loss, grad_norm, bad) in zip(pending, values):
            if bad and not result.skipped:
                raise self._fail(
                    FailureReason.NON_FINITE,
                    step,
                    f"the training loss became {loss} at step {step} (gradient norm {grad_norm})",
                )
            self.bus.publish(
                StepEnded(
                    step=step,
                    epoch=self.sampler.epoch_of(step),
                    loss=loss,
                    lr=result.lr,
                    grad_norm=grad_norm,
                    tokens=step * self.tokens_per_step,
                    step_time=per_step,
                    tokens_per_s=tokens_per_s,
                    log_point=self._is_log_point(step),
                    skipped=result.skipped,
                    mfu=self._plan.mfu(tokens_per_s),
                )
            )

    def _check_peak(self, step: int, tokens_per_s: float) -> None:
        """The run outpaced the cached peak: rank 0 measures it again (the higher figure is kept); if the run still
        outpaces it, a warning says how to refresh it. Once per run."""
        self.peak_checked = True
        if not self.world.is_main or self.peak is None:
            return
        self.peak = peak_flops(self.device, self.dtype, self.cache_dir, remeasure=True)
        self._plan = dataclasses.replace(self._plan, peak_flops=self.peak.measured_flops)
        self.clock.mark()  # the measurement is not training time
        note = stale_note(self._plan.mfu(tokens_per_s), self.cache_dir)
        if note is not None:
            self.bus.publish(Warned(step, "mfu.stale_peak", note))

    def _note_skip(self) -> None:
        self._flush()
        self.skipped_in_row += 1
        limit = self.cfg.train.health.max_skipped_steps
        self.bus.publish(
            Warned(
                self.step,
                "nan.skipped",
                f"non-finite loss or gradient norm at step {self.step}: its update was skipped "
                f"({self.skipped_in_row} in a row; the run stops at {limit})",
            )
        )
        if self.skipped_in_row >= limit:
            raise self._fail(
                FailureReason.NON_FINITE,
                self.step,
                f"{self.skipped_in_row} optimizer steps in a row up to step {self.step} had a non-finite loss or "
                f"gradient norm, so their updates were skipped",
            )

    def evaluate(self) -> float:
        """Mean validation loss over the run's fixed validation windows (the held-out conversations' trained tokens
        for --dataset chat), in eval mode, no grad (train mode restored): sums of losses and of tokens over every
        rank, so every rank gets the same value."""
        batches = self.feed.val_batches(world=self.world, micro=self.layout.micro, device=self.device)
        rows = ((b.x, b.y, b.inputs()) for b in batches)
        total, count = loss_sums(self.runner, rows, lambda: autocast(self.device, self.dtype))
        total, count = self.world.sum_floats([total, float(count)])
        return total / count

    def _evaluate(self) -> float:
        """The validation loss of the weights the run keeps: their average with --ema, else the weights."""
        t0 = time.perf_counter()
        with self.ema.swapped() if self.ema is not None else contextlib.nullcontext():
            val = self.evaluate()
        self.bus.publish(Evaluated(self.step, self.step * self.tokens_per_step, val, time.perf_counter() - t0))
        if not math.isfinite(val):
            raise self._fail(
                FailureReason.NON_FINITE, self.step, f"the validation loss became {val} at step {self.step}"
            )
        self.last_val = (self.step, val)
        self.clock.mark()
        return val

    def _score_tasks(self) -> None:
        self._flush()
        self.bus.publish(self.benchmarks.score(self.model, self.ema, self.step, self.tokens_per_step))
        self.clock.mark()

    def _save(self, val_loss: float | None) -> None:
        """Checkpoint the current step; never from a non-finite state; `best` follows the lowest validation loss."""
        self._flush()  # raises, and so saves nothing, if any step since the last check was non-finite
        t0 = time.perf_counter()
        is_best = val_loss is not None and math.isfinite(val_loss) and val_loss < self.best_val
        if is_best:
            self.best_val = val_loss
        at = Position(
            step=self.step,
            epoch=self.sampler.epoch_of(self.step),
            total_steps=self.total_steps,
            eval_windows=self.feed.eval_windows,
            sources=self.data.sources,
        )
        path = save_snapshot(
            self.cfg,
            at,
            out=self.out,
            step=self.train_step,
            ema=self.ema,
            world=self.world,
            val_loss=val_loss,
            best_val_loss=self.best_val,
            is_best=is_best,
            tokenizer=self.data.tokenizer,
        )
        self.last_save = self.step
        if path is not None:  # rank 0
            self.bus.publish(CheckpointSaved(self.step, path, val_loss, is_best, time.perf_counter() - t0))
        self.clock.mark()

    def _final_checkpoint(self, evaluate: bool) -> None:
        """At the end or on a signal: a checkpoint of the last step (evaluated first, unless stopping on a signal)."""
        self._flush()
        if self.last_save == self.step:
            return
        val = self.last_val[1] if self.last_val is not None and self.last_val[0] == self.step else None
        if val is None and evaluate:
            val = self._evaluate()
        self._save(val)

    def _fail(self, reason: FailureReason, step: int, what: str) -> TrainingFailed:
        """Announce a failure and return the error to raise."""
        last = ckpt.read_marker(self.out / ckpt.CHECKPOINTS, "latest")
        message = failure_message(reason, what, self.cfg, self.out, last)
        self.bus.publish(RunFailed(step, reason, message, last))
        return TrainingFailed(message)

    def _end(self, reason: EndReason, code: int) -> int:
        tc = self.cfg.train
        tokens = tc.logging.sample_tokens
        sample = None
        if reason is EndReason.FINISHED and tokens:  # a continuation of the validation split's first 16 tokens
            prompt, tokenizer = np.asarray(self.data.valid[:16], dtype=np.int64), self.data.tokenizer
            with autocast(self.device, self.dtype):
                sample = continuation(self.model, prompt, tokens, tokenizer=tokenizer, seed=self.cfg.train.seed)
        best = ckpt.read_marker(self.out / ckpt.CHECKPOINTS, "best")
        tps = self.clock.steps * self.tokens_per_step / self.clock.seconds if self.clock.steps else None
        best_val = self.best_val if math.isfinite(self.best_val) else None
        self.bus.publish(
            RunEnded(
                step=self.step,
                reason=reason,
                exit_code=code,
                best_val_loss=best_val,
                best_checkpoint=best,
                train_seconds=self.clock.seconds,
                tokens_per_s=tps,
                sample=sample,
                mfu=self._plan.mfu(tps),
            )
        )
        return code
