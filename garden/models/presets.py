"""The KerasHub presets each Garden backbone family can start from (`garden models`), read from
KerasHub's own preset registry, offline. KerasHub's registry (0.32) holds no license field: a
preset's terms are on its Kaggle page, which the table names."""

import keras_hub

from garden.models.backbones.image_families import KERAS_HUB_CLASSES
from garden.registry import BACKBONES


def family_presets() -> dict[str, list[dict]]:
    """Garden backbone family -> its KerasHub presets: name, parameters, description and Kaggle page."""
    found = {}
    for family in BACKBONES.names():
        hub = getattr(BACKBONES.get(family), "hub_backbone", None)
        hub = hub or getattr(keras_hub.models, KERAS_HUB_CLASSES.get(family, ""), None)
        if hub is None:
            continue
        found[family] = [
            {
                "preset": name,
                "parameters": preset["metadata"]["params"],
                "description": preset["metadata"]["description"],
                "page": "https://www.kaggle.com/models/" + "/".join(preset["kaggle_handle"].split("/")[2:4]),
            }
            for name, preset in sorted(hub.presets.items())
        ]
    return found


def parameter_count(count: int) -> str:
    """4386178 -> '4.4M'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)
