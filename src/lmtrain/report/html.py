"""report.html: one page per run with its plots, outcome, final metrics, doctor findings, warnings, config, sample."""

from __future__ import annotations

import json
import math
import os
from html import escape
from pathlib import Path
from typing import Any

from lmtrain.hardware import mfu_text
from lmtrain.report.run_data import RunData, value
from lmtrain.tasks.results import GPT2_REFERENCE
from lmtrain.train.observers.console import ppl_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0; } pre { background: #f6f6f6; padding: 1em; overflow: auto; }
.OK { color: #1a7f37; } .WARN { color: #9a6700; } .ERROR, .failed { color: #cf222e; font-weight: bold; }
"""


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{escape(classes[i])}"' if classes else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def summary_rows(run: RunData) -> list[tuple[str, str]]:
    """The final metrics: last step, losses, best checkpoint, throughput, outcome."""
    last = run.steps[-1] if run.steps else {"step": 0}
    best = run.best_eval()
    rows = [("status", run.status)]
    origin = run.config.get("init_from")
    if origin:  # --init-from: where the weights came from, and which weights
        sha = ", ".join(f"{name} {digest}" for name, digest in origin.get("weights_sha256", {}).items())
        start = next((e for e in run.evals if e["step"] == 0), None)
        at = f"; validation loss {start['val_loss']:.4f} at step 0" if start else ""
        kind = origin.get("format", origin.get("kind"))  # `kind` in runs of lmtrain 0.2
        rows.append(("started from", f"{origin['path']} ({kind}; SHA-256 {sha}){at}"))
    share = run.starts[-1].get("trained_share") if run.starts else None
    trained = f", {share:.1%} of them trained: the assistant replies" if share is not None else ""
    rows += [
        ("last logged step", f"{last['step']:,} ({run.tokens(last):,} training tokens{trained})"),
        ("last training loss", _fmt(value(last, "loss"))),
    ]
    held = " (held-out conversations, their replies' tokens)" if share is not None else ""
    if run.evals:
        rows.append((f"last validation loss{held}", _fmt(value(run.evals[-1], "val_loss"))))
    if best is not None:
        ppl = ppl_text(best["val_loss"])
        rows.append(("best validation loss", f"{best['val_loss']:.4f} (perplexity {ppl}) at step {best['step']:,}"))
    outcome = run.outcome or {}
    if outcome.get("best_checkpoint"):
        rows.append(("best checkpoint", str(outcome["best_checkpoint"])))
    if outcome.get("tokens_per_s"):
        mfu = f", MFU {mfu_text(outcome['mfu'])}" if outcome.get("mfu") is not None else ""
        rows.append(("training tokens/s", f"{outcome['tokens_per_s']:,.0f} (training steps only{mfu})"))
    if outcome.get("event") == "failed":
        rows.append(("failure", str(outcome.get("message"))))
    elif outcome:
        rows.append(("stopped because", str(outcome.get("reason"))))
    rows.append(("warnings", str(len(run.warnings))))
    return rows


def benchmark_rows(run: RunData) -> tuple[tuple[str, ...], list[tuple[str, ...]], str]:
    """(header, rows, caption) of the latest scoring of the benchmark tasks beside GPT-2's published figures."""
    step, entry = max(run.tasks.items())
    references = list(GPT2_REFERENCE)
    header = ("task", "accuracy", "centred", "items", *references)
    rows = []
    for name, t in entry["tasks"].items():
        refs = [f"{GPT2_REFERENCE[m][name]:.1%}" if name in GPT2_REFERENCE[m] else "" for m in references]
        rows.append((name, f"{t['accuracy']:.2%}", f"{t['centred']:+.4f}", f"{t['items']:,}", *refs))
    if entry.get("core") is not None:
        refs = [f"{GPT2_REFERENCE[m]['core']:.4f} (22 tasks)" for m in references]
        rows.append((entry["core_label"], "", f"{entry['core']:+.4f}", "", *refs))
    if entry.get("chatcore") is not None:
        rows.append((entry["chatcore_label"], "", f"{entry['chatcore']:+.4f}", "", *[""] * len(references)))
    cap = entry.get("max_per_task")
    caption = (
        f"At step {step:,}"
        + (f", at most {cap} items per task" if cap else ", every item")
        + f"; prompts begin with {entry.get('bos', '?')}. GPT-2's figures: the published OpenAI checkpoints "
        "(nanochat's estimate_gpt3_core); their CORE covers all 22 tasks."
    )
    return header, rows, caption


def render(run: RunData, figures: dict[str, str]) -> str:
    """The report page; `figures` maps plot names to paths relative to the page."""
    status_cls = "failed" if run.status == "failed" else ""
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>lmtrain report: {escape(run.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>lmtrain report: {escape(run.name)} <span class='{status_cls}'>({escape(run.status)})</span></h1>",
        f"<p>{escape(str(run.folder))}</p>",
        "<h2>Final metrics</h2>",
        _table(summary_rows(run), ("", "")),
        "<h2>Plots</h2>",
    ]
    parts += [f"<img src='{escape(src)}' alt='{escape(name)}'>" for name, src in figures.items()]
    if run.tasks:
        header, rows, caption = benchmark_rows(run)
        parts += ["<h2>Benchmark tasks</h2>", f"<p>{escape(caption)}</p>", _table(rows, header)]
    findings = run.findings
    parts.append("<h2>Doctor</h2>")
    if findings:
        rows = [(f["level"], f["code"], f["message"]) for f in findings]
        parts.append(_table(rows, ("level", "check", "finding"), [f["level"] for f in findings]))
    else:
        parts.append("<p>The doctor did not run (--doctor off).</p>")
    parts.append(f"<h2>Warnings ({len(run.warnings)})</h2>")
    if run.warnings:
        parts.append(
            _table(
                [(w["step"], w.get("code", ""), w.get("message", "")) for w in run.warnings],
                ("step", "code", "message"),
            )
        )
    else:
        parts.append("<p>None.</p>")
    sample = (run.outcome or {}).get("sample")
    parts.append("<h2>Sample</h2>")
    parts.append(
        f"<pre>{escape(sample)}</pre>"
        if sample
        else "<p>No sample (the run has not finished, or --sample-tokens 0).</p>"
    )
    parts.append("<h2>Resolved configuration</h2>")
    parts.append(f"<pre>{escape(json.dumps(run.config, indent=2))}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def relative(path: Path, start: Path) -> str:
    """`path` relative to the folder `start`, with forward slashes."""
    return Path(os.path.relpath(path, start)).as_posix()
