"""The sampling knobs, as one immutable snapshot.

The live loop swaps a whole `Settings` atomically when a knob moves; the batch converter and the
command line build one from their arguments. `replace()` makes a changed copy.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from bridge.errors import BadInput
from bridge.keys import parse_key

# (low, high) MIDI pitch, inclusive, per voice: the ranges of the JSB chorales' S, A, T, B
DEFAULT_VOICE_RANGES = ((60, 81), (52, 74), (46, 69), (36, 66))


@dataclass(frozen=True)
class Settings:
    temperature: float = 0.3     # softmax temperature of every draw; 0 = always the likeliest pitch
    steps: int = 12              # Gibbs steps (network calls) per harmonization
    pmax: float = 1.0            # Yao annealing: share of free cells resampled at the first step ...
    pmin: float = 0.05           # ... falling linearly to this share ...
    alpha: float = 0.6           # ... reached at this fraction of the steps
    candidates: int = 1          # chains sampled side by side; the likeliest under the model wins
    parallel_penalty: float = 10.0  # nats off a pitch per consecutive perfect 5th/8ve it would make
    key: str = "off"             # 'off', 'auto' (estimated from the melody) or a key such as 'Bb', 'F#m'
    top_p: float = 0.95          # a phrase draw keeps the likeliest tokens whose probability reaches this
    repeat_limit: int = 1        # a phrase's melody strikes one pitch at most this many times in a row; 0 = any
    harmonizer: str = "coconet"  # the voices under a phrase's melody: a model that fills ('coconet', ...) or 'chords'
    voice_ranges: tuple[tuple[int, int], ...] = DEFAULT_VOICE_RANGES
    seed: int | None = None      # None: a fresh random seed each time

    def __post_init__(self):
        problems = []
        if not self.temperature >= 0:
            problems.append(f"temperature must be >= 0, not {self.temperature}")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            problems.append(f"steps must be a whole number >= 1, not {self.steps}")
        if not 0 <= self.pmin <= self.pmax <= 1:
            problems.append(f"need 0 <= pmin <= pmax <= 1, not pmin {self.pmin}, pmax {self.pmax}")
        if not self.alpha > 0:
            problems.append(f"alpha must be > 0, not {self.alpha}")
        if not self.parallel_penalty >= 0:
            problems.append(f"parallel_penalty must be >= 0, not {self.parallel_penalty}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], not {self.top_p}")
        if not (isinstance(self.repeat_limit, int) and self.repeat_limit >= 0):
            problems.append(f"repeat_limit must be a whole number >= 0, not {self.repeat_limit}")
        if not (isinstance(self.harmonizer, str) and self.harmonizer):
            problems.append(f"harmonizer must name a model or 'chords', not {self.harmonizer!r}")
        if not (isinstance(self.candidates, int) and 1 <= self.candidates <= 64):
            problems.append(f"candidates must be 1..64, not {self.candidates}")
        if len(self.voice_ranges) != 4 or any(not 0 <= lo <= hi - 11 <= 116 for lo, hi in self.voice_ranges):
            # an octave at least, so any melody note can be moved into the soprano's range
            problems.append(f"voice_ranges must be four (low, high) MIDI pairs an octave or more apart, "
                            f"not {self.voice_ranges}")
        if self.key not in ("off", "auto"):
            try:
                parse_key(self.key)
            except ValueError as error:
                problems.append(f"key: {error}")
        if problems:
            raise BadInput("; ".join(problems))

    def replace(self, **changes) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


# the knobs an exported model may carry its own defaults for (`export_onnx.py --sampling-defaults`):
# all but the seed and the voice ranges, which belong to the user and the piece
MODEL_KNOBS = tuple(name for name in Settings.field_names() if name not in ("seed", "voice_ranges"))


def parse_knob_values(text: str) -> dict:
    """'temperature=0.4,steps=16' -> {'temperature': 0.4, 'steps': 16}, each typed as its Settings
    field and checked by Settings; BadInput naming the first wrong one otherwise."""
    plain = Settings()
    values = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        name, equals, value = part.partition("=")
        name = name.strip().replace("-", "_")
        if not equals or name not in MODEL_KNOBS:
            raise BadInput(f"not a knob=value pair of {', '.join(MODEL_KNOBS)}: {part!r}")
        kind = type(getattr(plain, name))
        try:
            values[name] = kind(value.strip())
        except ValueError:
            raise BadInput(f"{name} takes {'a whole number' if kind is int else 'a number'}, "
                           f"not {value.strip()!r}") from None
    return checked_model_knobs(values)


def checked_model_knobs(values) -> dict:
    """`values` when it is a dict of MODEL_KNOBS whose values Settings accepts; BadInput otherwise."""
    if not isinstance(values, dict) or not set(values) <= set(MODEL_KNOBS):
        raise BadInput(f"not a dict of {', '.join(MODEL_KNOBS)}: {values!r}")
    try:
        Settings(**values)
    except TypeError as error:   # a value of the wrong type, which Settings compares with numbers
        raise BadInput(str(error)) from None
    return values
