"""The console: plain log lines (files, CI) or a rich progress bar with loss, LR, tokens/s and ETA (a terminal)."""

from __future__ import annotations

from collections.abc import Callable

from lmtrain.fields import field_types, flatten
from lmtrain.hardware import mfu_text
from lmtrain.model.config import ModelConfig
from lmtrain.train.events import (
    CheckpointSaved,
    EndReason,
    Evaluated,
    Event,
    Plan,
    RunEnded,
    RunStarted,
    StepEnded,
    TasksScored,
    Warned,
    perplexity,
)
from lmtrain.train.schedule import lr_at, run_schedule
from lmtrain.train_config import TrainConfig


def _trained_text(plan: Plan) -> str:
    """For conversations: the share of the tokens the loss trains (tokens/s and MFU count every token computed)."""
    if plan.trained_share is None:
        return ""
    return f" ({plan.trained_share:.1%} of them trained: the replies; tokens/s and MFU count every token computed)"


def describe(event: RunStarted) -> list[str]:
    """The resolved run, printed at its start."""
    cfg, plan, tc, m = event.config, event.plan, event.config.train, event.config.model
    oc = tc.optimizer
    schedule = run_schedule(tc, plan.total_steps)
    lines = [
        f"run      {event.out}  (config: {event.out / 'config.json'})",
        f"model    {cfg.preset} --arch {m.arch}: d_model={m.d_model} n_head={m.n_head} n_layer={m.n_layer} "
        f"d_ff={m.d_ff} max_seq_len={m.max_seq_len} vocab={m.vocab_size}{_padding_text(m)} dropout={m.dropout} "
        f"{_arch_text(m)} ({plan.parameters:,} parameters)",
        f"data     {cfg.data.dataset}: train {plan.train_tokens:,} tokens{_trained_text(plan)}, valid "
        f"{plan.valid_tokens:,}; seq_len={cfg.seq_len}, {plan.steps_per_epoch:,} steps per epoch",
        f"steps    {plan.total_steps:,} ({plan.total_steps / plan.steps_per_epoch:.2f} epochs, "
        f"{plan.total_tokens:,} tokens), batch {tc.batch_size} x {cfg.seq_len} = {plan.tokens_per_step:,} "
        f"tokens/step, {_split_text(tc, plan)}",
        f"optim    {_optimizer_text(tc)} lr={oc.peak_lr:g} -> {tc.final_lr:g} {tc.schedule.kind}, warmup "
        f"{schedule.warmup} (LR at step 0: {lr_at(0, schedule):.3g}), weight decay {oc.weight_decay}, "
        f"betas ({oc.beta1}, {oc.beta2}), grad clip {oc.grad_clip}",
        f"runtime  device {plan.device}, dtype {plan.dtype}{_peak_text(plan.peak_flops)}, compile {tc.compile}, "
        f"seed {tc.seed}; "
        f"eval every {tc.evaluation.every} ({plan.eval_windows} windows), save every {tc.checkpoints.every}, "
        f"keep {tc.checkpoints.keep_last}; on NaN: {tc.health.on_nan}; "
        f"logs: {', '.join(tc.logging.sinks) or 'console only'}",
    ]
    width = max((len(f.code) for f in event.findings), default=0)
    lines += [f"doctor   {f.level:<5} {f.code:<{width}}  {f.message}" for f in event.findings]
    lines += [f"resume: {change}" for change in event.changes]
    if event.resumed_from is not None:
        lines.append(f"resumed from {event.resumed_from} at step {plan.start_step}")
    return lines


def _padding_text(m: ModelConfig) -> str:
    return f" (padded to {m.padded_vocab})" if m.padded_vocab != m.vocab_size else ""


def _arch_text(m: ModelConfig) -> str:
    """The fields only this architecture has, as key=value."""
    shared = field_types(ModelConfig)
    return " ".join(f"{k}={v}" for k, v in flatten(m).items() if k not in shared)


def _split_text(tc: TrainConfig, plan: Plan) -> str:
    """How the global batch is split: over ranks (under torchrun), then into micro-batches."""
    layout = tc.layout(plan.world_size)
    micro = f"micro-batch {layout.micro} ({layout.accumulation} accumulation steps)"
    if plan.parallel == "single":
        return micro
    return f"{layout.per_rank} per rank on {plan.world_size} ranks ({plan.parallel}), {micro}"


def _optimizer_text(tc: TrainConfig) -> str:
    if tc.optimizer.name == "muon":
        return f"Muon (block matrices, peak lr={tc.optimizer.peak_muon_lr:g}) + AdamW (embeddings, biases, norms)"
    return "AdamW"


def _peak_text(peak: float | None) -> str:
    return f" (measured peak {peak / 1e12:,.3g} TFLOP/s)" if peak else ""


def _mfu_text(mfu: float | None) -> str:
    return f" | MFU {mfu_text(mfu)}" if mfu is not None else ""


def ppl_text(loss: float) -> str:
    """The perplexity of a loss for a log line ("inf" where it does not exist)."""
    ppl = perplexity(loss)
    return f"{ppl:,.2f}" if ppl is not None else "inf"


def step_line(event: StepEnded, total_steps: int) -> str:
    """The log line of a training step."""
    width = len(str(total_steps))
    return (
        f"step {event.step:>{width}}/{total_steps} | epoch {event.epoch:6.2f} | loss {event.loss:.4f} | "
        f"lr {event.lr:.2e} | grad norm {event.grad_norm:.3f} | {event.tokens_per_s:,.0f} tok/s{_mfu_text(event.mfu)}"
        + (" | update skipped" if event.skipped else "")
    )


def end_lines(event: RunEnded, out: str, total_steps: int) -> list[str]:
    """What the console says when a run stops normally."""
    resume = f"continue with: lmtrain train --resume {out}"
    if event.reason is EndReason.ALREADY_DONE:
        return [f"the run is already at step {event.step} of {total_steps}; pass --max-steps or --epochs to go on"]
    if event.reason is EndReason.SIGNAL:
        return [f"stopped by signal {event.exit_code - 128} at step {event.step}; {resume}"]
    if event.reason is EndReason.STOP_AT:
        return [f"stopped at step {event.step} of {total_steps}; {resume}"]
    speed = f"; {event.tokens_per_s:,.0f} tok/s in training steps" if event.tokens_per_s else ""
    speed += f" (MFU {mfu_text(event.mfu)})" if event.mfu is not None else ""
    best = (
        f"best val loss {event.best_val_loss:.4f} (ppl {ppl_text(event.best_val_loss)})"
        if event.best_val_loss is not None
        else "no validation loss"
    )
    lines = [f"done: {event.step} steps; {best}{speed}"]
    if event.sample is not None:
        lines.append(f"sample: {event.sample!r}")
    return lines


class LineFormatter:
    """Turns events into console lines; remembers what the run's start said (total steps, run folder)."""

    def __init__(self) -> None:
        self.total_steps = 0
        self.out = ""

    def lines(self, event: Event, with_steps: bool = True) -> list[str]:
        """The lines an event prints (steps only at log points, and only `with_steps`)."""
        match event:
            case RunStarted():
                self.total_steps, self.out = event.plan.total_steps, str(event.out)
                return describe(event)
            case StepEnded(log_point=True) if with_steps:
                return [step_line(event, self.total_steps)]
            case Evaluated():
                return [
                    f"step {event.step} | val loss {event.val_loss:.4f} | val ppl {ppl_text(event.val_loss)} | "
                    f"{event.seconds:.2f} s"
                ]
            case TasksScored(report=report):
                figures = [
                    f"{report[f'{m}_label']} {report[m]:+.4f}"
                    for m in ("core", "chatcore")
                    if report.get(m) is not None
                ]
                figure = " | ".join(figures) or f"{len(report['tasks'])} tasks"
                best = max(report["tasks"].items(), key=lambda kv: kv[1]["centred"])
                return [
                    f"step {event.step} | {figure} | best {best[0]} {best[1]['accuracy']:.1%} | {event.seconds:.1f} s"
                ]
            case CheckpointSaved():
                return [f"checkpoint {event.path}" + (" (best)" if event.is_best else "")]
            case Warned():
                return [f"warning [{event.code}] step {event.step}: {event.message}"]
            case RunEnded():
                return end_lines(event, self.out, self.total_steps)
        return []


class PlainConsole:
    """Plain log lines, one call of `write` each (stdout by default)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.format = LineFormatter()

    def on_event(self, event: Event) -> None:
        for line in self.format.lines(event):
            self.write(line)

    def close(self) -> None:
        pass


class ProgressConsole:
    """A rich progress bar (steps, loss, LR, tokens/s, ETA) with the other lines printed above it."""

    def __init__(self, console, lines: bool = True) -> None:  # console: rich.console.Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.format = LineFormatter()
        self.lines = lines
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = None

    def on_event(self, event: Event) -> None:
        if self.lines:
            for line in self.format.lines(event, with_steps=False):
                self.progress.console.print(line, markup=False, highlight=False)
        match event:
            case RunStarted(plan=plan):
                self.progress.start()
                self.task = self.progress.add_task(
                    "train", total=plan.stop_at, completed=plan.start_step, status="starting"
                )
            case StepEnded() if self.task is not None:
                status = f"loss {event.loss:.4f} | lr {event.lr:.2e} | {event.tokens_per_s:,.0f} tok/s"
                self.progress.update(self.task, completed=event.step, status=status)

    def close(self) -> None:
        self.progress.stop()
