"""YAML text and files as Garden reads and writes them: a config file, a run folder's config.yaml and
its revisions. A file that is not valid YAML, or not a mapping, is one line naming it."""

import os

import yaml

from garden.errors import GardenError, shown


def parse_yaml(text: str, where: str):
    """`text` parsed as YAML, or one line naming `where` and the parser's complaint."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise GardenError(f"{where} is not valid YAML{at}: {shown(problem)}") from error
    except ValueError as error:  # a tag that does not fit its value: !!int x
        raise GardenError(f"{where} is not valid YAML: {shown(error)}") from error
    except RecursionError as error:
        raise GardenError(f"{where} is nested too deeply") from error


def read_yaml(path: str) -> dict:
    """The mapping a config file holds."""
    if not os.path.isfile(path):
        raise GardenError(
            f"config file not found: {path}; pass a YAML file written by 'garden show' or a run folder's config.yaml"
        )
    with open(path) as f:
        content = parse_yaml(f.read(), f"config file {path}") or {}
    if not isinstance(content, dict):
        raise GardenError(f"config file {path} must hold a YAML mapping, not {type(content).__name__}")
    return content


def to_yaml(config) -> str:
    """A config (anything with `as_dict`) as YAML, its keys in their order."""
    return yaml.safe_dump(config.as_dict(), sort_keys=False, default_flow_style=None)


def save_yaml(config, path: str) -> None:
    with open(path, "w") as f:
        f.write(to_yaml(config))
