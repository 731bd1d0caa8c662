"""Presets: params overrides kept in ``presets/*.yaml``, merged into ``params.yaml``.

A preset holds the keys it sets, at their places in ``params.yaml`` (``train: {lr: 3.0e-5}``);
everything else stays as it is. The merge is done on the YAML text's round-trip form
(ruamel.yaml), so the comments and layout of ``params.yaml`` survive, and the merged result is
validated exactly as the stages will read it before anything is written.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError as RuamelYAMLError

from fovea.errors import FoveaUserError
from fovea.io import write_text_atomic
from fovea.params import Params, ParamsError, parse_params


class PresetError(FoveaUserError, ValueError):
    """A preset is unreadable, or merging it would leave ``params.yaml`` invalid."""


@dataclass(frozen=True)
class Change:
    """One key the preset sets: its dotted name and its value before (None: absent) and after."""

    key: str
    before: Any
    after: Any


@dataclass(frozen=True)
class MergedParams:
    text: str  # the new params.yaml
    params: Params  # what the stages will read from it
    changes: list[Change]  # keys whose value the preset changes


def _round_trip_yaml() -> YAML:
    loader = YAML()  # round-trip: keeps comments, key order, flow/block style and quoting
    loader.preserve_quotes = True
    loader.width = 4096  # never re-wrap long lines
    loader.indent(mapping=2, sequence=4, offset=2)
    return loader


def _load_mapping(text: str, source: str) -> MutableMapping[str, Any]:
    try:
        data = _round_trip_yaml().load(text)
    except RuamelYAMLError as error:
        raise PresetError(f"{source} is not valid YAML: {error}") from None
    if data is None:
        data = _round_trip_yaml().load("{}")
    if not isinstance(data, MutableMapping):
        raise PresetError(f"{source} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _plain(value: Any) -> Any:
    """A round-trip YAML node (ruamel's commented and formatted subclasses) as plain Python."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    for kind in (bool, int, float, str):  # bool before int: it is one
        if isinstance(value, kind):
            return kind(value)
    return value


def merge_overrides(target: MutableMapping[str, Any], overrides: Mapping[str, Any], prefix: str = "") -> list[Change]:
    """Merge ``overrides`` into ``target`` in place, mapping by mapping at every depth.

    A mapping merges into a mapping; any other value (scalar, list) replaces what was there.
    Returns the keys whose value changed.
    """
    changes: list[Change] = []
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        current = target.get(key)
        if isinstance(value, Mapping) and isinstance(current, MutableMapping):
            changes += merge_overrides(current, value, prefix=f"{name}.")
            continue
        if key not in target or _plain(current) != _plain(value):
            changes.append(Change(name, _plain(current), _plain(value)))
        target[key] = value
    return changes


def merge_preset(params_text: str, preset_text: str, preset_name: str = "preset") -> MergedParams:
    """``params_text`` with the overrides of ``preset_text`` merged in, validated.

    Raises:
        PresetError: either text is not a YAML mapping, or the merged params are invalid (the
            message names every bad key, e.g. one the preset misspells).
    """
    params = _load_mapping(params_text, "params.yaml")
    overrides = _load_mapping(preset_text, preset_name)
    changes = merge_overrides(params, overrides)
    buffer = io.StringIO()
    _round_trip_yaml().dump(params, buffer)
    text = buffer.getvalue()
    try:
        # Validate what the stages will read: this very text, through the same YAML loader.
        validated = parse_params(yaml.safe_load(text))
    except (ParamsError, yaml.YAMLError) as error:
        raise PresetError(f"params.yaml with {preset_name} applied is not valid: {error}") from None
    return MergedParams(text, validated, changes)


def apply_preset(params_path: Path, preset_path: Path, write: bool = True) -> MergedParams:
    """Merge the preset at ``preset_path`` into ``params_path`` and, if ``write``, replace the
    file atomically (it is untouched when the preset or the result is invalid)."""
    params_path, preset_path = Path(params_path), Path(preset_path)
    for path in (params_path, preset_path):
        if not path.is_file():
            raise PresetError(f"file not found: {path}")
    merged = merge_preset(params_path.read_text(), preset_path.read_text(), str(preset_path))
    if write:
        write_text_atomic(params_path, merged.text)
    return merged
