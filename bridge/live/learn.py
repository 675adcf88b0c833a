"""Knobs turned from the DAW: a MIDI controller (or, for a knob with named choices, program
change) bound to a knob of the live bridge moves it while the music plays.

A binding is (knob, controller 0..119) or (knob, PROGRAM). A controller's 0..127 spans the knob's
range below (a musician's range, not every value the knob takes: temperature 0..2, not 0..5);
for a knob with choices, the range is cut into equal slices, one per choice, and program change
n picks choice n. A message bound to a knob moves it and is never played. The engine is a knob
too: the model a controller or program change picks is loaded and warmed up in a thread of its
own, and played from the next note after it is ready.
"""
from __future__ import annotations

from dataclasses import dataclass

from bridge.errors import BadInput
from bridge.live.config import MODES

CONTROL_CHANGE, PROGRAM_CHANGE = 0xB0, 0xC0
PROGRAM = "program"
# the shipped models a controller or program change picks among
ENGINES = ("coconet-live", "coconet", "rnnrbm", "biaxial", "phrase")
KEYS = ("off", "auto", "C", "G", "D", "A", "E", "B", "F#", "Db", "Ab", "Eb", "Bb", "F",
        "Am", "Em", "Bm", "F#m", "C#m", "G#m", "Ebm", "Bbm", "Fm", "Cm", "Gm", "Dm")


@dataclass(frozen=True)
class Knob:
    field: str                        # the Settings or LiveConfig field it sets
    on_config: bool = False           # a LiveConfig field (else Settings)
    loads: bool = False               # a model to load and warm up (not a field: off the worker)
    low: float = 0.0
    high: float = 1.0
    whole: bool = False               # whole numbers only
    choices: tuple = ()               # named choices instead of a range

    def value(self, controller_value: int):
        """What a controller at 0..127 sets."""
        if self.choices:
            return self.choices[min(controller_value * len(self.choices) // 128, len(self.choices) - 1)]
        value = self.low + (self.high - self.low) * controller_value / 127
        return int(round(value)) if self.whole else round(value, 4)


KNOBS = {
    "temperature": Knob("temperature", low=0.0, high=2.0),
    "pmax": Knob("pmax"),
    "pmin": Knob("pmin"),
    "alpha": Knob("alpha", low=0.05, high=1.0),
    "steps": Knob("steps", low=1, high=64, whole=True),
    "candidates": Knob("candidates", low=1, high=16, whole=True),
    "parallel_penalty": Knob("parallel_penalty", low=0.0, high=20.0),
    "top_p": Knob("top_p", low=0.05, high=1.0),
    "repeat_limit": Knob("repeat_limit", low=0, high=8, whole=True),
    "key": Knob("key", choices=KEYS),
    "mode": Knob("mode", on_config=True, choices=MODES),
    "lookahead": Knob("lookahead_beats", on_config=True, low=0.25, high=4.0),
    "speculate": Knob("speculate", on_config=True, choices=(False, True)),
    "engine": Knob("engine", loads=True, choices=ENGINES),
}


def parse_binding(text: str) -> tuple[str, int | str]:
    """'temperature=21' or 'key=program' -> (knob, controller or PROGRAM), BadInput otherwise."""
    knob, _, control = str(text).partition("=")
    knob = knob.strip().replace("-", "_")
    if knob not in KNOBS or not control:
        raise BadInput(f"--cc takes KNOB=CONTROLLER (KNOB one of {', '.join(KNOBS)}), not {text!r}")
    control = control.strip()
    if control == PROGRAM:
        return knob, PROGRAM
    if not control.isdigit():
        raise BadInput(f"--cc {text}: a controller is a number 0..119 (or 'program' for a knob with choices)")
    return knob, int(control)


def check_bindings(bindings: tuple, respond_cc: int | None) -> list[str]:
    """What is wrong with a LiveConfig's bindings, as sentences (none: they are fine)."""
    problems, controls = [], set()
    for binding in bindings:
        if not (isinstance(binding, tuple) and len(binding) == 2 and binding[0] in KNOBS):
            problems.append(f"a knob binding is (knob, controller), knob one of {', '.join(KNOBS)}; not {binding!r}")
            continue
        knob, control = binding
        if control == PROGRAM:
            if not KNOBS[knob].choices:
                problems.append(f"program change picks among choices; {knob} has a range: bind a controller")
        elif not (isinstance(control, int) and not isinstance(control, bool) and 0 <= control <= 119):
            problems.append(f"{knob}: a controller must be 0..119 (120..127 are channel mode messages), not {control!r}")
        elif control == respond_cc:
            problems.append(f"controller {control} is respond mode's trigger; {knob} needs another")
        if control in controls:
            problems.append(f"{control} is bound to two knobs")
        controls.add(control)
    return problems


def control_of(data: bytes) -> int | str | None:
    """The controller a control change moves, PROGRAM for a program change, else None."""
    if len(data) == 3 and data[0] & 0xF0 == CONTROL_CHANGE and data[1] < 128 and data[2] < 128:
        return data[1]
    if len(data) == 2 and data[0] & 0xF0 == PROGRAM_CHANGE and data[1] < 128:
        return PROGRAM
    return None


def knob_change(data: bytes, bindings: tuple, in_channel: int | None,
                control: int | str | None = None) -> tuple[str, object] | None:
    """(knob, new value) when `data` is a message bound to a knob, else None. `control`: what
    `control_of(data)` said, where the caller has read it already (the live worker)."""
    if control is None:
        control = control_of(data)
    if control is None or (in_channel is not None and data[0] & 0x0F != in_channel):
        return None
    knob = next((knob for knob, bound in bindings if bound == control), None)
    if knob is None:
        return None
    if control == PROGRAM:
        choices = KNOBS[knob].choices
        return (knob, choices[data[1]]) if data[1] < len(choices) else None
    return knob, KNOBS[knob].value(data[2])


def turned(config, settings, changes: dict):
    """(config, settings) with the knobs in `changes` moved (a knob that loads a model aside); pmin
    and pmax keep their order (the one moved last wins and takes the other along)."""
    config_changes, settings_changes = {}, {}
    for knob, value in changes.items():
        spec = KNOBS[knob]
        if not spec.loads:
            (config_changes if spec.on_config else settings_changes)[spec.field] = value
    if "pmin" in settings_changes or "pmax" in settings_changes:
        pmin = settings_changes.get("pmin", settings.pmin)
        pmax = settings_changes.get("pmax", settings.pmax)
        if pmin > pmax:
            moved_last = [k for k in changes if k in ("pmin", "pmax")][-1]
            if moved_last == "pmin":
                settings_changes["pmax"] = pmin
            else:
                settings_changes["pmin"] = pmax
    return (config.replace(**config_changes) if config_changes else config,
            settings.replace(**settings_changes) if settings_changes else settings)
