"""Loading, overriding, validating and comparing experiment configs (ml_collections).

A config file defines `get_config(arg)`; `path.py:arg` picks a variant. Overrides are
`dotted.field=value` strings, parsed to the type of the field they replace; a field
that does not exist is an error that names it (configs are locked).
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import sys
from typing import Any, Iterable

import ml_collections

from aigc_jax.files import read_json


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field."""


def _make_importable(path: str) -> None:
    """A config in a package folder (configs/ has __init__.py) may import its siblings
    (`from configs import common`) wherever the command runs: the folder's parent goes on sys.path."""
    folder = os.path.dirname(os.path.abspath(path))
    parent = os.path.dirname(folder)
    if os.path.exists(os.path.join(folder, "__init__.py")) and parent not in sys.path:
        sys.path.insert(0, parent)


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Loads `path/to/config.py[:arg]` and returns its locked get_config(arg)."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    _make_importable(path)
    module_spec = importlib.util.spec_from_file_location(f"aigc_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} defines no get_config(arg)")
    config = module.get_config(arg or None)
    config.lock()
    return config


def _field_names(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    names = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        names.extend(_field_names(value, name + ".") if isinstance(value, ml_collections.ConfigDict) else [name])
    return names


def _unknown_field(config, field: str) -> ConfigError:
    close = difflib.get_close_matches(field, _field_names(config), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config field {field!r}{hint}")


def get_field(config: ml_collections.ConfigDict, field: str) -> Any:
    node = config
    for part in field.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise _unknown_field(config, field)
        node = node[part]
    return node


def parse_value(field: str, text: str, current: Any) -> Any:
    """Parses `text` to the type of the field's current value."""
    def fail(expected):
        return ConfigError(f"config field {field!r} expects {expected}, got {text!r}")
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise fail("a boolean (true/false)")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise fail("an integer") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise fail("a number") from None
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if current is not None and not isinstance(value, type(current)):
        raise fail(type(current).__name__)
    return value


def set_field(config: ml_collections.ConfigDict, field: str, value: Any) -> None:
    parent_name, _, leaf = field.rpartition(".")
    parent = get_field(config, parent_name) if parent_name else config
    if not isinstance(parent, ml_collections.ConfigDict) or leaf not in parent:
        raise _unknown_field(config, field)
    with parent.unlocked():
        parent[leaf] = value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> ml_collections.ConfigDict:
    """Applies `field=value` strings in order; the config stays locked."""
    for item in overrides:
        field, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form field=value")
        current = get_field(config, field)
        if isinstance(current, ml_collections.ConfigDict):
            raise ConfigError(f"config field {field!r} is a section; set one of its fields instead")
        set_field(config, field, parse_value(field, text, current))
    return config


def load_config(spec: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
    return apply_overrides(load_config_file(spec), overrides)


def to_dict(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json())


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_fields(saved: dict, current: dict, prefixes: Iterable[str]) -> list[str]:
    """Fields under any of `prefixes` whose values differ between two config dicts."""
    saved_flat, current_flat = flatten(saved), flatten(current)
    prefixes = tuple(prefixes)
    names = sorted(n for n in set(saved_flat) | set(current_flat)
                   if any(n == p or n.startswith(p + ".") for p in prefixes))
    return [n for n in names if saved_flat.get(n, "<absent>") != current_flat.get(n, "<absent>")]


SAVED_CONFIG_FILE = "config.json"


def load_saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config a training run saved in its workdir, locked."""
    path = os.path.join(workdir, SAVED_CONFIG_FILE)
    if not os.path.isdir(workdir):
        raise ConfigError(f"workdir {workdir!r} does not exist")
    if not os.path.exists(path):
        raise ConfigError(f"workdir {workdir!r} has no {SAVED_CONFIG_FILE}: is it a training workdir?")
    config = ml_collections.ConfigDict(read_saved_config(path))
    config.lock()
    return config


def read_saved_config(path: str) -> dict:
    """The config dict a run saved at `path`; a damaged file is a ConfigError naming it."""
    try:
        return read_json(path, "saved config")
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the saved config {path!r}: {e}") from None
