"""Model specs and training recipes as TOML files: read with stdlib tomllib, checked key by key, written back."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path

from .errors import DigitlabError, UsageError
from .model import ModelSpec, get_preset
from .train import Recipe, get_recipe


def parse_spec(values: dict, source: str = "spec") -> ModelSpec:
    """A ModelSpec from a TOML table; unknown keys, wrong types and impossible shapes name `source`."""
    return _build(ModelSpec, values, source)


def parse_recipe(values: dict, source: str = "recipe") -> Recipe:
    """A Recipe from a TOML table, checked like parse_spec."""
    return _build(Recipe, values, source)


def read_toml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such TOML file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not valid TOML ({error}); fix the syntax at that line") from None


def load_spec(name_or_path: str | os.PathLike) -> ModelSpec:
    """A preset name, or a .toml file holding a spec (top-level keys, or a [spec] table)."""
    if not str(name_or_path).endswith(".toml"):
        return get_preset(str(name_or_path))
    values = read_toml(name_or_path)
    return parse_spec(values.get("spec", values), str(name_or_path))


def load_recipe(name_or_path: str | os.PathLike) -> Recipe:
    """A recipe name, or a .toml file holding a recipe (top-level keys, or a [recipe] table)."""
    if not str(name_or_path).endswith(".toml"):
        return get_recipe(str(name_or_path))
    values = read_toml(name_or_path)
    return parse_recipe(values.get("recipe", values), str(name_or_path))


def to_toml(table: str, value: ModelSpec | Recipe) -> str:
    """One TOML table for a spec or recipe, every field written so the file documents the defaults too."""
    lines = [f"[{table}]"]
    for key, item in dataclasses.asdict(value).items():
        if item is None:
            lines.append(f"# {key} is unset (all)")
        else:
            lines.append(f"{key} = {_toml_value(item)}")
    return "\n".join(lines) + "\n"


def _toml_value(item) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (list, tuple)):
        return "[" + ", ".join(_toml_value(element) for element in item) + "]"
    if isinstance(item, str):
        return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(item)


def _build(cls, values: dict, source: str):
    if not isinstance(values, dict):
        raise UsageError(f"{source}: expected a table of {cls.__name__} settings, got {type(values).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UsageError(f"{source}: unknown {cls.__name__} keys {unknown}; known keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    checked = {key: _check_type(source, key, value, hints[key]) for key, value in values.items()}
    try:
        return cls(**checked)
    except DigitlabError as error:
        raise UsageError(f"{source}: {error}") from None


def _check_type(source: str, key: str, value, hint):
    """Convert a TOML value to the field's type, or say which key is wrong and what it should be."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    allowed = typing.get_args(hint) if union else (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        origin = typing.get_origin(kind)
        if origin is tuple and isinstance(value, (list, tuple)) and all(_is_int(element) for element in value):
            return tuple(value)
        # TOML writes 1e-3 and 0.5 as floats but 3 as an int: accept an int where a float is meant.
        if kind is float and (isinstance(value, float) or _is_int(value)):
            return float(value)
        if kind in (int, str, bool) and type(value) is kind:
            return value
    names = ["a list of integers" if typing.get_origin(kind) is tuple else kind.__name__ for kind in allowed]
    wanted = " or ".join(names)
    raise UsageError(f"{source}: {key} must be {wanted}, got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
