"""Registries: things a model file may name (network types, autoencoders, methods, processes), by name.

A model file names registered entries and nothing else: no import path in a file is ever imported.
Code registers entries with a decorator or :meth:`Registry.register`; an installed plugin package adds
its own through an entry-point group (``[project.entry-points."binsr.networks"]``), which the registry
loads the first time a name is not found. Installing a plugin is the user's explicit choice; naming
one inside a file is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from binsr.errors import BinsrError

T = TypeVar("T")


@dataclass(frozen=True)
class ComponentType:
    """A registered kind of component: its name, its config dataclass and what is built from a config."""

    name: str
    config: type
    cls: Callable[[Any], Any]


class Registry(Generic[T]):
    """Entries of one kind (``what``, e.g. "network type") by name; ``group``: the entry-point group."""

    def __init__(self, what: str, group: str | None = None) -> None:
        self.what, self.group = what, group
        self._entries: dict[str, T] = {}
        self._plugins_loaded = group is None

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` as ``name``; a name is registered once."""
        if name in self._entries and self._entries[name] is not entry:
            raise BinsrError(f"{self.what} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str, wrap: Callable[[object], T]) -> Callable[[object], object]:
        """``@decorator(name, wrap)``: registers ``wrap(obj)`` and returns ``obj`` unchanged."""
        def register(obj: object) -> object:
            self.register(name, wrap(obj))
            return obj
        return register

    def _load_plugins(self) -> None:
        """Entry points of ``group``: each loads a module of an installed package, which registers itself."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in entry_points(group=self.group):
            point.load()

    def get(self, name: object) -> T:
        """The entry called ``name``; anything else is one error naming it and the known names."""
        if isinstance(name, str) and name not in self._entries:
            self._load_plugins()
        if not isinstance(name, str) or name not in self._entries:
            raise BinsrError(f"unknown {self.what} {name!r} (known: {', '.join(self.names()) or 'none'})")
        return self._entries[name]

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name not in self._entries:
            self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def values(self) -> list[T]:
        return [self._entries[name] for name in self.names()]

    def type_of(self, config: object) -> T:
        """The entry whose ``config`` class ``config`` is an instance of (entries are ComponentTypes)."""
        entry = next((e for e in self.values() if isinstance(config, e.config)), None)
        if entry is None:
            raise BinsrError(f"no registered {self.what} has config {type(config).__name__}")
        return entry
