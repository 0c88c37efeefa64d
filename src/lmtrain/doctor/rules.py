"""The doctor's rules: pure functions from what is known about a run (`Facts`) to findings OK, WARN or ERROR.

Each finding says what was found, why it matters and what to do, in one or two sentences.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from lmtrain.config import RunConfig
from lmtrain.defaults import FINETUNE, WARMUP_SHARE
from lmtrain.doctor.chat_rules import ConversationStats, conversations_finding
from lmtrain.findings import Finding, Level
from lmtrain.model.sizing import step_memory
from lmtrain.presets import ff_warning
from lmtrain.train.schedule import LONG_WARMUP_SHARE, lr_at, run_schedule
from lmtrain.train_config import BatchLayout

COMPUTE_OPTIMAL_TOKENS_PER_PARAM = 20.0
"""Hoffmann et al. (2022): a compute-optimal run sees about 20 tokens per parameter."""
GIB = 1 << 30


@dataclass(frozen=True)
class Trial:
    """What one measured optimizer step on the run's device showed."""

    step_seconds: float
    initial_loss: float
    peak_memory: int | None
    """Peak bytes allocated on a GPU during the step; None on the CPU."""
    out_of_memory: bool = False
    """The step ran out of memory."""


@dataclass(frozen=True)
class DocumentStats:
    """Document lengths of the training split, in tokens."""

    documents: int
    median_tokens: float
    longer_than_context: float
    """Share of documents longer than the training window."""


@dataclass(frozen=True, kw_only=True)
class Facts:
    """Everything the rules look at."""

    cfg: RunConfig
    total_steps: int
    start_step: int
    train_tokens: int
    eval_windows: int
    documents: DocumentStats | None
    """The training documents' lengths (None for conversations)."""
    device: str
    dtype: str
    device_memory: int | None
    cpu_has_bf16: bool = True
    trial: Trial | None = None
    world_size: int = 1
    """Processes training together (under torchrun); each takes its share of the batch."""
    tasks_tokens: int = 0
    """Tokens one scoring of the --tasks runs through the model (estimated from a sample of their items); 0: none."""
    conversations: ConversationStats | None = None
    """--dataset chat: the packed training conversations."""

    @property
    def layout(self) -> BatchLayout:
        """The global batch over the ranks and their micro-batches."""
        return self.cfg.train.layout(self.world_size)


def _lr_points(f: Facts) -> str:
    schedule = run_schedule(f.cfg.train, f.total_steps)
    points = [f"step {s}: {lr_at(s, schedule):.3g}" for s in (100, 500, 1000) if s < f.total_steps]
    return "LR at " + ", ".join(points) if points else f"LR at step 0: {lr_at(0, schedule):.3g}"


def parameters(f: Facts) -> Finding:
    counts = f.cfg.model.param_counts()
    return Finding(
        "OK",
        "parameters",
        f"{counts['total']:,} parameters, {counts['non_embedding']:,} outside the embeddings "
        f"({counts['non_embedding'] / counts['total']:.0%})",
    )


def tokens_per_parameter(f: Facts) -> Finding:
    params = f.cfg.model.param_counts()["total"]
    run_tokens = f.total_steps * f.cfg.train.batch_size * f.cfg.seq_len
    per_epoch, per_run = f.train_tokens / params, run_tokens / params
    epochs = run_tokens / f.train_tokens
    what = (
        f"the training split has {f.train_tokens:,} tokens ({per_epoch:.3g} per parameter per epoch); the run "
        f"sees {run_tokens:,} ({per_run:.3g} per parameter, {epochs:.2f} epochs) against the "
        f"~{COMPUTE_OPTIMAL_TOKENS_PER_PARAM:g} of a compute-optimal run"
    )
    if per_run < COMPUTE_OPTIMAL_TOKENS_PER_PARAM / 10:
        return Finding(
            "WARN",
            "tokens_per_parameter",
            f"{what}: the model is large for this budget; a smaller --preset (or more steps) learns more "
            f"from the same compute, unless this is a smoke test",
        )
    if epochs > 4:
        return Finding(
            "WARN",
            "tokens_per_parameter",
            f"{what}: repeating data more than ~4 times gives little (Muennighoff et al., 2023); expect "
            f"overfitting and watch the validation loss, or use a smaller model",
        )
    return Finding("OK", "tokens_per_parameter", what)


def steps(f: Facts) -> Finding:
    tc = f.cfg.train
    left = f.total_steps - f.start_step
    resumed = f" ({left:,} left after step {f.start_step:,})" if f.start_step else ""
    split = f.layout
    ranks = f", {split.per_rank} on each of {f.world_size} ranks" if f.world_size > 1 else ""
    plural = "es" if split.accumulation > 1 else ""
    return Finding(
        "OK",
        "steps",
        f"{f.total_steps:,} optimizer steps{resumed} of {tc.batch_size} x {f.cfg.seq_len} = "
        f"{tc.batch_size * f.cfg.seq_len:,} tokens{ranks}, in {split.accumulation} micro-batch{plural} of {split.micro}",
    )


def warmup(f: Facts) -> Finding:
    tc, total = f.cfg.train, f.total_steps
    warm = tc.schedule.warmup_steps(total)
    lr = tc.optimizer.peak_lr
    suggestion = max(1, round(WARMUP_SHARE * total))
    points = _lr_points(f)
    if warm >= total:
        level: Level = "WARN" if tc.schedule.allow_long_warmup else "ERROR"
        return Finding(
            level,
            "warmup",
            f"warmup {warm} of {total} steps: the LR never reaches its peak {lr:g} ({points}); "
            f"use --warmup {suggestion}",
        )
    share = warm / total
    if warm and share >= LONG_WARMUP_SHARE:
        probe = min(100, warm // 10)
        at_probe = lr_at(probe, run_schedule(f.cfg.train, f.total_steps))
        return Finding(
            "WARN",
            "warmup",
            f"warmup {warm} of {total} steps ({share:.0%}): the LR at step {probe} is {at_probe:.1e}, "
            f"{at_probe / lr:.2g} of the peak, and much of the run learns slowly ({points}); use --warmup {suggestion}",
        )
    auto = " (5% of the run, the default)" if tc.schedule.warmup is None else ""
    return Finding("OK", "warmup", f"warmup {warm} of {total} steps ({share:.0%}){auto}; {points}")


def learning_rate(f: Facts) -> Finding:
    lr = f.cfg.train.optimizer.peak_lr
    if lr > 1e-2:
        return Finding(
            "WARN",
            "lr",
            f"--lr {lr:g} is far above what AdamW trains GPT models with (about 6e-4 to 3e-3); expect a "
            f"diverging loss: try --lr 1e-3 or run lmtrain doctor on a lower value",
        )
    if lr < 1e-5:
        return Finding("WARN", "lr", f"--lr {lr:g} is so low that the model will barely move; try 3e-4 to 1e-3")
    tc = f.cfg.train
    muon = f"; Muon matrices at {tc.optimizer.peak_muon_lr:g}" if tc.optimizer.name == "muon" else ""
    return Finding("OK", "lr", f"peak LR {lr:g}, decaying to {tc.final_lr:g} ({tc.schedule.kind}){muon}")


def context(f: Facts) -> Finding:
    if f.conversations is not None:
        return conversations_finding(f.conversations)
    docs, seq, max_len = f.documents, f.cfg.seq_len, f.cfg.model.max_seq_len
    assert docs is not None
    what = (
        f"{docs.longer_than_context:.0%} of the {docs.documents:,} training documents are longer than the "
        f"{seq}-token window (median {docs.median_tokens:,.0f} tokens); documents are packed back to back and "
        f"run across windows, never cut"
    )
    if seq < max_len:
        return Finding(
            "WARN",
            "context",
            f"{what}; but the model has {max_len} positions and training uses {seq}: positions {seq}-{max_len - 1} "
            f"are never trained, so evaluation or generation past {seq} tokens will be poor; pass "
            f"--seq-len {max_len} or --max-seq-len {seq}",
        )
    return Finding("OK", "context", what)


def memory_estimate(f: Facts) -> int:
    """Bytes one optimizer step of the run needs (see `step_memory`)."""
    tc = f.cfg.train
    return step_memory(
        f.cfg.model,
        f.layout.micro * f.cfg.seq_len,
        f.dtype in ("bf16", "fp16"),
        muon=tc.optimizer.name == "muon",
        checkpointing=tc.activation_checkpointing,
    )


def memory(f: Facts) -> Finding:
    estimate = memory_estimate(f)
    measured = f.trial.peak_memory if f.trial else None
    need = max(estimate, measured or 0)
    what = f"a step needs about {estimate / GIB:.2f} GiB (estimate)" + (
        f", {measured / GIB:.2f} GiB measured at peak" if measured else ""
    )
    fix = f"lower --micro-batch-size (now {f.layout.micro}; gradients still add up to the batch) or --seq-len"
    if f.trial is not None and f.trial.out_of_memory:
        return Finding("ERROR", "memory", f"{what}, and a trial step ran out of memory on {f.device}; {fix}")
    if f.device_memory is None:
        return Finding("OK", "memory", f"{what}; the memory of {f.device} is unknown")
    where = f"{f.device} has {f.device_memory / GIB:.1f} GiB"
    if need > f.device_memory:
        return Finding("ERROR", "memory", f"{what}, but {where}: it will run out of memory; {fix}")
    if need > 0.9 * f.device_memory:
        return Finding("WARN", "memory", f"{what} of the {where}: little headroom; {fix}")
    return Finding("OK", "memory", f"{what}; {where}")


def time_estimate(f: Facts) -> Finding:
    if f.trial is None or f.trial.out_of_memory:
        return Finding("OK", "time", "no step was measured (the data or the device was not available)")
    left = f.total_steps - f.start_step
    seconds = f.trial.step_seconds * left
    compiled = "; measured without --compile" if f.cfg.train.compile else ""
    tasks = ""
    if f.tasks_tokens:
        every = f.cfg.train.evaluation.tasks_every
        due = f.total_steps // every - f.start_step // every if every else 0
        scorings = due + (0 if every and f.total_steps % every == 0 else 1)  # and one at the end
        # a forward pass is about a third of a training step's work per token; the ranks share the items
        each = f.trial.step_seconds * f.tasks_tokens / (3 * f.layout.per_rank * f.cfg.seq_len * f.world_size)
        seconds += scorings * each
        tasks = f", {scorings:,} scorings of the benchmark tasks (about {_duration(each)} each)"
    return Finding(
        "OK",
        "time",
        f"one step took {f.trial.step_seconds:.3g} s on {f.device} ({f.dtype}): about {_duration(seconds)} for "
        f"{left:,} steps{tasks}, plus evaluations and checkpoints{compiled}",
    )


def initial_loss(f: Facts) -> Finding:
    expected = math.log(f.cfg.model.vocab_size)
    if f.cfg.origin is not None:
        return _trained_initial_loss(f, expected)
    if f.trial is None or f.trial.out_of_memory:
        return Finding("OK", "initial_loss", f"expected initial loss ln(V) = {expected:.3f}")
    got = f.trial.initial_loss
    uniform = f.cfg.model.uniform_at_init  # a zero head predicts uniformly: exactly ln(V), whatever the data
    if not math.isfinite(got) or abs(got - expected) > (INITIAL_LOSS_UNIFORM if uniform else INITIAL_LOSS_SPREAD):
        why = "the untied head starts at zero, so it must be exactly ln(V)" if uniform else "expected near ln(V)"
        return Finding(
            "WARN",
            "initial_loss",
            f"the loss of the first batch at initialisation is {got:.3f}; {why} = {expected:.3f}: "
            f"an initialisation or label bug (check --init-std and that targets are inputs shifted by one)",
        )
    return Finding("OK", "initial_loss", f"first-batch loss {got:.3f} at initialisation, ln(V) = {expected:.3f}")


def _trained_initial_loss(f: Facts, ln_v: float) -> Finding:
    """A run from a trained model (--init-from) starts at that model's loss on the run's data, not at ln(V): a loss at
    ln(V) is an untrained model's (the weights were not loaded), one far above it a model predicting other tokens
    confidently (the tokenizer is not the model's). Far from its own domain a trained model may start near ln(V)."""
    source = f.cfg.origin["path"] if f.cfg.origin else "?"
    if f.trial is None or f.trial.out_of_memory:
        return Finding("OK", "initial_loss", f"starts from {source}: its own loss, not ln(V) = {ln_v:.3f}")
    got = f.trial.initial_loss
    if not math.isfinite(got) or abs(got - ln_v) < UNTRAINED_SPREAD or got > ln_v + TRAINED_MARGIN:
        why = "as an untrained model's" if abs(got - ln_v) < UNTRAINED_SPREAD else "far above it"
        return Finding(
            "WARN",
            "initial_loss",
            f"the first batch's loss is {got:.3f} with the weights of {source}, {why} (ln(V) = {ln_v:.3f}): the "
            f"weights or the tokenizer are not that model's",
        )
    opt = f.cfg.train.optimizer
    if got > ln_v - FAR_START and (opt.name, opt.lr) == (FINETUNE["optimizer"], FINETUNE["lr"]):
        return Finding(
            "WARN",
            "initial_loss",
            f"the first batch's loss is {got:.3f} with the weights of {source}, within {FAR_START:g} nats of ln(V) = "
            f"{ln_v:.3f}: the model knows little of this data, and from such a start --init-from's defaults "
            f"(AdamW at {FINETUNE['lr']:g}) learn slowly; train as from scratch: --optimizer muon and the --lr of a "
            f"preset of its size (lmtrain presets; docs/from-released.md)",
        )
    return Finding(
        "OK", "initial_loss", f"first-batch loss {got:.3f} with the weights of {source} (ln(V) = {ln_v:.3f})"
    )


FAR_START = 2.0
"""A trained model's first loss within this of ln(V): it knows little of the data (measured: a `tiny` of WikiText on
the Linux documentation starts 0.2 below, one of that documentation 6.9 below; finetune-e2e-cpu-2core.json)."""
TRAINED_MARGIN = 1.0
"""A trained model's first loss more than this above ln(V) means its tokenizer is not the run's."""
UNTRAINED_SPREAD = 0.02
"""... and one within this of ln(V) that it predicts uniformly, as an untrained model does."""
INITIAL_LOSS_SPREAD = 1.0
"""How far from ln(V) the first loss may be with a random head (its logits are small, not zero)."""
INITIAL_LOSS_UNIFORM = 0.01
"""... and with a zero-initialised head (uniform predictions; only float rounding)."""


def architecture(f: Facts) -> Finding:
    m = f.cfg.model
    note = ff_warning(m)
    if note:
        return Finding("WARN", "d_ff", note.removeprefix("note: ") + "; pass --d-ff to choose it on purpose")
    kind = "SwiGLU's parameter-matched 2/3 of 4 x d_model" if m.gated_mlp else "4 x d_model"
    return Finding("OK", "d_ff", f"d_ff = {kind} = {m.d_ff} (--arch {m.arch})")


def precision(f: Facts) -> Finding:
    if f.device == "cpu" and f.dtype == "bf16" and not f.cpu_has_bf16:
        return Finding(
            "WARN",
            "dtype",
            "--dtype bf16 on a CPU without bf16 matrix units is emulated, about 20x slower than fp32 on the "
            "2-core machine lmtrain was measured on; use --dtype fp32",
        )
    return Finding("OK", "dtype", f"{f.dtype} on {f.device}")


def evaluation(f: Facts) -> Finding:
    tokens = f.eval_windows * f.cfg.seq_len
    what = f"each evaluation scores the same {f.eval_windows:,} validation windows ({tokens:,} tokens)"
    if tokens < 8192:
        return Finding(
            "WARN",
            "evaluation",
            f"{what}: too few to tell close checkpoints apart when choosing `best`; raise --eval-windows",
        )
    return Finding("OK", "evaluation", what)


RULES: tuple[Callable[[Facts], Finding], ...] = (
    parameters,
    steps,
    tokens_per_parameter,
    warmup,
    learning_rate,
    context,
    architecture,
    precision,
    evaluation,
    memory,
    time_estimate,
    initial_loss,
)


def diagnose(facts: Facts) -> list[Finding]:
    """Every rule's finding, in report order."""
    return [rule(facts) for rule in RULES]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
