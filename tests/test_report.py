"""`lmtrain report` and `lmtrain compare`: PNGs that decode to real plots, HTML that shows them, bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE, train_args
from lmtrain.cli import main

pytestmark = pytest.mark.slow  # every test here trains a model or runs the CLI in a subprocess


@pytest.fixture(scope="module")
def run_with_evals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished fast run with evaluations, warnings and a sample."""
    out = tmp_path_factory.mktemp("report") / "run"
    args = train_args(SAMPLE, out, "--max-steps", "12", "--eval-every", "4", "--log-every", "2")
    assert main([*args, "--sample-tokens", "8"]) == 0  # the last --sample-tokens wins
    return out


def _image(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(str(path))


def _check_png(path: Path) -> None:
    pixels = _image(path)
    height, width = pixels.shape[:2]
    assert 300 <= height <= 2000 and 500 <= width <= 3000, pixels.shape
    rgb = pixels[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05 and len(np.unique(rgb, axis=0)) > 50  # lines, text and axes, not a blank canvas
    assert (rgb.min(axis=1) < 0.5).mean() > 0.005  # enough dark pixels to be plotted lines and labels


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("report*", "checkpoints", "tensorboard"))
    return dest


def test_report_of_a_finished_run(run_with_evals: Path, tmp_path: Path, capsys) -> None:
    run = _copy(run_with_evals, tmp_path / "run")
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {run / 'report.html'}"
    html = (run / "report.html").read_text()
    images = re.findall(r"<img src='([^']+)'", html)
    assert images == [f"report_plots/{n}.png" for n in ("loss", "lr", "grad_norm", "tokens_per_s")]
    for src in images:
        _check_png(run / src)
    assert "(finished)" in html and "best validation loss" in html and "Doctor" in html
    assert "parameters" in html and "&quot;preset&quot;: &quot;micro&quot;" in html  # findings and the config
    sample = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["event"] == "end"]
    assert sample[0]["sample"] and json.dumps(sample[0]["sample"])[1:10].replace("\\n", "") in html.replace("\n", "")
    assert f"MFU {sample[0]['mfu']:.1%})" in html


def test_report_of_a_running_run(run_with_evals: Path, tmp_path: Path) -> None:
    run = _copy(run_with_evals, tmp_path / "run")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    running = [line for line in lines if '"event": "end"' not in line][:-3]
    (run / "metrics.jsonl").write_text("\n".join(running) + '\n{"event": "step", "st')  # a line being written
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "(running)" in html and "No sample" in html
    _check_png(run / "report_plots" / "loss.png")


def test_report_of_a_failed_run(run_with_evals: Path, tmp_path: Path) -> None:
    run = _copy(run_with_evals, tmp_path / "run")
    lines = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"event": "end"' not in line]
    failure = {"event": "failed", "step": 12, "reason": "non_finite", "message": "the loss became nan at step 12"}
    (run / "metrics.jsonl").write_text("\n".join([*lines, json.dumps(failure)]) + "\n")
    out = tmp_path / "elsewhere" / "failed.html"
    out.parent.mkdir()
    assert main(["report", str(run), "--out", str(out)]) == 0
    html = out.read_text()
    assert "(failed)" in html and "the loss became nan at step 12" in html
    assert "src='failed_plots/loss.png'" in html and (out.parent / "failed_plots" / "loss.png").is_file()


def test_compare_overlays_runs(run_with_evals: Path, tmp_path: Path, capsys) -> None:
    other = _copy(run_with_evals, tmp_path / "other")
    out = tmp_path / "cmp.png"
    assert main(["compare", str(run_with_evals), str(other), "--out", str(out)]) == 0
    assert "compare: " in capsys.readouterr().out
    _check_png(out)


def _fails(capsys, args: list[str], fragment: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and fragment in err, err


def test_bad_input_is_one_line_and_overwrites_nothing(run_with_evals: Path, tmp_path: Path, capsys) -> None:
    _fails(capsys, ["report", str(tmp_path)], "is not a run folder (it has no config.json)")
    _fails(capsys, ["report", str(tmp_path / "nothing")], "does not exist")
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"preset": "micro"}))
    _fails(capsys, ["report", str(empty)], "has no metrics yet")
    (empty / "metrics.jsonl").write_text('{"event": "start", "step": 0, "tokens_per_step": 128}\n')
    _fails(capsys, ["report", str(empty)], "has no metrics yet")
    assert not (empty / "report.html").exists()
    _fails(capsys, ["report", str(run_with_evals), "--out", str(tmp_path / "no" / "such" / "r.html")], "does not exist")
    _fails(capsys, ["report", str(run_with_evals), "--out", str(tmp_path)], "is a folder")
    existing = tmp_path / "keep.png"
    existing.write_bytes(b"mine")
    _fails(capsys, ["compare", str(run_with_evals), str(empty), "--out", str(existing)], "has no metrics yet")
    _fails(capsys, ["compare", str(run_with_evals), "--out", str(tmp_path / "c.jpg")], "ending in .png")
    assert existing.read_bytes() == b"mine"
