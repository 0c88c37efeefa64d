"""`lmtrain doctor --lr-find`: a range test with the LR rising geometrically, its plot and a suggested peak LR."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import train_args
from lmtrain.cli import main
from lmtrain.doctor.lr_find import ramp, smooth, suggest


def test_the_ramp_rises_geometrically_and_the_suggestion_is_a_tenth_of_the_best() -> None:
    lrs = [ramp(i, 5, 1e-4, 1.0) for i in range(5)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1.0)
    assert all(b / a == pytest.approx(10.0) for a, b in zip(lrs, lrs[1:]))
    assert smooth([4.0, 2.0]) == pytest.approx([4.0, (0.9 * 0.4 + 0.1 * 2.0) / (1 - 0.9**2)])  # bias-corrected
    assert suggest([1e-3, 1e-2, 1e-1], [5.0, 3.0, 9.0]) == pytest.approx(1e-3)


@pytest.mark.slow
def test_doctor_lr_find_runs_the_test_plots_it_and_suggests(sample_dir: Path, tmp_path: Path, capsys) -> None:
    plot = tmp_path / "lr.png"
    args = [
        "doctor",
        *train_args(sample_dir, tmp_path / "unused")[1:],
        "--max-steps",
        "50",
        "--lr-find",
        "--lr-find-steps",
        "30",
        "--lr-min",
        "1e-5",
        "--lr-max",
        "10",
        "--plot",
        str(plot),
        "--json",
    ]
    assert main(args) == 0
    found = json.loads(capsys.readouterr().out)["lr_find"]
    lrs, smoothed = found["lrs"], found["smoothed"]
    assert 5 <= len(lrs) <= 30 and lrs[0] == pytest.approx(1e-5)
    assert all(b > a for a, b in zip(lrs, lrs[1:]))
    best = min((s, lr) for s, lr in zip(smoothed, lrs) if math.isfinite(s))[1]
    assert found["suggested_lr"] == pytest.approx(best / 10)
    assert found["stopped_early"] or lrs[-1] == pytest.approx(10)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "unused").exists()  # the doctor trains nothing into the run folder
    assert main([*args, "--lr-find-steps", "2"]) == 2
    assert "--lr-find-steps of at least 5" in capsys.readouterr().err
