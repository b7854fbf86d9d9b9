"""Registries of named parts, filled by decorators in the modules that define them.

Adding a backbone is one file with one decorator:

    @registry.BACKBONES.register("my_net")
    class MyNet(Backbone): ...

A registered class or function is built from keyword parameters; its signature
defaults are the parameters a config starts from, and unknown keys are refused
with the closest valid one.
"""

import inspect

from garden.errors import GardenError, did_you_mean

_NOT_PARAMS = {"self", "name", "dtype", "kwargs", "args"}


class Registry:
    """A name -> class or function table for one kind of part."""

    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def register(self, name):
        def decorator(obj):
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def names(self):
        return sorted(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def get(self, name):
        if name not in self._entries:
            raise GardenError(f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}")
        return self._entries[name]

    def defaults(self, name):
        """The keyword parameters of `name` with their default values."""
        obj = self.get(name)
        signature = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
        return {
            key: (list(p.default) if isinstance(p.default, tuple) else p.default)
            for key, p in signature.parameters.items()
            if key not in _NOT_PARAMS and p.default is not inspect.Parameter.empty
        }

    def build(self, entry, params=None, **extra):
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
EXPORTERS = Registry("exporter")
EXPERIMENTS = Registry("experiment")
