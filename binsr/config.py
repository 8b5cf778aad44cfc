"""Configs are dataclasses; this builds them from YAML-like dicts, strictly.

An unknown key is an error that names it, where it sits and the closest valid key — a typo in a
training recipe must not silently fall back to a default. ``--set a.b=value`` overrides parse
``value`` as YAML (numbers, booleans, lists).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import yaml

from binsr.errors import BinsrError
from binsr.utils.registry import ComponentType, Registry

T = TypeVar("T")


class ConfigError(BinsrError):
    """A config file or override is wrong: unknown key, wrong type, unreadable file."""


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "", complete: bool = False) -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclass fields are built recursively.
    ``complete``: every field must be given (a model file states every value, so no default can change it)."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config '{where.rstrip('.') or cls.__name__}' must be a mapping, got {type(data).__name__}")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (valid: {', '.join(names)})"
            raise ConfigError(f"unknown config key '{where}{key}'{hint}")
    if complete:
        missing = [name for name in names if name not in data]
        if missing:
            raise ConfigError(f"missing config key '{where}{missing[0]}'")
    values = {}
    for name in names:
        if name in data:
            values[name] = _convert(hints[name], data[name], f"{where}{name}", complete)
    try:
        return cls(**values)
    except ValueError as err:  # a dataclass's own validation (__post_init__)
        raise ConfigError(f"config section '{where.rstrip('.') or cls.__name__}': {err}") from None


def _convert(hint: Any, value: Any, where: str, complete: bool = False) -> Any:
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{where}' must be a mapping, got {value!r}")
        return from_dict(hint, value, f"{where}.", complete)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{where}' must be a list, got {value!r}")
        item = (typing.get_args(hint) or (Any,))[0]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return from_dict(option, value, f"{where}.", complete)
            if typing.get_origin(option) is dict and isinstance(value, dict):
                return value
        scalars = [o for o in options if o in (int, float, str, bool)]
        if scalars and not any(isinstance(value, o) and not (o in (int, float) and isinstance(value, bool))
                               for o in scalars):
            if float in scalars and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            names = " or ".join(o.__name__ for o in scalars) + (" or null" if type(None) in options else "")
            raise ConfigError(f"config key '{where}' must be {names}, got {value!r}")
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"config key '{where}' must be a number, got {value!r}")
    if hint in (int, float) and isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            value = hint(value)
        except ValueError:
            raise ConfigError(f"config key '{where}' must be {hint.__name__}, got {value!r}") from None
    if hint is float and isinstance(value, int):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"config key '{where}' must be {hint.__name__}, got {value!r}")
    return value


def exact_keys(data: Any, where: str, required: tuple[str, ...]) -> dict[str, Any]:
    """``data`` as a dict with exactly the keys ``required`` (one error for the first missing or extra)."""
    if not isinstance(data, dict):
        raise ConfigError(f"'{where}' must be a mapping, got {type(data).__name__}")
    for key in required:
        if key not in data:
            raise ConfigError(f"'{where}' misses key '{key}'")
    for key in data:
        if key not in required:
            raise ConfigError(f"'{where}' has unknown key '{key}' (keys: {', '.join(required)})")
    return data


@dataclass(frozen=True)
class ComponentSpec:
    """``{"type": a registered name, "config": {...every field...}}``: one component of a model file.
    Subclasses name their registry (whose entries are :class:`~binsr.utils.registry.ComponentType`)."""

    type: str
    config: Any
    registry: ClassVar[Registry[ComponentType]]
    where: ClassVar[str]

    @classmethod
    def parse(cls, data: Any, where: str | None = None) -> Any:
        """From a file: the type must be registered and every config field given."""
        where = where or cls.where
        data = exact_keys(data, where, ("type", "config"))
        kind = cls.registry.get(data["type"])
        return cls(kind.name, from_dict(kind.config, data["config"], f"{where}.config.", complete=True))

    @classmethod
    def named(cls, name: str, config: dict[str, Any] | None = None) -> Any:
        """From a recipe: a registered name with some config values (defaults filled in)."""
        kind = cls.registry.get(name)
        return cls(kind.name, from_dict(kind.config, config or {}, f"{cls.where}.config."))

    @classmethod
    def of(cls, config: Any) -> Any:
        """The spec of ``config``, an instance of a registered config class."""
        return cls(cls.registry.type_of(config).name, config)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "config": to_dict(self.config)}

    def build(self) -> Any:
        return self.registry.get(self.type).cls(self.config)


def check_ranges(config: Any, **ranges: tuple[float, float]) -> None:
    """Raise ValueError unless each named field (or every item of a tuple field) lies in [low, high]."""
    for name, (low, high) in ranges.items():
        value = getattr(config, name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise ValueError(f"{name} must be a number, got {item!r}")
            if isinstance(low, int) and isinstance(high, int) and not isinstance(item, int):
                raise ValueError(f"{name} must be an integer, got {item!r}")
            if not low <= item <= high:
                raise ValueError(f"{name} = {item!r} is outside [{low}, {high}]")


def to_dict(config: Any) -> dict[str, Any]:
    """Dataclass → plain dict (tuples as lists), ready for YAML/JSON."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(config))


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values")
    return data


def parse_assignment(text: str, what: str = "override") -> tuple[str, Any]:
    """``key=value`` typed by a user (``--set``, ``--option``) → (key, value): the value read as YAML (numbers,
    true/false, null, lists), and text that YAML 1.1 leaves as text but is a number (``1e-3``) as a float."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"{what} must be key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return key, raw
    if isinstance(value, str):
        try:
            return key, float(value)
        except ValueError:
            pass
    return key, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a nested dict (values as :func:`parse_assignment` reads them)."""
    data = dict(data)
    for item in overrides:
        key, value = parse_assignment(item)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = value
    return data
