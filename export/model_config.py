"""TF Serving's model config file (its `--model_config_file`): a ModelServerConfig in protobuf text
naming each model's base path, version policy and version labels, read with TF Serving's own
protos, so a deployment's file serves unchanged:

    model_config_list {
      config {
        name: "digits"
        base_path: "/models/digits"
        model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 2 } }
        version_labels { key: "stable" value: 1 }
      }
    }
"""

import dataclasses

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from garden.errors import GardenError

ALL_VERSIONS = 2**31  # what `model_version_policy { all {} }` keeps


@dataclasses.dataclass
class ModelConfig:
    paths: dict[str, str]  # name -> base path
    keep: dict[str, int]  # name -> how many of its newest versions are served
    labels: dict[str, dict[str, int]]  # name -> {label: version}


def read_model_config(path: str) -> ModelConfig:
    """The models of TF Serving's model config file at `path`; what Garden cannot serve as asked
    (a specific version list, another platform) is refused in one line."""
    try:
        with open(path) as file:
            text = file.read()
    except OSError as error:
        raise GardenError(f"cannot read --model-config-file {path} ({error.strerror})") from error
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise GardenError(f"{path} is not a TF Serving model config (ModelServerConfig text): {error}") from error
    if config.WhichOneof("config") != "model_config_list" or not config.model_config_list.config:
        raise GardenError(f"{path} names no model; list them under model_config_list {{ config {{ ... }} }}")
    found = ModelConfig({}, {}, {})
    for model in config.model_config_list.config:
        name = model.name
        if not name or not model.base_path:
            raise GardenError(f"{path}: each config needs a name and a base_path")
        if name in found.paths:
            raise GardenError(f"{path} names model '{name}' twice")
        if model.model_platform not in ("", "tensorflow"):
            raise GardenError(
                f"{path}: model '{name}' is on platform '{model.model_platform}'; Garden serves tensorflow"
            )
        policy = model.model_version_policy
        choice = policy.WhichOneof("policy_choice")
        if choice == "specific":
            raise GardenError(
                f"{path}: model '{name}' asks for specific versions; Garden serves the newest N "
                "(latest { num_versions: N }) or all of them (all {})"
            )
        found.paths[name] = model.base_path
        found.keep[name] = ALL_VERSIONS if choice == "all" else policy.latest.num_versions or 1
        if model.version_labels:
            found.labels[name] = dict(model.version_labels)
    return found
