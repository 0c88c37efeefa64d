"""The documentation cannot drift from the CLI: every command line in the README's and docs' code blocks parses, every
flag of every command is documented, every link between the pages resolves, and the README stays a front page."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO
from lmtrain.cli import build_parser
from lmtrain.cli.legacy import translate
from test_help import COMMANDS

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LAUNCHER_FLAGS = ("--gpus", "--nodes", "--rdzv-endpoint")
"""run_train_lm.sh's own flags, each with a value; the rest goes to lmtrain train."""


def code_lines(page: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line inside a fenced code block, continuation lines joined, prompts stripped."""
    inside, pending, start = False, "", 0
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        text = line.strip().removeprefix("$ ")
        start = start or number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        yield start, pending + text
        pending, start = "", 0


def lmtrain_argv(line: str) -> list[str] | None:
    """The `lmtrain` arguments a documented command line stands for, or None when it runs something else."""
    line = re.split(r"\s+#\s", line, maxsplit=1)[0]  # a trailing comment
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if not words:
        return None
    if words[0] in ("lmtrain", ".venv/bin/lmtrain"):
        return words[1:]
    if "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["lmtrain"]:
        return words[words.index("-m") + 2 :]  # torchrun ... -m lmtrain ..., python -m lmtrain ...
    if words[0].startswith("python") and words[1:2] and words[1].endswith("training/train_lm.py"):
        return translate(words[2:])
    if words[0].endswith("run_train_lm.sh"):
        rest, args = words[1:], []
        while rest:
            word = rest.pop(0)
            if word in LAUNCHER_FLAGS:
                rest.pop(0)
            else:
                args.append(word)
        return translate(args)
    return None


DOCUMENTED = [
    pytest.param(argv, id=f"{page.name}:{number}")
    for page in PAGES
    for number, line in code_lines(page)
    if (argv := lmtrain_argv(line)) is not None and "--help" not in argv
]


def test_the_pages_document_commands() -> None:
    assert len(DOCUMENTED) > 60
    commands = {p.values[0][0] for p in DOCUMENTED}
    assert {"prepare", "train", "eval", "generate", "doctor", "report", "compare", "export", "import-hf"} <= commands
    assert {"presets", "bench"} <= commands


@pytest.mark.parametrize("argv", DOCUMENTED)
def test_every_documented_command_line_parses(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"lmtrain {' '.join(argv)}: {capsys.readouterr().err.strip()}")
    assert callable(args.handler)


def _parser_of(command: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in command:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != ("bench",)], ids=" ".join)
def test_every_flag_is_documented(command: tuple[str, ...]) -> None:
    docs = "\n".join(page.read_text() for page in PAGES)
    flags = {
        option
        for action in _parser_of(command)._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    missing = sorted(flag for flag in flags if not re.search(re.escape(flag) + r"(?![\w-])", docs))
    assert missing == []


def test_every_link_between_the_pages_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).is_file():
                broken.append(f"{page.name} -> {target}")
    assert broken == []


def test_the_readme_is_a_front_page() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for command in ("make setup", "make demo", "make test", "training/train_lm.py", "run/run_train_lm.sh"):
        assert command in readme
    for page in sorted((REPO / "docs").glob("*.md")):
        if page.name not in ("README.md", "small-preset.md"):
            assert f"docs/{page.name}" in readme, page.name


def test_the_exit_codes_in_the_docs_are_the_codes_lmtrain_uses() -> None:
    from lmtrain import errors

    page = (REPO / "docs" / "exit-codes-and-metrics.md").read_text()
    table = set(re.findall(r"^\| (\d+(?:, \d+)*) \|", page, flags=re.MULTILINE))
    codes = {errors.EXIT_OK, errors.EXIT_DOCTOR_ERROR, errors.EXIT_USAGE, errors.EXIT_TRAINING_FAILED}
    assert {str(c) for c in codes} | {"130, 143"} == table
