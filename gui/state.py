"""What the window keeps between runs (QSettings): the last knobs and model, the ports, the models
loaded lately and the window's geometry; and where presets live unless told otherwise."""
from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QByteArray, QSettings, QStandardPaths

from bridge.engines import engine_names
from bridge.errors import BadInput
from bridge.live import LIVE_SETTINGS, LiveConfig
from bridge.ports import DEFAULT_IN, DEFAULT_OUT
from gui import presets
from gui.session import PortChoice

STATE_NAME = "last state"
PORT_KEYS = ("api", "in_name", "out_name", "connect_in", "connect_out")


def default_model() -> str:
    """The shipped live model when it is there (as `bachbridge live` picks), else the first shipped."""
    from models import shipped_model

    names = engine_names()
    return "coconet-live" if "coconet-live" in names and shipped_model("coconet-live").is_file() else names[0]


def default_presets_dir() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".bachbridge") / "presets"


def restored_preset(store: QSettings) -> tuple[presets.Preset, str | None]:
    """The knobs and model of last time (defaults the first time), and why they were not restored
    when they could not be."""
    fallback = presets.Preset(STATE_NAME, default_model(), LiveConfig(), LIVE_SETTINGS)
    text = store.value("state/preset")
    if not text:
        return fallback, None
    try:
        return presets.from_json(str(text), fallback.model), None
    except BadInput as error:
        return fallback, f"last state not restored: {error}"


def restored_ports(store: QSettings) -> PortChoice:
    def text(key):
        found = store.value(f"ports/{key}")
        return str(found) if found else None

    return PortChoice(api=text("api"), in_name=text("in_name") or DEFAULT_IN, out_name=text("out_name") or DEFAULT_OUT,
                      connect_in=text("connect_in"), connect_out=text("connect_out"))


def save(store: QSettings, preset: presets.Preset, ports: PortChoice, recent_models: list[str],
         geometry: QByteArray) -> None:
    store.setValue("state/preset", preset.to_json())
    for key in PORT_KEYS:
        store.setValue(f"ports/{key}", getattr(ports, key) or "")
    store.setValue("models/recent", recent_models)
    store.setValue("window/geometry", geometry)
    store.sync()
