"""Every command's --help works: each subcommand of `lmtrain` (and of `lmtrain bench`), and the familiar entry points."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from conftest import REPO
from lmtrain.cli import build_parser, main


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every subcommand path of `parser` (("train",), ("bench", "train"), ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from subcommands(sub, (*prefix, name))


COMMANDS = sorted(subcommands(build_parser()))


def test_the_commands_include_every_documented_one() -> None:
    top = {c[0] for c in COMMANDS}
    assert {"prepare", "train", "eval", "generate", "doctor", "report", "compare", "export", "import-hf"} <= top
    assert {"presets", "bench"} <= top
    assert {c[1] for c in COMMANDS if c[0] == "bench" and len(c) == 2} >= {"prepare", "generate", "train", "recipe"}


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_of_every_subcommand(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.startswith(f"usage: lmtrain {' '.join(command)}") and len(out.splitlines()) > 3


def test_help_of_lmtrain_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [[sys.executable, str(REPO / "training" / "train_lm.py")], ["bash", str(REPO / "run" / "run_train_lm.sh")]],
    ids=["train_lm.py", "run_train_lm.sh"],
)
def test_help_of_the_familiar_entry_points(command: list[str]) -> None:
    proc = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, timeout=120, env=os.environ | {"PYTHON": sys.executable}
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "usage: lmtrain train" in proc.stdout and "--model_preset" in proc.stdout
    text = " ".join(proc.stdout.split())
    assert "--warmup" in text and "(default: 5% of the run" in text  # the help text that once crashed argparse
    if command[0] == "bash":
        assert proc.stdout.startswith("usage: run/run_train_lm.sh") and "--rdzv-endpoint" in proc.stdout


def test_every_config_field_has_its_help() -> None:
    """A flag's help is its field's `option(..., doc)` (field metadata, not a docstring that -OO would strip)."""
    from lmtrain.config import DataConfig
    from lmtrain.fields import leaves, option
    from lmtrain.model.config import ModelConfig
    from lmtrain.model.registry import architectures
    from lmtrain.train_config import TrainConfig

    classes = (DataConfig, TrainConfig, ModelConfig, *(a.config for a in architectures().values()))
    empty = [f"{cls.__name__}.{key}" for cls in classes for key, leaf in leaves(cls).items() if not leaf.doc.strip()]
    assert empty == []
    with pytest.raises(TypeError, match="help text"):
        option(3)


OPTIMIZED_HELP = """
import contextlib, io, sys
from lmtrain.cli import build_parser, main
sys.path.insert(0, sys.argv[1])
from test_help import subcommands
for command in sorted(subcommands(build_parser())):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*command, "--help"])
    assert out.getvalue().startswith("usage: lmtrain"), command
    if command == ("train",):
        assert "Peak learning rate of the AdamW groups" in out.getvalue()
print(len(sorted(subcommands(build_parser()))))
"""


def test_every_help_survives_python_OO() -> None:
    """Under `python -OO` (docstrings stripped, as PYTHONOPTIMIZE=2 does) every command's help still prints in full."""
    proc = subprocess.run(
        [sys.executable, "-OO", "-c", OPTIMIZED_HELP, str(REPO / "tests")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) == len(COMMANDS)
