"""Presets: the knobs (sampling settings, how the bridge plays, which model) as versioned JSON.

The same document is what the window keeps in QSettings as its last state, so there is one
format. Ports are not part of a preset: they belong to a machine, not to a sound.

Version 3 (written now):

    {"format": "bachbridge-preset", "version": 3, "name": "Warm",
     "model": "coconet-live",                        # a shipped model's name or an .onnx path
     "settings": {"temperature": 0.3, "steps": 2, "pmax": 1.0, "pmin": 0.05, "alpha": 0.6,
                  "candidates": 1, "parallel_penalty": 10.0, "key": "off",
                  "voice_ranges": [[60, 81], [52, 74], [46, 69], [36, 66]]},
     "live": {"mode": "note", "clock": "auto", "bpm": 100.0, "channels": [1, 2, 3], ...},
     "controls": {"temperature": 21, "mode": "program"}}

`settings` holds `bridge.settings.Settings` fields and `live` holds `bridge.live.LiveConfig`
fields, by their names and with their meanings (channels 0-based, as in LiveConfig), but for
the knobs' MIDI controllers (LiveConfig.knob_controls), which are `controls`: knob -> controller
number, or "program" (see bridge.live.learn). A missing field takes its default, so a preset
written before a field existed still loads.

Version 2 was version 3 without `controls`; it migrates with nothing bound.

Version 1 (the first window's format) was flat, with MIDI channels numbered 1-16 as a musician
reads them: {"version": 1, "name", "engine", "temperature", "steps", "pmax", "pmin", "alpha",
"key", "bpm", "clock", "echo", "channels": [2, 3, 4]}. `migrate` turns it into version 2.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path

from bridge.errors import BadInput
from bridge.live import LiveConfig
from bridge.settings import Settings

FORMAT = "bachbridge-preset"
VERSION = 3
SUFFIX = ".json"
# the live knobs a preset carries: the per-session seed is not a sound, so it stays out
SETTINGS_FIELDS = tuple(name for name in Settings.field_names() if name != "seed")
_V1_SETTINGS = ("temperature", "steps", "pmax", "pmin", "alpha", "key")
_V1_LIVE = ("bpm", "clock", "echo")
# LiveConfig's fields a preset keeps under "live"; its knob_controls are "controls"
LIVE_FIELDS = tuple(f.name for f in fields(LiveConfig) if f.name != "knob_controls")


@dataclass(frozen=True)
class Preset:
    name: str
    model: str
    config: LiveConfig
    settings: Settings

    def to_dict(self) -> dict:
        settings = {name: _plain(getattr(self.settings, name)) for name in SETTINGS_FIELDS}
        live = {name: _plain(getattr(self.config, name)) for name in LIVE_FIELDS}
        return {"format": FORMAT, "version": VERSION, "name": self.name, "model": self.model,
                "settings": settings, "live": live, "controls": dict(self.config.knob_controls)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _plain(value):
    """Tuples as JSON lists (nested)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def migrate(document: dict) -> dict:
    """Any known version of a preset document -> the current version's. BadInput when it is not
    a preset or comes from a newer bachbridge."""
    if not isinstance(document, dict):
        raise BadInput("not a preset (the JSON is not an object)")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BadInput("not a preset (no version number)")
    if version > VERSION:
        raise BadInput(f"preset version {version} comes from a newer bachbridge (this one reads up to {VERSION})")
    if version < 1:
        raise BadInput(f"unknown preset version {version}")
    if version == 1:
        document = _v1_to_v2(document)
    if document.get("version") == 2:
        document = {**document, "version": 3, "controls": {}}
    if document.get("format") != FORMAT:
        raise BadInput(f"not a bachbridge preset (format {document.get('format')!r})")
    return document


def _v1_to_v2(old: dict) -> dict:
    live = {key: old[key] for key in _V1_LIVE if key in old}
    if "channels" in old:
        channels = old["channels"]
        if not (isinstance(channels, list) and all(isinstance(c, int) for c in channels)):
            raise BadInput(f"preset channels must be a list of MIDI channels 1-16, not {channels!r}")
        live["channels"] = [c - 1 for c in channels]  # v1 counted 1-16, LiveConfig counts 0-15
    return {"format": FORMAT, "version": 2, "name": old.get("name", ""),
            "model": old.get("engine", old.get("model")),
            "settings": {key: old[key] for key in _V1_SETTINGS if key in old}, "live": live}


def from_dict(document: dict, default_model: str) -> Preset:
    """A Preset from a document of any known version. Values are checked by Settings and
    LiveConfig themselves, so a bad one gives their message (BadInput); unknown fields are named."""
    document = migrate(document)
    settings_part = document.get("settings") or {}
    live_part = document.get("live") or {}
    controls_part = document.get("controls") or {}
    if not all(isinstance(part, dict) for part in (settings_part, live_part, controls_part)):
        raise BadInput("preset 'settings', 'live' and 'controls' must be objects")
    unknown = sorted(set(settings_part) - set(SETTINGS_FIELDS)) + sorted(set(live_part) - set(LIVE_FIELDS))
    if unknown:
        raise BadInput(f"preset has fields this bachbridge does not know: {', '.join(unknown)}")
    settings_values = dict(settings_part)
    if "voice_ranges" in settings_values:
        settings_values["voice_ranges"] = tuple(tuple(pair) for pair in settings_values["voice_ranges"])
    live_values = dict(live_part)
    if "channels" in live_values:
        live_values["channels"] = tuple(live_values["channels"])
    live_values["knob_controls"] = tuple(controls_part.items())
    try:
        settings = Settings(**settings_values)
        config = LiveConfig(**live_values)
    except TypeError as error:  # a value of the wrong type that the dataclass could not compare
        raise BadInput(f"preset value of the wrong type: {error}") from None
    model = document.get("model") or default_model
    return Preset(name=str(document.get("name") or ""), model=str(model), config=config, settings=settings)


def from_json(text: str, default_model: str) -> Preset:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInput(f"not a preset (bad JSON: {error.msg} at line {error.lineno})") from None
    return from_dict(document, default_model)


def load(path: Path, default_model: str) -> Preset:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise BadInput(f"cannot read preset: {error.strerror}", path) from None
    try:
        return from_json(text, default_model)
    except BadInput as error:
        raise BadInput(error.reason, path) from None


def file_name(name: str) -> str:
    """A preset's file name: its name with anything unsafe in a file name replaced."""
    stem = re.sub(r"[^\w .-]+", "_", name).strip(" .") or "preset"
    return stem + SUFFIX


def save(folder: Path, preset: Preset) -> Path:
    if not preset.name.strip():
        raise BadInput("a preset needs a name")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name(preset.name)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(preset.to_json(), encoding="utf-8")
    temp.replace(path)
    return path


def list_named(folder: Path) -> dict[str, Path]:
    """{preset name: file} of the presets in `folder`, by the name stored in each (files that do
    not read as presets are left out)."""
    found = {}
    folder = Path(folder)
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*" + SUFFIX)):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            name = migrate(document).get("name") or path.stem
        except (OSError, ValueError, BadInput):
            continue
        found[str(name)] = path
    return found
