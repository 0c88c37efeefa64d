"""Health checks during training: they watch the events and announce warnings; they never change the run.

- initial loss more than `init_tolerance` from ln(V) (an initialisation or label bug), or, for a run from a trained
  model (--init-from), from that model's step-0 validation loss;
- loss not below ln(V) - `progress_margin` (from a trained model: not below its starting loss) once a share of the
  run has passed (at least `min_progress_steps`);
- a gradient-norm spike (far above its running median) or a loss spike (far above the loss's running median);
- validation loss rising for `overfit_evals` evaluations in a row while the training loss falls (overfitting).
Non-finite values are the trainer's to handle (stop or skip); they are left out of the running statistics.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmtrain.train.events import CheckpointSaved, Evaluated, Event, RunStarted, StepEnded, Warned


@dataclass(frozen=True)
class HealthThresholds:
    """Thresholds of the checks."""

    init_tolerance: float = 1.0
    """Warn when the first loss is further than this from ln(V)."""
    trained_tolerance: float = 2.0
    """... or, from a trained model, further than this from its step-0 validation loss (one training batch against the
    validation windows: measured 1.1 apart on the Linux documentation, whose validation split is the easier)."""
    progress_margin: float = 0.5
    """The loss should be below ln(V) minus this ..."""
    progress_share: float = 0.1
    """... once this share of the run has passed ..."""
    min_progress_steps: int = 100
    """... and at least this many steps."""
    window: int = 100
    """Steps in the running medians."""
    min_history: int = 20
    """Steps of history before spikes are looked for."""
    grad_spike_factor: float = 10.0
    """A gradient norm this many times its running median is a spike."""
    loss_spike_nats: float = 1.0
    """A loss this far above its running median is a spike (or 5 median absolute deviations, if more)."""
    overfit_evals: int = 3
    """Evaluations in a row with a rising validation loss that count as overfitting."""


class HealthMonitor:
    """Announces `Warned` events through `emit` when a check fires; each kind of spike at most once per window."""

    def __init__(self, emit: Callable[[Event], None], thresholds: HealthThresholds | None = None) -> None:
        self.emit = emit
        self.cfg = thresholds or HealthThresholds()
        self.ln_v = math.nan
        self.start_loss: float | None = None
        """The step-0 validation loss of a run from a trained model (None: a model from scratch)."""
        self.from_trained = False
        self.start_step = 0
        self.progress_step = 0
        self.losses: deque[float] = deque(maxlen=self.cfg.window)
        self.norms: deque[float] = deque(maxlen=self.cfg.window)
        self.last_spike: dict[str, int] = {}
        self.interval: list[float] = []
        self.evals: list[tuple[int, float, float]] = []
        """(step, validation loss, mean training loss since the evaluation before)."""
        self.best: Path | None = None
        self.overfit_warned = False

    def on_event(self, event: Event) -> None:
        match event:
            case RunStarted(plan=plan, config=config):
                self.ln_v = math.log(config.model.vocab_size)
                self.from_trained = config.origin is not None
                self.start_step = plan.start_step
                share = math.ceil(self.cfg.progress_share * plan.total_steps)
                self.progress_step = max(self.cfg.min_progress_steps, share)
            case StepEnded() if math.isfinite(event.loss) and not event.skipped:
                self._step(event)
            case Evaluated() if math.isfinite(event.val_loss):
                if event.step == 0 and self.from_trained:
                    self.start_loss = event.val_loss
                self._evaluated(event)
            case CheckpointSaved(is_best=True):
                self.best = event.path

    def close(self) -> None:
        pass

    def _warn(self, step: int, code: str, message: str) -> None:
        self.emit(Warned(step, f"health.{code}", message))

    def _step(self, e: StepEnded) -> None:
        cfg = self.cfg
        if e.step == 1 and self.start_step == 0:
            self._initial(e)
        if e.step == self.progress_step and self.start_step < e.step:
            self._progress(e, statistics.median(list(self.losses)[-10:] + [e.loss]))
        if len(self.norms) >= cfg.min_history and math.isfinite(e.grad_norm):
            median = statistics.median(self.norms)
            if median > 0 and e.grad_norm > cfg.grad_spike_factor * median:
                self._spike(
                    e.step,
                    "grad_spike",
                    f"gradient norm {e.grad_norm:.3g} is {e.grad_norm / median:.0f}x its running median "
                    f"{median:.3g} (LR {e.lr:.2e}); repeated spikes precede divergence: lower --lr or keep --grad-clip",
                )
        if len(self.losses) >= cfg.min_history:
            median = statistics.median(self.losses)
            mad = statistics.median(abs(x - median) for x in self.losses)
            if e.loss - median > max(cfg.loss_spike_nats, 5 * mad):
                self._spike(
                    e.step,
                    "loss_spike",
                    f"loss {e.loss:.3f} is {e.loss - median:.2f} above its running median {median:.3f} "
                    f"(LR {e.lr:.2e}); a bad batch or an LR too high for this point of the run",
                )
        self.losses.append(e.loss)
        if math.isfinite(e.grad_norm):
            self.norms.append(e.grad_norm)
        self.interval.append(e.loss)

    def _initial(self, e: StepEnded) -> None:
        """The first loss: near ln(V) from scratch; from a trained model, near its step-0 validation loss."""
        if not self.from_trained:
            if abs(e.loss - self.ln_v) > self.cfg.init_tolerance:
                self._warn(
                    e.step,
                    "initial_loss",
                    f"the first loss is {e.loss:.3f}, but a freshly initialised model should be near ln(V) = "
                    f"{self.ln_v:.3f}; look for an initialisation bug (weights too large) or labels not shifted by one",
                )
        elif self.start_loss is not None and abs(e.loss - self.start_loss) > self.cfg.trained_tolerance:
            self._warn(
                e.step,
                "initial_loss",
                f"the first loss is {e.loss:.3f}, but the model the run starts from scored {self.start_loss:.3f} on "
                f"the validation split at step 0; train and valid data that differ, or a first step's LR far too high",
            )

    def _progress(self, e: StepEnded, recent: float) -> None:
        """The recent loss once a share of the run has passed: below ln(V) - margin from scratch; from a trained
        model, below where it started."""
        margin = self.cfg.progress_margin
        if not self.from_trained:
            if recent > self.ln_v - margin:
                self._warn(
                    e.step,
                    "no_progress",
                    f"after {e.step} steps the loss is {recent:.3f}, not below ln(V) - {margin} = "
                    f"{self.ln_v - margin:.3f}; the LR is {e.lr:.2e}: a warmup that keeps it near zero, "
                    f"an LR far too high or low, or data and labels that do not match are the usual causes",
                )
        elif self.start_loss is not None and recent > self.start_loss:
            self._warn(
                e.step,
                "no_progress",
                f"after {e.step} steps the loss is {recent:.3f}, above the {self.start_loss:.3f} the model started at: "
                f"the run is undoing its training; lower --lr (now {e.lr:.2e}) or lengthen --warmup",
            )

    def _spike(self, step: int, code: str, message: str) -> None:
        last = self.last_spike.get(code)
        if last is None or step - last >= self.cfg.window:
            self.last_spike[code] = step
            self._warn(step, code, message)

    def _evaluated(self, e: Evaluated) -> None:
        train = statistics.fmean(self.interval) if self.interval else math.nan
        self.interval = []
        self.evals.append((e.step, e.val_loss, train))
        k = self.cfg.overfit_evals
        if len(self.evals) <= k:
            return
        window = self.evals[-(k + 1) :]
        rising = all(b[1] > a[1] for a, b in zip(window, window[1:]))
        falling = math.isfinite(window[1][2]) and window[-1][2] < window[1][2]
        if not rising:
            self.overfit_warned = False
            return
        if falling and not self.overfit_warned:
            self.overfit_warned = True
            best_step, best_val, _ = min(self.evals, key=lambda r: r[1])
            where = f"the best checkpoint is {self.best}" if self.best else f"the best was at step {best_step}"
            self._warn(
                e.step,
                "overfitting",
                f"validation loss rose {k} evaluations in a row ({window[0][1]:.4f} -> {e.val_loss:.4f}) while the "
                f"training loss fell ({window[1][2]:.4f} -> {window[-1][2]:.4f}): the model is overfitting; "
                f"{where} (val loss {best_val:.4f}); more data, more dropout or weight decay, or fewer epochs",
            )
