"""Reports of runs: report.html with PNG plots for one run, and one PNG comparing several."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lmtrain.errors import ConfigError
from lmtrain.files import atomic_dir, temp_name, write_text_atomic
from lmtrain.report.html import relative, render
from lmtrain.report.plots import compare_figure, run_figures
from lmtrain.report.run_data import RunData, read_run


def check_writable(out: Path, flag: str = "--out") -> None:
    """`out` can be created or replaced: its folder exists and is writable, and it is not a folder itself."""
    parent = out.parent
    if out.is_dir():
        raise ConfigError(f"{flag} {out} is a folder; give a file name")
    if not parent.is_dir():
        raise ConfigError(f"{flag} {out}: the folder {parent} does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{flag} {out}: the folder {parent} is not writable; choose another path")


def write_report(folder: Path, out: Path | None = None) -> Path:
    """Write the report of the run in `folder` to `out` (default FOLDER/report.html), plots beside it."""
    run = read_run(folder)
    out = out or folder / "report.html"
    check_writable(out)
    plots = out.with_name(out.stem + "_plots")
    try:
        with atomic_dir(plots, replace=True) as tmp:
            figures = run_figures(run, tmp)
        pages = {name: relative(plots / path.name, out.parent) for name, path in figures.items()}
        write_text_atomic(out, render(run, pages))
    except OSError as exc:
        raise ConfigError(
            f"could not write the report to {out} ({exc.strerror or exc}); choose another --out"
        ) from None
    return out


def write_compare(folders: Sequence[Path], out: Path) -> tuple[Path, list[RunData]]:
    """One PNG overlaying the loss of the runs in `folders` against training tokens."""
    runs = [read_run(folder) for folder in folders]
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: compare writes a PNG; give a file name ending in .png")
    check_writable(out)
    tmp = temp_name(out).with_suffix(".png")  # matplotlib takes the format from the suffix
    try:
        compare_figure(runs, tmp)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"could not write {out} ({exc.strerror or exc}); choose another --out") from None
    return out, runs
