"""Registries of named parts, filled by decorators in the modules that define them.

Adding a backbone is one file with one decorator:

    @registry.BACKBONES.register("my_net")
    class MyNet(Backbone): ...

A registered class or function is built from keyword parameters; its signature
defaults are the parameters a config starts from, and unknown keys are refused
with the closest valid one.

`load_all()` fills every registry: Garden's own parts, then every installed package's
`garden.plugins` entry point (Garden's experiments and exporters come in this way too, so
nothing in `garden/` imports them), then the modules a user names with `garden --import` or a
config's `imports` list.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from garden.errors import GardenError, did_you_mean

_NOT_PARAMS = {"self", "name", "dtype", "kwargs", "args"}


class Registry:
    """A name -> class or function table for one kind of part."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._families: dict[str, Callable[[str], Any]] = {}
        self._members: dict[str, Any] = {}  # family members resolved so far

    def register(self, name: str) -> Callable[[Any], Any]:
        def decorator(obj):
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def register_family(self, prefix: str, resolve: Callable[[str], Any]) -> None:
        """Names `PREFIX.MEMBER` resolve to `resolve(MEMBER)` (a class or function, built on first use;
        `resolve` raises GardenError for a member that does not exist)."""
        self._families[prefix] = resolve

    def names(self) -> list[str]:
        """The registered names (a family's members are not listed: see `families`)."""
        return sorted(self._entries)

    def families(self) -> list[str]:
        return [f"{prefix}.CLASS" for prefix in sorted(self._families)]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Any:
        if name in self._entries:
            return self._entries[name]
        prefix, dot, member = name.partition(".")
        if dot and prefix in self._families:
            if name not in self._members:
                self._members[name] = self._families[prefix](member)
            return self._members[name]
        raise GardenError(f"unknown {self.kind} '{name}'{did_you_mean(name, self.names() + self.families())}")

    def defaults(self, name: str) -> dict[str, Any]:
        """The keyword parameters of `name` with their default values."""
        obj = self.get(name)
        signature = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
        return {
            key: (list(p.default) if isinstance(p.default, tuple) else p.default)
            for key, p in signature.parameters.items()
            if key not in _NOT_PARAMS and p.default is not inspect.Parameter.empty
        }

    def build(self, entry: str, params: dict | None = None, **extra) -> Any:
        """Calls `entry` with `params` after checking every key exists."""
        params = dict(params or {})
        valid = self.defaults(entry)
        for key in params:
            if key not in valid:
                raise GardenError(f"{self.kind} '{entry}' has no parameter '{key}'{did_you_mean(key, valid)}")
        return self.get(entry)(**params, **extra)


BACKBONES = Registry("backbone")
HEADS = Registry("head")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("learning-rate schedule")
DATASETS = Registry("dataset")
TASKS = Registry("task")
SERVINGS = Registry("serving companion")  # task type -> what its exports serve and are judged by
EXPORTERS = Registry("export format")
REFERENCES = Registry("export reference")
EXPERIMENTS = Registry("experiment")

PLUGIN_GROUP = "garden.plugins"
BUILT_IN = ("garden.data", "garden.losses", "garden.models.backbones", "garden.models.heads", "garden.tasks")


def import_modules(names: Iterable[str]) -> None:
    """Imports user modules that register parts (`garden --import`, a config's `imports`); the
    current folder is searched too, as `python -m` does."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for name in names:
        _load(lambda name=name: importlib.import_module(name), f"module '{name}'")


def load_all(modules: Iterable[str] = ()) -> None:
    """Fills every registry: Garden's own parts, each installed `garden.plugins` entry point, then `modules`."""
    for name in BUILT_IN:
        importlib.import_module(name)
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        _load(entry.load, f"plugin '{entry.name} = {entry.value}' (entry point group {PLUGIN_GROUP})")
    import_modules(modules)


def _load(load, what):
    """Runs `load`, turning an ImportError into one line (other errors of a module keep their traceback)."""
    try:
        load()
    except ImportError as error:
        raise GardenError(
            f"cannot import {what}: {error}; install it, or run garden from the folder that holds it"
        ) from error
