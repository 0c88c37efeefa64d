"""The shape of the code, checked: keyword arguments for long calls, layers that point down, one place for the training
parts and for every LR default, no formatter escapes."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src" / "lmtrain"
MAX_POSITIONAL = 5
"""More arguments than this are passed by keyword (`*` in the signature, `kw_only` dataclasses)."""
FIXED_SIGNATURES = {"src/lmtrain/train/relay.py show"}
"""Functions whose signature another API dictates (`warnings.showwarning` is called positionally)."""


def modules(folder: Path = SRC) -> Iterator[Path]:
    yield from sorted(folder.rglob("*.py"))


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def name(path: Path) -> str:
    return str(path.relative_to(REPO))


def imported(path: Path) -> set[str]:
    """Every lmtrain module `path` imports, at the top or inside functions (relative imports resolved)."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m.startswith("lmtrain")}


def test_no_formatter_escapes() -> None:
    offenders = [name(p) for p in [*modules(), *modules(REPO / "tests")] if "fmt: " + "skip" in p.read_text()]
    assert offenders == []


def test_no_call_passes_more_than_five_positional_arguments() -> None:
    offenders = [
        f"{name(p)}:{node.lineno}"
        for p in modules()
        for node in ast.walk(tree(p))
        if isinstance(node, ast.Call) and len(node.args) > MAX_POSITIONAL
    ]
    assert offenders == []


def test_no_function_takes_more_than_five_positional_parameters() -> None:
    offenders = []
    for p in modules():
        for node in ast.walk(tree(p)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                positional = [a.arg for a in node.args.posonlyargs + node.args.args]
                if positional[:1] in (["self"], ["cls"]):
                    positional = positional[1:]
                if len(positional) > MAX_POSITIONAL and f"{name(p)} {node.name}" not in FIXED_SIGNATURES:
                    offenders.append(f"{name(p)}:{node.lineno} {node.name}")
    assert offenders == []


def test_the_training_layer_never_imports_the_doctor() -> None:
    offenders = {
        name(p): sorted(m for m in imported(p) if m.startswith("lmtrain.doctor")) for p in modules(SRC / "train")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_cli_modules_import_no_other_cli_module_but_common() -> None:
    """`cli/__init__.py` registers the subcommands; `cli/legacy.py` (the familiar entry points) runs `lmtrain` itself
    and no cli module imports it, so neither makes a cycle."""
    offenders = {}
    for p in modules(SRC / "cli"):
        if p.name == "legacy.py":
            assert imported(p) & {m for m in imported(p) if m.startswith("lmtrain.cli")} <= {
                "lmtrain.cli",
                "lmtrain.cli.main",
            }
            continue
        assert "lmtrain.cli.legacy" not in imported(p)
        if p.name == "__init__.py":
            continue
        others = {m for m in imported(p) if m.startswith("lmtrain.cli") and not m.startswith("lmtrain.cli.common")}
        if others:
            offenders[name(p)] = sorted(others)
    assert offenders == {}


@pytest.mark.parametrize("layer", ["model", "data"])
def test_lower_layers_import_no_higher_one(layer: str) -> None:
    higher = ("lmtrain.train", "lmtrain.cli", "lmtrain.doctor", "lmtrain.bench", "lmtrain.report", "lmtrain.eval")
    offenders = {name(p): sorted(m for m in imported(p) if m.startswith(higher)) for p in modules(SRC / layer)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_training_parts_are_assembled_in_one_place() -> None:
    """Model + optimizer + scaler + schedule + step: only `train/parts.py` builds a TrainStep, and the trainer, the
    doctor's trial step, the LR range test and the benchmark's timing all call its `build_training`."""
    builders = [
        f"{name(p)}:{node.lineno}"
        for p in modules()
        for node in ast.walk(tree(p))
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "TrainStep"
    ]
    assert builders == ["src/lmtrain/train/parts.py:" + builders[0].split(":")[1]] and len(builders) == 1
    for caller in ("train/trainer.py", "doctor/examine.py", "doctor/lr_find.py", "bench/timing.py"):
        assert "lmtrain.train.parts.build_training" in imported(SRC / caller), caller


ARCHITECTURE_DETAILS = ("transformer", "wte", "wpe", "c_attn", "c_fc", "ln_f", "embed_tokens", ".h.", "layers.")
"""Module and parameter names of one architecture: only `model/` may know them."""


def test_only_the_model_package_knows_an_architectures_insides() -> None:
    """Outside `model/`, nothing matches parameter names, walks an architecture's modules or constructs a model class:
    the rest of lmtrain goes through `model/registry.py` and the `CausalLM` protocol."""
    found = []
    for path in modules():
        if path.is_relative_to(SRC / "model"):
            continue
        for node in ast.walk(tree(path)):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
            if isinstance(node, ast.Attribute):
                text = node.attr
            if (
                text is not None
                and any(d in text for d in ARCHITECTURE_DETAILS if not d.isidentifier())
                or (text in ARCHITECTURE_DETAILS)
            ):
                found.append(f"{name(path)}:{node.lineno} {text}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("GPT", "Modern"):
                found.append(f"{name(path)}:{node.lineno} {node.func.id}(")
    assert found == []


def test_every_lr_default_is_in_defaults_py() -> None:
    """Constants named *_LR, *_LR_FACTOR or *_LR_DIVISOR are assigned in `defaults.py` alone."""
    found = []
    for p in modules():
        for node in ast.walk(tree(p)):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper() and "_LR" in target.id + "_":
                    found.append((name(p), target.id))
    assert {module for module, _ in found} == {"src/lmtrain/defaults.py"}
    assert {"PRESET_LR", "MUON_LR_FACTOR", "FALLBACK_LR", "BENCH_LR", "NANOGPT_LR"} <= {n for _, n in found}


def test_no_module_is_longer_than_about_400_lines() -> None:
    long = {name(p): n for p in modules() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm): each is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles_between_modules() -> None:
    """Imports at the top or inside functions form no cycle: every module's dependencies point one way (a package's
    `__init__` importing its own modules aside)."""
    names = {_module_name(p): p for p in modules()}
    graph = {
        name: {m for m in imported(path) if m in names and m != name and not name.startswith(m + ".")}
        for name, path in names.items()
    }
    assert _cycles(graph) == []


def _package(module: str) -> str:
    """The layer a module belongs to: `lmtrain.X` for a module of package X (or the top-level module X)."""
    return ".".join(module.split(".")[:2])


def test_no_import_cycles_between_packages() -> None:
    """No package imports, through any of its modules, a package that imports it back (a cycle of modules that a
    module-level check misses: `tasks/` importing `train/` while `train/` imports `tasks/`)."""
    names = {_module_name(p): p for p in modules()}
    graph: dict[str, set[str]] = {_package(name): set() for name in names}
    for name, path in names.items():
        graph[_package(name)] |= {_package(m) for m in imported(path) if m in names and _package(m) != _package(name)}
    graph.pop("lmtrain", None)
    for targets in graph.values():
        targets.discard("lmtrain")  # the top-level package: its version, nothing that imports back
    assert _cycles(graph) == []


def test_each_constant_is_defined_once() -> None:
    """A module-level constant (an UPPER_CASE name bound to a literal) is assigned in one module; the others import it."""
    seen: dict[tuple[str, str], list[str]] = {}
    for p in modules():
        for node in tree(p).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target, value = node.targets[0].id, node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                target, value = node.target.id, node.value
            else:
                continue
            if target.isupper() and isinstance(value, (ast.Constant, ast.Tuple)):
                seen.setdefault((target, ast.dump(value)), []).append(name(p))
    twice = {k[0]: v for k, v in seen.items() if len(v) > 1}
    assert twice == {}
