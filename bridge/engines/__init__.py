"""The one engine interface. The batch converter, the live loop and the window hold an `Engine`
and never ask which one it is.

An engine turns a partly known roll into a full one:

    roll  (T, 4) int16 MIDI pitches, columns S A T B, 16th-note steps, -1 = silent
    known (T, 4) bool, True = given (kept exactly), False = to be filled in
    engine.inpaint(roll, known, settings) -> (T, 4) roll with every known cell unchanged

`harmonize(soprano, settings)` is inpainting with the soprano given and `generate(prime, known,
steps, settings)` inpainting with the future unknown, both shared by all engines, and
`evaluate(data, split, limit)` returns the engine's likelihood figures on a held-out split.
Engines are built from an exported `.onnx` file, whose metadata names the engine class.
"""
from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

import numpy as np

from bridge import keys
from bridge.errors import BadInput
from bridge.onnxmodel import OnnxModel
from bridge.settings import Settings

REST = -1
SOPRANO = 0
# melody rests shorter than this many 16ths (a detached or staccato note) do not silence the harmony
SHORTEST_HARMONY_REST = 4

# metadata 'engine' -> class, imported on first use
ENGINE_CLASSES = {
    "coconet": "bridge.engines.coconet:CoconetEngine",
    "rnnrbm": "bridge.engines.rnnrbm:RnnRbmEngine",
    "biaxial": "bridge.engines.biaxial:BiaxialEngine",
}


class Engine(ABC):
    """Base of every engine: holds the ONNX model and does what all engines share."""

    # steps either side of a cell that can change its answer; None: the whole roll can (recurrent)
    receptive_radius: int | None = None
    # the Settings fields the engine reads (the window leaves the others' controls disabled)
    knobs: frozenset[str] = frozenset(field.name for field in dataclasses.fields(Settings))

    def __init__(self, model: OnnxModel):
        self.model = model
        self.min_pitch = model.meta_int("min_pitch")
        self.num_pitches = model.meta_int("num_pitches")

    @property
    def name(self) -> str:
        return self.model.name

    @abstractmethod
    def inpaint(self, roll: np.ndarray, known: np.ndarray, settings: Settings, open_end: bool = False) -> np.ndarray:
        """Fill in every cell not `known`; known cells come back unchanged. `open_end`: the music
        goes on after the roll's last step, unknown (the live bridge's windows), rather than ends."""

    def inpaint_many(self, rolls: list[np.ndarray], knowns: list[np.ndarray], settings: Settings,
                     open_end: bool = False) -> list[np.ndarray]:
        """`inpaint` for several rolls (the live bridge's speculation asks for many at once); an
        engine that can batch them overrides this."""
        return [self.inpaint(roll, known, settings, open_end) for roll, known in zip(rolls, knowns)]

    @abstractmethod
    def evaluate(self, data: Path, split: str, limit: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
        """Likelihood figures on a held-out split of `data`, as a flat dict of numbers."""

    def melody_candidates(self, roll: np.ndarray, known: np.ndarray, settings: Settings, count: int) -> list[int]:
        """The `count` likeliest soprano pitches (MIDI, likeliest first) for the last step of
        `roll`, whose soprano is not `known`, given the known cells (the music goes on after it). The live bridge speculates
        on them between notes; an engine that cannot say returns [] (then it does not speculate)."""
        return []

    def warm_up(self) -> None:
        """Compile the kernels and touch the session once, so the first real call is fast."""
        self.harmonize(np.full(8, 72, dtype=np.int16), Settings(steps=2, seed=0))

    def generate(self, prime: np.ndarray, prime_known: np.ndarray, steps: int, settings: Settings) -> np.ndarray:
        """Continue a (T0, 4) `prime` roll (cells in `prime_known` are kept; the others, such as
        the lower voices of a melody-only prime, are filled in) by `steps` new 16ths, every
        voice free: inpainting with the future unknown, so every engine can do it (an
        orderless one like coconet as well as a recurrent one). -> (T0 + steps, 4) roll."""
        prime = np.asarray(prime, dtype=np.int16).reshape(-1, 4)
        prime_known = np.asarray(prime_known, dtype=bool).reshape(prime.shape)
        roll = np.concatenate([prime, np.full((steps, 4), REST, dtype=np.int16)])
        known = np.concatenate([prime_known, np.zeros((steps, 4), dtype=bool)])
        return self.inpaint(roll, known, settings)

    @staticmethod
    def given_cells(roll: np.ndarray, known: np.ndarray, voices: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """(the roll with every unknown cell a rest, int16; `known` as bool), BadInput unless both
        are (T, voices)."""
        roll = np.asarray(roll)
        known = np.asarray(known, dtype=bool)
        if roll.ndim != 2 or roll.shape[1] != voices or known.shape != roll.shape:
            raise BadInput(f"roll and known must both be (T, {voices}), not {roll.shape} and {known.shape}")
        return np.where(known, roll, REST).astype(np.int16), known

    def scale(self, roll: np.ndarray, known: np.ndarray, settings: Settings):
        """Pitch classes the filled-in voices may use, or None (any)."""
        if settings.key == "off":
            return None
        if settings.key == "auto":
            given = roll[known & (roll >= 0)]
            return keys.scale_pitch_classes(*keys.estimate_key(given)) if given.size else None
        return keys.scale_pitch_classes(*keys.parse_key(settings.key))

    def free_pitches(self, roll: np.ndarray, known: np.ndarray, settings: Settings, shift: int = 0) -> np.ndarray:
        """(P,) bool: model pitches (MIDI + `shift`) a filled-in note may take: inside the ranges of
        the voices that are ever unknown (their lowest low to their highest high), in the key when
        one is set. For the engines that draw chords and give their notes to voices."""
        voices = [v for v in range(known.shape[1]) if not known[:, v].all()] or list(range(known.shape[1]))
        low = min(settings.voice_ranges[v][0] for v in voices)
        high = max(settings.voice_ranges[v][1] for v in voices)
        midi = self.min_pitch + np.arange(self.num_pitches) - shift
        allowed = (midi >= low) & (midi <= high)
        scale = self.scale(roll, known, settings)
        if scale is not None:
            allowed &= np.isin(midi % 12, scale)
        return allowed

    def harmonize(self, soprano: np.ndarray, settings: Settings) -> np.ndarray:
        """Soprano (T,) MIDI pitches (-1 = rest) -> (T, 4) roll, soprano column unchanged.

        A melody outside the model's soprano range is moved by whole octaves for the model and
        the harmony moved back, so the result keeps the user's register. Where the melody rests
        for a beat or more, every voice rests; shorter gaps (detached playing) are held through.
        """
        soprano = np.asarray(soprano, dtype=np.int16)
        model_soprano = hold_through_short_rests(soprano, SHORTEST_HARMONY_REST)
        low, high = settings.voice_ranges[SOPRANO]
        shift = octave_shift_into_range(model_soprano, low, high)
        roll = np.full((len(soprano), 4), REST, dtype=np.int16)
        roll[:, SOPRANO] = fold_into_range(np.where(model_soprano >= 0, model_soprano + shift, REST), low, high)
        known = np.zeros(roll.shape, dtype=bool)
        known[:, SOPRANO] = True
        known[model_soprano < 0] = True
        result = self.inpaint(roll, known, settings)
        result = np.where(result >= 0, result - shift, REST).astype(np.int16)
        result[:, SOPRANO] = soprano
        return result


def hold_through_short_rests(melody: np.ndarray, shortest_rest: int) -> np.ndarray:
    """The melody with each rest shorter than `shortest_rest` steps, between two notes, filled
    with the note before it."""
    held = melody.copy()
    sounding = np.flatnonzero(melody >= 0)
    for before, after in zip(sounding[:-1], sounding[1:]):
        if 1 < after - before <= shortest_rest:
            held[before + 1:after] = melody[before]
    return held


def octave_shift_into_range(melody: np.ndarray, low: int, high: int) -> int:
    """Whole-octave shift that puts most of the melody's notes inside [low, high].

    Ties go to the smaller shift, so a melody already in range is never moved.
    """
    notes = melody[melody >= 0].astype(np.int64)
    if notes.size == 0:
        return 0
    shifts = range(-60, 61, 12)
    outside = [int(np.sum((notes + s < low) | (notes + s > high))) for s in shifts]
    return min(zip(outside, (abs(s) for s in shifts), shifts))[2]


def fold_into_range(melody: np.ndarray, low: int, high: int) -> np.ndarray:
    """Notes still outside [low, high] (a melody wider than the range) moved by octaves into it."""
    folded = melody.astype(np.int16).copy()
    sounding = folded >= 0
    while np.any(sounding & (folded < low)):
        folded[sounding & (folded < low)] += 12
    while np.any(sounding & (folded > high)):
        folded[sounding & (folded > high)] -= 12
    return folded


def load_engine(model: str | Path = "coconet", threads: int | None = None, spin: bool = True) -> Engine:
    """An engine from a shipped model's name (`coconet`, `coconet-live`, ...) or an `.onnx` path."""
    from models import SHIPPED_MODELS, shipped_model

    path = shipped_model(str(model)) if str(model) in SHIPPED_MODELS else Path(model)
    onnx_model = OnnxModel(path, threads=threads, spin=spin)
    try:
        module_name, class_name = ENGINE_CLASSES[onnx_model.engine].split(":")
    except KeyError:
        raise BadInput(f"unknown engine {onnx_model.engine!r} in the model's metadata", path) from None
    engine_class = getattr(importlib.import_module(module_name), class_name)
    return engine_class(onnx_model)


def engine_names() -> list[str]:
    """Names `--engine` accepts: the models that ship with the package."""
    from models import SHIPPED_MODELS

    return list(SHIPPED_MODELS)


def assign_by_pitch_order(notes_descending: list[int], voices: list[int]) -> dict[int, int]:
    """Voice -> pitch for notes (highest first) and voices (highest first): the top notes to the
    top voices, the lowest note to the lowest voice; with fewer notes than voices the voices in
    between stay silent, with more notes the notes in between are dropped."""
    if not notes_descending or not voices:
        return {}
    upper = min(len(notes_descending), len(voices)) - 1
    assignment = dict(zip(voices[:upper], notes_descending[:upper]))
    assignment[voices[-1]] = notes_descending[-1]
    return assignment
