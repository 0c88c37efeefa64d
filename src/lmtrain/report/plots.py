"""PNG plots of runs with matplotlib (the Agg backend: no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lmtrain.report.run_data import RunData, value

DPI = 100
SIZE = (8.0, 4.5)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write `fig` as a PNG at `path` and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


def loss_figure(run: RunData, path: Path) -> Path:
    """Training and validation loss against optimizer steps (left) and training tokens (right)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(SIZE[0] * 1.5, SIZE[1]))
    for ax, x_of, label in (
        (axes[0], lambda r: r["step"], "optimizer step"),
        (axes[1], run.tokens, "training tokens"),
    ):
        ax.plot([x_of(r) for r in run.steps], [value(r, "loss") for r in run.steps], label="train loss", lw=1.2)
        if run.evals:
            ax.plot(
                [x_of(r) for r in run.evals], [value(r, "val_loss") for r in run.evals], "o-", label="val loss", ms=4
            )
        ax.set_xlabel(label)
        ax.set_ylabel("loss (nats per token)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{run.name}: loss")
    return save_figure(fig, path)


def series_figure(run: RunData, key: str, ylabel: str, path: Path, log_y: bool = False) -> Path:
    """One training-record series (lr, grad_norm, tokens_per_s) against optimizer steps."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot([r["step"] for r in run.steps], [value(r, key) for r in run.steps], lw=1.2)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(f"{run.name}: {ylabel}")
    return save_figure(fig, path)


def tasks_figure(run: RunData, path: Path) -> Path:
    """CORE (left) and each task's accuracy (right) against training tokens."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(SIZE[0] * 1.5, SIZE[1]))
    points = run.task_points()
    cores = run.core_points()
    if cores:
        axes[0].plot([x for x, _ in cores], [c for _, c in cores], "o-", ms=4, label=points[-1][1].get("core_label"))
        axes[0].legend(fontsize="small")
    axes[0].axhline(0.0, color="grey", lw=0.8)
    axes[0].set_ylabel("CORE (mean centred accuracy; 0 = chance)")
    names = sorted({name for _, e in points for name in e.get("tasks", {})})
    for i, name in enumerate(names):
        xs = [(x, e["tasks"][name]["accuracy"]) for x, e in points if name in e.get("tasks", {})]
        axes[1].plot([x for x, _ in xs], [a for _, a in xs], "o-", ms=3, lw=1.0, color=f"C{i % 10}", label=name)
    axes[1].set_ylabel("accuracy")
    axes[1].legend(fontsize="x-small", ncol=2)
    for ax in axes:
        ax.set_xlabel("training tokens")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run.name}: benchmark tasks")
    return save_figure(fig, path)


def run_figures(run: RunData, folder: Path) -> dict[str, Path]:
    """Every plot of a run's report, written into `folder`; keyed by a short name."""
    figures = {
        "loss": loss_figure(run, folder / "loss.png"),
        "lr": series_figure(run, "lr", "learning rate", folder / "lr.png"),
        "grad_norm": series_figure(run, "grad_norm", "gradient norm (before clipping)", folder / "grad_norm.png", True),
        "tokens_per_s": series_figure(run, "tokens_per_s", "training tokens/s", folder / "tokens_per_s.png"),
    }
    if run.tasks:
        figures["tasks"] = tasks_figure(run, folder / "tasks.png")
    return figures


def compare_figure(runs: Sequence[RunData], path: Path) -> Path:
    """Training (lines) and validation (markers) loss of several runs against training tokens; beside it, their CORE
    where any run scored the benchmark tasks."""
    plt = pyplot()
    scored = [r for r in runs if r.core_points()]
    fig, axes = plt.subplots(1, 2 if scored else 1, figsize=(SIZE[0] * (1.5 if scored else 1), SIZE[1]), squeeze=False)
    ax = axes[0][0]
    if scored:
        core_ax = axes[0][1]
        for i, run in enumerate(runs):
            cores = run.core_points()
            if cores:
                label = f"{run.name}: {cores[-1][1]:+.4f}"
                core_ax.plot([x for x, _ in cores], [c for _, c in cores], "o-", color=f"C{i % 10}", ms=4, label=label)
        core_ax.axhline(0.0, color="grey", lw=0.8)
        core_ax.set_xlabel("training tokens")
        core_ax.set_ylabel("CORE (0 = chance)")
        core_ax.grid(alpha=0.3)
        core_ax.legend(fontsize="small")
        core_ax.set_title("CORE against training tokens")
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        xs = [run.tokens(r) for r in run.steps]
        ax.plot(xs, [value(r, "loss") for r in run.steps], color=color, lw=1.0, alpha=0.8, label=f"{run.name} train")
        if run.evals:
            ax.plot(
                [run.tokens(r) for r in run.evals],
                [value(r, "val_loss") for r in run.evals],
                "o--",
                color=color,
                ms=4,
                label=f"{run.name} val",
            )
    ax.set_xlabel("training tokens")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("loss against training tokens")
    return save_figure(fig, path)
