"""The training loop: data, model and optimizer set-up, steps, evaluation, checkpoints, exact resume, signals."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmtrain.config import RunConfig
from lmtrain.data.datasets import DataPaths, get_dataset, locate_splits
from lmtrain.data.loader import TrainSampler, make_batch, window_starts
from lmtrain.data.prepare import PreparedSplit, prepare_dataset
from lmtrain.data.tokenizer import load_tokenizer
from lmtrain.errors import CheckpointError, ConfigError, DataError, LmtrainError
from lmtrain.eval.generate import generate
from lmtrain.eval.loss import evaluate
from lmtrain.files import write_text_atomic
from lmtrain.model.gpt import GPT
from lmtrain.model.sizing import param_counts
from lmtrain.presets import ff_warning
from lmtrain.train import checkpoint as ckpt
from lmtrain.train.metrics import MetricsLog
from lmtrain.train.optim import build_optimizer
from lmtrain.train.runtime import (
    autocast,
    rng_state,
    seed_everything,
    select_device,
    select_dtype,
    set_rng_state,
    wrap_model,
)
from lmtrain.train.schedule import ScheduleConfig, check_warmup, lr_at, warmup_report

RUN_CONFIG = "config.json"
METRICS = "metrics.jsonl"


class StopSignals:
    """Turns the first SIGINT/SIGTERM into a request to checkpoint and stop; a second one interrupts at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def check_run_dir(out: Path, resume: bool) -> None:
    """A new run needs an empty or new folder; a resumed one needs a run folder with a checkpoint."""
    if resume:
        if not (out / RUN_CONFIG).is_file():
            raise CheckpointError(f"--resume {out}: no run there ({out / RUN_CONFIG} is missing)")
        return
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        what = "another run" if (out / RUN_CONFIG).exists() or (out / ckpt.CHECKPOINTS).exists() else "files"
        raise ConfigError(f"--out {out} already holds {what}; continue it with --resume {out} or choose another --out")


class Trainer:
    """One training run of `cfg` into folder `out`, optionally resumed from its latest checkpoint."""

    def __init__(self, cfg: RunConfig, out: Path, paths: DataPaths, resume: bool, log: Callable[[str], None] = print):
        self.cfg, self.out, self.log = cfg, out, log
        tc = cfg.train
        self.device = select_device(tc.device)
        self.dtype = select_dtype(tc.dtype, self.device)
        self._load_data(paths)
        self.schedule = ScheduleConfig(tc.lr, tc.final_lr, tc.warmup, self.total_steps, tc.schedule, tc.decay_fraction)
        check_warmup(self.schedule, tc.allow_long_warmup)
        seed_everything(tc.seed)
        self.model = GPT(cfg.model).to(self.device)
        self.optimizer = build_optimizer(self.model, tc.lr, tc.weight_decay, (tc.beta1, tc.beta2), self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == "fp16")
        self.step = 0
        self.best_val = math.inf
        self.resumed_from: Path | None = self._restore() if resume else None
        self.runner = wrap_model(self.model, tc.compile)

    def _load_data(self, paths: DataPaths) -> None:
        cfg, tc = self.cfg, self.cfg.train
        spec = get_dataset(cfg.data.dataset)
        sources = locate_splits(spec, ["train", "valid"], paths, log=self.log)
        self.tokenizer = load_tokenizer(paths.tokenizer_search())
        if cfg.model.vocab_size < self.tokenizer.vocab_size:
            raise ConfigError(
                f"vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's {self.tokenizer.vocab_size}"
            )
        prepared = prepare_dataset(spec, sources, paths, self.tokenizer)
        self.splits: dict[str, PreparedSplit] = {s: r.prepared for s, r in prepared.items()}
        self.train_tokens = self.splits["train"].tokens()
        self.valid_tokens = self.splits["valid"].tokens()
        self.sampler = TrainSampler(len(self.train_tokens), cfg.seq_len, tc.batch_size, tc.seed)
        if self.sampler.steps_per_epoch == 0:
            raise DataError(
                f"the train split has {len(self.train_tokens):,} tokens, {self.sampler.windows} windows of "
                f"seq_len={cfg.seq_len}: not one batch of {tc.batch_size}; lower --batch-size or --seq-len"
            )
        self.total_steps = tc.max_steps or math.ceil((tc.epochs or 1.0) * self.sampler.steps_per_epoch)
        starts = window_starts(len(self.valid_tokens), cfg.seq_len)
        if len(starts) == 0:
            raise DataError(
                f"the valid split has {len(self.valid_tokens)} tokens, fewer than seq_len+1={cfg.seq_len + 1}"
            )
        self.val_starts = starts[: tc.eval_batches * tc.micro] if tc.eval_batches else starts

    def _data_identity(self) -> dict[str, Any]:
        return {s: {"sha256": p.meta["source"]["sha256"], "tokens": p.num_tokens} for s, p in self.splits.items()}

    def _restore(self) -> Path:
        found = ckpt.resolve_checkpoint(self.out, "latest")
        config = ckpt.load_checkpoint_config(found)
        if ckpt.model_config_of(config, found) != self.cfg.model:
            raise CheckpointError(f"{found} holds a different model than {self.out / RUN_CONFIG} describes")
        ckpt.load_state_into(self.model, ckpt.load_weights(found), found)
        state = ckpt.load_trainer_state(found)
        if state["data"]["train_sha256"] != self.splits["train"].meta["source"]["sha256"]:
            raise CheckpointError(
                f"the training data differs from the data {found} was trained on; resume with the same files"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.best_val = float(state["best_val_loss"])
        return found

    def describe(self) -> list[str]:
        """The resolved run, printed at the start."""
        cfg, tc = self.cfg, self.cfg.train
        m = cfg.model
        tokens_per_step = tc.batch_size * cfg.seq_len
        return [
            f"run      {self.out}  (config: {self.out / RUN_CONFIG})",
            f"model    {cfg.preset}: d_model={m.d_model} n_head={m.n_head} n_layer={m.n_layer} d_ff={m.d_ff} "
            f"max_seq_len={m.max_seq_len} vocab={m.vocab_size} dropout={m.dropout} bias={m.bias} "
            f"({param_counts(m)['total']:,} parameters)",
            f"data     {cfg.data.dataset}: train {len(self.train_tokens):,} tokens, valid {len(self.valid_tokens):,}; "
            f"seq_len={cfg.seq_len}, {self.sampler.steps_per_epoch:,} steps per epoch",
            f"steps    {self.total_steps:,} ({self.total_steps / self.sampler.steps_per_epoch:.2f} epochs), "
            f"batch {tc.batch_size} x {cfg.seq_len} = {tokens_per_step:,} tokens/step, micro-batch {tc.micro} "
            f"({tc.accumulation} accumulation steps)",
            f"optim    AdamW lr={tc.lr:g} -> {tc.final_lr:g} {tc.schedule}, warmup {tc.warmup} "
            f"(LR at step 0: {lr_at(0, self.schedule):.3g}), weight decay {tc.weight_decay}, "
            f"betas ({tc.beta1}, {tc.beta2}), grad clip {tc.grad_clip}",
            f"runtime  device {self.device}, dtype {self.dtype}, compile {tc.compile}, seed {tc.seed}; "
            f"eval every {tc.eval_every} ({len(self.val_starts)} windows), save every {tc.save_every}, keep {tc.keep_last}",
        ]

    def _autocast(self):
        return autocast(self.device, self.dtype)

    def _train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        tc = self.cfg.train
        lr = lr_at(step, self.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        for starts in np.split(self.sampler.batch_starts(step), tc.accumulation):
            x, y = make_batch(self.train_tokens, starts, self.cfg.seq_len, self.device)
            with self._autocast():
                _, loss = self.runner(x, y)
            loss = loss / tc.accumulation
            self.scaler.scale(loss).backward()
            total += loss.detach()
        self.scaler.unscale_(self.optimizer)
        clip = tc.grad_clip if tc.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total, grad_norm, lr

    def _val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        micro = self.cfg.train.micro
        for i in range(0, len(self.val_starts), micro):
            yield make_batch(self.valid_tokens, self.val_starts[i : i + micro], self.cfg.seq_len, self.device)

    def evaluate(self) -> float:
        """Mean validation loss over the evaluation windows (eval mode, no grad; train mode restored)."""
        return evaluate(self.runner, self._val_batches(), self._autocast)

    def save(self, val_loss: float | None) -> Path:
        """Checkpoint the current step; `best` follows the lowest validation loss."""
        is_best = val_loss is not None and val_loss < self.best_val
        if is_best:
            self.best_val = val_loss
        epoch = self.sampler.epoch_of(self.step)
        config = {
            **self.cfg.to_dict(),
            "checkpoint": {"step": self.step, "epoch": epoch, "val_loss": val_loss, "total_steps": self.total_steps},
            "tokenizer": self.tokenizer.fingerprint(),
            "data_sources": self._data_identity(),
        }
        state = {
            "step": self.step,
            "epoch": epoch,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "data": {
                "position": self.step,
                "seed": self.cfg.train.seed,
                "seq_len": self.cfg.seq_len,
                "batch_size": self.cfg.train.batch_size,
                "train_sha256": self.splits["train"].meta["source"]["sha256"],
            },
            "best_val_loss": self.best_val,
        }
        return ckpt.save_checkpoint(self.out, self.step, self.model, config, state, self.cfg.train.keep_last, is_best)

    def run(self) -> int:
        """Train to the end (or --stop-at, or a signal); return the process exit code."""
        tc = self.cfg.train
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.out / RUN_CONFIG, _json(self.cfg.to_dict()))
        for line in self.describe():
            self.log(line)
        for warning in (ff_warning(self.cfg.model), warmup_report(self.schedule)):
            if warning:
                self.log(warning)
        if self.resumed_from is not None:
            self.log(f"resumed from {self.resumed_from} at step {self.step}")
        stop_at = min(self.total_steps, tc.stop_at or self.total_steps)
        if self.resumed_from is not None and self.step >= stop_at:
            self.log(
                f"the run is already at step {self.step} of {self.total_steps}; pass --max-steps or --epochs to go on"
            )
            return 0
        tokens_per_step = tc.batch_size * self.cfg.seq_len
        resume_step = self.step if self.resumed_from is not None else None
        last_eval, last_save = None, resume_step
        last_val: float | None = None
        with (
            StopSignals() as signals,
            MetricsLog(self.out / METRICS, self.total_steps, self.log, resume_step) as metrics,
        ):
            self.model.train()
            timer, steps_timed = time.perf_counter(), 0
            while self.step < stop_at and signals.received is None:
                loss, grad_norm, lr = self._train_step(self.step)
                self.step += 1
                steps_timed += 1
                if self.step % tc.log_every == 0 or self.step in (1, stop_at):  # step 1 shows the loss at init
                    loss_value = float(loss)
                    if not math.isfinite(loss_value):
                        raise LmtrainError(
                            f"the loss became {loss_value} at step {self.step}; lower --lr or use --dtype bf16/fp32"
                        )
                    elapsed = time.perf_counter() - timer
                    metrics.train(
                        self.step,
                        self.sampler.epoch_of(self.step),
                        loss_value,
                        lr,
                        float(grad_norm),
                        steps_timed * tokens_per_step / max(elapsed, 1e-9),
                    )
                    timer, steps_timed = time.perf_counter(), 0
                eval_due = tc.eval_every and self.step % tc.eval_every == 0
                save_due = tc.save_every and self.step % tc.save_every == 0
                if eval_due or save_due:  # every checkpoint carries its validation loss
                    last_val, last_eval = self.evaluate(), self.step
                    metrics.eval(self.step, last_val)
                if save_due:
                    self.save(last_val)
                    last_save = self.step
            finished = self.step >= self.total_steps and signals.received is None
            if last_save != self.step:
                val = last_val if last_eval == self.step else None
                if val is None and signals.received is None:
                    val, last_eval = self.evaluate(), self.step
                    metrics.eval(self.step, val)
                self.log(f"checkpoint {self.save(val)}")
        if signals.received is not None:
            self.log(
                f"stopped by signal {signals.received} at step {self.step}; continue with: lmtrain train --resume {self.out}"
            )
            return 128 + signals.received
        if not finished:
            self.log(
                f"stopped at step {self.step} of {self.total_steps}; continue with: lmtrain train --resume {self.out}"
            )
            return 0
        self.log(f"done: {self.step} steps; best val loss {self.best_val:.4f} (ppl {math.exp(self.best_val):,.2f})")
        if tc.sample_tokens:
            self.log("sample: " + self.sample(tc.sample_tokens))
        return 0

    def sample(self, new_tokens: int, prompt_tokens: int = 16) -> str:
        """A short continuation of the first tokens of the validation split (temperature 0.8, top-k 50)."""
        prompt = torch.as_tensor(np.asarray(self.valid_tokens[:prompt_tokens], dtype=np.int64), device=self.device)[
            None
        ]
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed)
        with self._autocast():
            out = generate(
                self.model, prompt, new_tokens, temperature=0.8, top_k=50, eot_id=self.tokenizer.eot_id, generator=gen
            )
        self.model.train()
        return repr(self.tokenizer.decode(out[0].tolist()))


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"
