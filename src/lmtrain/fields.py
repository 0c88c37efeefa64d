"""Typed dataclass helpers: build configs from mappings, convert strings to field types, read field docs."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from lmtrain.errors import ConfigError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


KEY = "key"
"""Field metadata naming a field's flat key where it differs from the field's name (`every` -> eval_every)."""
DOC = "doc"
"""Field metadata holding the one-line help of a field (kept in the metadata, where `python -OO` and a wheel without
source files cannot lose it, as they lose docstrings)."""


def option(default: Any = dataclasses.MISSING, doc: str = "", *, key: str | None = None) -> Any:
    """A config field with its help text `doc` and, inside a section, its flat key (flag and TOML key) where that
    differs from the field's name."""
    if not doc:
        raise TypeError("every config field needs its help text")
    metadata = {DOC: doc} | ({KEY: key} if key else {})
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Leaf:
    """A field that holds a value (not a section): its flat key, its path from the top config, type, doc, default."""

    key: str
    path: tuple[str, ...]
    type: Any
    doc: str
    default: Any
    section: str
    """The section it sits in ("" for the top level)."""


def _flat_key(f: dataclasses.Field) -> str:
    """The flat key of field `f`: its `key()` metadata, else its name."""
    return f.metadata.get(KEY, f.name)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


@functools.cache
def leaves(cls: type) -> dict[str, Leaf]:
    """Every value field of dataclass `cls`, sections flattened, keyed by its flat key (unique across sections)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Leaf] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_section(tp):
            found = {
                k: dataclasses.replace(v, path=(f.name, *v.path), section=v.section or f.name)
                for k, v in leaves(tp).items()
            }
        else:
            flat = _flat_key(f)
            doc = f.metadata.get(DOC, "")
            found = {flat: Leaf(key=flat, path=(f.name,), type=tp, doc=doc, default=_default(f), section="")}
        clash = set(found) & set(out)
        if clash:
            raise TypeError(f"{cls.__name__}: the flat key {sorted(clash)[0]!r} is used twice")
        out |= found
    return out


def field_types(cls: type) -> dict[str, Any]:
    """The type of every flat key of dataclass `cls` (sections flattened)."""
    return {k: leaf.type for k, leaf in leaves(cls).items()}


def flatten(obj: Any) -> dict[str, Any]:
    """A (nested) config dataclass as {flat key: value}."""
    out = {}
    for k, leaf in leaves(type(obj)).items():
        value = obj
        for name in leaf.path:
            value = getattr(value, name)
        out[k] = value
    return out


def _build(cls: type[T], by_path: Mapping[tuple[str, ...], Any]) -> T:
    """`cls` from values keyed by their path; sections are built whether or not a value of theirs was given."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if _is_section(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], {p[1:]: v for p, v in by_path.items() if p[0] == f.name})
        elif (f.name,) in by_path:
            kwargs[f.name] = by_path[(f.name,)]
    return cls(**kwargs)


def from_flat(cls: type[T], data: Mapping[str, Any], what: str) -> T:
    """Build (nested) dataclass `cls` from flat keys (flags, TOML), converting each value to its field's type.

    Unknown keys are a ConfigError that lists the known ones; `what` names the source in messages.
    """
    known = leaves(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {what}; known keys: {', '.join(known)}")
    return _build(cls, {known[k].path: coerce(v, known[k].type, k) for k, v in data.items()})


def nested_to_flat(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The flat keys of a nested mapping laid out as `cls`'s fields (a config.json section)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name not in fields:
            raise ConfigError(f"unknown key {name!r} in {what}; known keys: {', '.join(fields)}")
        if _is_section(hints[name]):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{what}: {name!r} must be a table of settings, not {value!r}")
            out |= nested_to_flat(hints[name], value, f"{what}.{name}")
        else:
            out[_flat_key(fields[name])] = value
    return out


def _describe(tp: Any) -> str:
    """A short human name for a type annotation ('int', 'float or none', 'one of a|b')."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + "|".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert `value` (a string from the command line, or a JSON/TOML value) to type `tp`.

    Raises ConfigError naming the field when the value does not fit.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() == "none" and type(None) in args):
            if type(None) in args:
                return None
        real = [a for a in args if a is not type(None)]
        if len(real) == 1:
            return coerce(value, real[0], name)
        for arg in real:
            try:
                return coerce(value, arg, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name}={value!r} is not a valid {_describe(tp)}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {', '.join(map(str, choices))}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{name}={value!r} is not a boolean; use true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{name}={value!r} is not an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} is not a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}={value!r} is not a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}={value!r} is not a string")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{name}={value!r} is not a path")
    raise TypeError(f"unsupported field type {tp!r} for {name}")


def from_mapping(cls: type[T], data: Mapping[str, Any], what: str) -> T:
    """Build dataclass `cls` from its JSON form (nested by field names, as `to_jsonable` writes it), converting each
    value to its field's type. Unknown keys are a ConfigError that lists the known ones."""
    return from_flat(cls, nested_to_flat(cls, data, what), what)


def replace_fields(obj: T, overrides: Mapping[str, Any], what: str) -> T:
    """`obj` with flat keys replaced, converted to their types; unknown keys are a ConfigError."""
    return from_flat(type(obj), flatten(obj) | dict(overrides), what)


def to_jsonable(obj: Any) -> Any:
    """A dataclass (possibly nested) as plain JSON-compatible values; paths become strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    return obj
