"""The one engine interface. The batch converter, the live loop and the window hold an `Engine`
and never ask which one it is.

An engine fills in a partly known score (bridge.score.Score: MIDI pitches on the 16th grid,
onsets, voices S A T B):

    known (T, 4) bool, True = given (kept exactly, onsets too), False = to be filled in
    engine.fill(score, known, settings) -> Score with every known cell unchanged
    engine.inpaint(roll, known, settings) -> the same on a (T, 4) roll of pitches (-1 = silent)

`harmonize(melody, settings)` is filling with the soprano given and `generate(prime, known,
steps, settings)` filling with the future unknown, both shared by all engines, and
`evaluate(data, split, limit)` returns the engine's likelihood figures on a held-out split.

The user's pitches may lie in any register and key. `fill` moves them to where the model learnt
(`register_shift`: by default whole octaves that put the melody in the soprano range; an engine
trained in one key moves them to it too), with the key and the voice ranges, and moves the answer
back: engines only ever see their own register (`_fill_many`, `_melody_candidates`).

An engine says what it can do (`capabilities`) and which knobs it reads (`knobs`). Engines are
built from an exported `.onnx` file, whose metadata names the engine class.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

import numpy as np

from bridge import keys
from bridge.errors import BadInput
from bridge.musicstats import consecutive_perfect
from bridge.onnxmodel import OnnxModel
from bridge.score import COMMON_TIME, REST, Score
from bridge.settings import Settings

SOPRANO = 0
# melody rests shorter than this many 16ths (a detached or staccato note) do not silence the harmony
SHORTEST_HARMONY_REST = 4

# capabilities
FILL = "fill"                      # fills in any mask given the rest (harmonize, the live note mode)
CONTINUE = "continue"              # steps a sequence with a state: each new step costs its own work, not the piece's
ARTICULATE = "articulate"          # says where a voice strikes its pitch again (onsets of its own)
PREDICT_MELODY = "predict melody"  # names the likely next melody pitches (the live bridge speculates on them)
RANK = "rank"                      # says how likely it finds a filling (variants of a file come out likeliest first)

# metadata 'engine' -> class, imported on first use
ENGINE_CLASSES = {
    "coconet": "bridge.engines.coconet:CoconetEngine",
    "rnnrbm": "bridge.engines.rnnrbm:RnnRbmEngine",
    "biaxial": "bridge.engines.biaxial:BiaxialEngine",
    "phrase": "bridge.engines.phrase:PhraseEngine",
}


def rest_is_held(rest_steps: int) -> bool:
    """Whether a melody rest of this many 16ths (so far) is detached playing, held through for
    the harmony (the chorales the models learnt from have no such gaps), rather than a rest the
    harmony keeps too. The one rule for files, the live note mode and phrase mode."""
    return rest_steps < SHORTEST_HARMONY_REST


class Engine(ABC):
    """Base of every engine: holds the ONNX model and does what all engines share."""

    # steps either side of a cell that can change its answer; None: the whole roll can (recurrent)
    receptive_radius: int | None = None
    # the Settings fields the engine reads (the window leaves the others' controls disabled)
    knobs: frozenset[str] = frozenset({"temperature", "steps", "pmax", "pmin", "alpha", "candidates", "parallel_penalty",
                                       "key", "voice_ranges", "seed"})
    capabilities: frozenset[str] = frozenset({FILL})

    def __init__(self, model: OnnxModel):
        self.model = model
        self.min_pitch = model.meta_int("min_pitch")
        self.num_pitches = model.meta_int("num_pitches")

    @property
    def name(self) -> str:
        return self.model.name

    def default_settings(self, base: Settings = Settings()) -> Settings:
        """`base` with the knobs this model plays best at, where its export stored them
        (`export_onnx.py --sampling-defaults`): what every caller starts from, the knobs the
        user set going on top."""
        return base.replace(**self.model.sampling_defaults())

    # ---- what each engine implements, in its own register: `_fill` or `_fill_many` (each of -----
    # ---- these defaults calls the other), `evaluate`, and `_melody_candidates` with PREDICT_MELODY

    def _fill_many(self, scores: list[Score], knowns: list[np.ndarray], settings: Settings,
                   open_end: bool) -> list[Score]:
        """`_fill` for several scores (the live bridge's speculation asks for many at once); an
        engine that can batch them overrides this."""
        return [self._fill(score, known, settings, open_end) for score, known in zip(scores, knowns)]

    def _fill(self, score: Score, known: np.ndarray, settings: Settings, open_end: bool) -> Score:
        """Fill in every cell not `known` of a score in the model's register (given notes within
        its pitches, the settings' key and ranges moved with them); known cells come back
        unchanged. `open_end`: the music goes on after the last step, unknown (the live bridge's
        windows), rather than ends."""
        return self._fill_many([score], [known], settings, open_end)[0]

    def _melody_candidates(self, roll: np.ndarray, known: np.ndarray, settings: Settings, count: int) -> list[int]:
        """`melody_candidates` in the model's register; engines with PREDICT_MELODY override it."""
        return []

    def _log_likelihoods(self, views: list[Score], known: np.ndarray) -> list[float]:
        """`rank` in the model's register; engines with RANK override it."""
        raise NotImplementedError

    @abstractmethod
    def evaluate(self, data: Path, split: str, limit: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
        """Likelihood figures on a held-out split of `data`, as a flat dict of numbers."""

    def register_shift(self, roll: np.ndarray, known: np.ndarray, settings: Settings, octaves: int) -> int:
        """Semitones added to the user's pitches to give the model its view: `octaves`, the whole
        octaves that put most of the given melody inside the soprano's range (an engine that
        learnt in one key moves to it as well)."""
        return octaves

    # ---- the interface every caller uses, in the user's register ------------------------------

    def fill(self, score: Score, known: np.ndarray, settings: Settings, open_end: bool = False) -> Score:
        """Fill in every cell not `known`, in the score's own register; known cells (pitches and
        onsets) come back unchanged."""
        return self.fill_many([score], [known], settings, open_end)[0]

    def fill_many(self, scores: list[Score], knowns: list[np.ndarray], settings: Settings,
                  open_end: bool = False) -> list[Score]:
        """`fill` for several scores, in one batch where the engine can."""
        views = [self._model_view(score, known, settings) for score, known in zip(scores, knowns)]
        results: list[Score | None] = [None] * len(views)
        # the scores whose view has the same settings (the same register's key and ranges) go together
        groups: dict[Settings, list[int]] = {}
        for i, (_, _, view_settings) in enumerate(views):
            groups.setdefault(view_settings, []).append(i)
        for view_settings, members in groups.items():
            filled = self._fill_many([views[i][0] for i in members], [np.asarray(knowns[i], dtype=bool) for i in members],
                                     view_settings, open_end)
            for i, result in zip(members, filled):
                results[i] = self._user_view(result, scores[i], np.asarray(knowns[i], dtype=bool), views[i][1])
        return results

    def inpaint(self, roll: np.ndarray, known: np.ndarray, settings: Settings, open_end: bool = False,
                meter: tuple[int, int] = COMMON_TIME) -> np.ndarray:
        """`fill` on a (T, 4) roll of pitches (its bars as `meter` says: see Score) -> (T, 4) int16 roll."""
        return np.array(self.fill(self.score_of(roll, known, meter), known, settings, open_end).pitches)

    def inpaint_many(self, rolls: list[np.ndarray], knowns: list[np.ndarray], settings: Settings,
                     open_end: bool = False) -> list[np.ndarray]:
        scores = [self.score_of(roll, known) for roll, known in zip(rolls, knowns)]
        return [np.array(s.pitches) for s in self.fill_many(scores, knowns, settings, open_end)]

    def melody_candidates(self, roll: np.ndarray, known: np.ndarray, settings: Settings, count: int) -> list[int]:
        """The `count` likeliest soprano pitches (MIDI, likeliest first) for the last step of
        `roll`, whose soprano is not `known`, given the known cells (the music goes on after it).
        The live bridge speculates on them between notes; [] from an engine without
        PREDICT_MELODY."""
        score = self.score_of(roll, known)
        view, shift, view_settings = self._model_view(score, known, settings)
        likely = self._melody_candidates(np.array(view.pitches), np.asarray(known, dtype=bool), view_settings, count)
        return [p - shift for p in likely if 0 <= p - shift <= 127]

    def rank(self, fillings: list[Score], known: np.ndarray, settings: Settings) -> list[float]:
        """How likely the engine finds each of several fillings of one score's unknown cells
        (`known`: the cells they share), in nats: higher is likelier; comparable only among
        fillings of one score and mask. Only an engine with RANK can say."""
        if RANK not in self.capabilities:
            raise BadInput(f"the {self.name} engine cannot rank what it draws")
        everything = np.ones(np.shape(known), dtype=bool)
        views = [self._model_view(filling, everything, settings)[0] for filling in fillings]
        return [float(x) for x in self._log_likelihoods(views, np.asarray(known, dtype=bool))]

    def warm_up(self, settings: Settings | None = None) -> None:
        """Compile the kernels and touch the session once, so the first real call is fast (what
        `settings` ask for loaded too, where an engine needs more for them)."""
        self.harmonize(np.full(8, 72, dtype=np.int16), Settings(steps=2, seed=0))

    def harmonize(self, melody: np.ndarray | Score, settings: Settings) -> Score:
        """A melody ((T,) MIDI pitches, -1 = rest, or a one-voice Score with its onsets) -> the
        four-voice Score, its soprano the melody exactly.

        Where the melody rests for a beat or more, every voice rests; shorter gaps (detached
        playing) are held through (`rest_is_held`)."""
        melody = melody if isinstance(melody, Score) else Score.melody(np.asarray(melody, dtype=np.int16))
        soprano = np.array(melody.pitches[:, 0])
        held = hold_through_short_rests(soprano)
        roll = np.full((len(soprano), 4), REST, dtype=np.int16)
        roll[:, SOPRANO] = held
        onsets = np.zeros(roll.shape, dtype=bool)
        onsets[:, SOPRANO] = melody.onsets[:, 0] & (soprano >= 0)
        known = np.zeros(roll.shape, dtype=bool)
        known[:, SOPRANO] = True
        known[held < 0] = True
        result = self.fill(Score.of(roll, onsets, meter=melody.meter), known, settings)
        pitches = np.array(result.pitches)
        pitches[:, SOPRANO] = soprano
        onsets = np.array(result.onsets)
        onsets[:, SOPRANO] = melody.onsets[:, 0]
        return Score.of(pitches, onsets, meter=melody.meter)

    def stream(self, settings: Settings) -> "Stream":
        """A piece continued a few steps at a time (see Stream); with CONTINUE, state kept."""
        return Stream(self, settings)

    def generate(self, prime: np.ndarray | Score, prime_known: np.ndarray, steps: int, settings: Settings) -> Score:
        """Continue a (T0, 4) `prime` (a roll or a Score; cells in `prime_known` are kept, the
        others, such as the lower voices of a melody-only prime, filled in) by `steps` new 16ths,
        every voice free: filling with the future unknown, so every engine with FILL can (an
        orderless one like coconet as well as a recurrent one). -> Score of T0 + steps."""
        prime = prime if isinstance(prime, Score) else Score.of(np.asarray(prime, dtype=np.int16).reshape(-1, 4))
        prime_known = np.asarray(prime_known, dtype=bool).reshape(prime.pitches.shape)
        pitches = np.concatenate([prime.pitches, np.full((steps, 4), REST, dtype=np.int16)])
        onsets = np.concatenate([prime.onsets, np.zeros((steps, 4), dtype=bool)])
        known = np.concatenate([prime_known, np.zeros((steps, 4), dtype=bool)])
        return self.fill(Score.of(pitches, onsets, meter=prime.meter), known, settings)

    # ---- the register path, the one place -----------------------------------------------------

    @classmethod
    def score_of(cls, roll: np.ndarray, known: np.ndarray, meter: tuple[int, int] = COMMON_TIME) -> Score:
        """The Score of a roll's known cells (repeated pitches held), BadInput unless roll and
        known are (T, 4)."""
        return Score.of(cls.given_cells(roll, known)[0], meter=meter)

    def _model_view(self, score: Score, known: np.ndarray, settings: Settings,
                    shift: int | None = None) -> tuple[Score, int, Settings]:
        """(the score as the model sees it, the shift applied, the settings in its register);
        `shift`: one fixed before (a stream keeps its register), else the score's own.

        The given notes move by `register_shift`; a melody note still outside the soprano's range
        (a melody wider than it) and a given harmony note outside the model's pitches are folded
        in by octaves. The key moves with the shift, and the voice ranges with what the shift
        adds to the octaves that bring the melody into the soprano's range: the ranges are where
        the voices sing under a melody in the soprano's range, in every engine. Unknown cells
        read as silent."""
        known = np.asarray(known, dtype=bool)
        if known.shape != score.pitches.shape or score.pitches.shape[1] != 4:
            raise BadInput(f"score and known must both be (T, 4), not {score.pitches.shape} and {known.shape}")
        given = np.where(known, score.pitches, REST).astype(np.int16)
        low, high = settings.voice_ranges[SOPRANO]
        octaves = octave_shift_into_range(given[known[:, SOPRANO], SOPRANO], low, high)
        if shift is None:
            shift = self.register_shift(given, known, settings, octaves)
        view_settings = settings_moved(settings, shift, shift - octaves)
        low, high = view_settings.voice_ranges[SOPRANO]
        lowest, highest = self.min_pitch, self.min_pitch + self.num_pitches - 1
        view = np.empty_like(given)
        # folded before the shift, where every sounding pitch is >= 0 (fold_into_range reads < 0 as rests)
        view[:, SOPRANO] = fold_into_range(given[:, SOPRANO], low - shift, high - shift)
        view[:, 1:] = fold_into_range(given[:, 1:], lowest - shift, highest - shift)
        view = np.where(view >= 0, view + shift, REST).astype(np.int16)
        return Score.of(view, score.onsets & known, held_in=True, meter=score.meter), shift, view_settings

    @staticmethod
    def _user_view(result: Score, score: Score, known: np.ndarray, shift: int) -> Score:
        """The model's answer moved back to the user's register, the given cells exactly as given."""
        sounding = result.pitches >= 0
        moved = fold_into_range(result.pitches.astype(np.int64) - shift, 0, 127, sounding)
        pitches = np.where(known, score.pitches, moved)
        onsets = np.where(known, score.onsets, result.onsets)
        return Score.of(pitches, onsets, score.voices, held_in=True, meter=score.meter)

    # ---- for the engines that draw chords and give their notes to voices ----------------------

    @staticmethod
    def given_cells(roll: np.ndarray, known: np.ndarray, voices: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """(the roll with every unknown cell a rest, int16, writable; `known` as bool), BadInput
        unless both are (T, voices)."""
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

    def free_pitches(self, roll: np.ndarray, known: np.ndarray, settings: Settings) -> np.ndarray:
        """(P,) bool: model pitches a filled-in note may take: inside the ranges of the voices
        that are ever unknown (their lowest low to their highest high), in the key when one is
        set."""
        voices = [v for v in range(known.shape[1]) if not known[:, v].all()] or list(range(known.shape[1]))
        low = min(settings.voice_ranges[v][0] for v in voices)
        high = max(settings.voice_ranges[v][1] for v in voices)
        midi = self.min_pitch + np.arange(self.num_pitches)
        allowed = (midi >= low) & (midi <= high)
        scale = self.scale(roll, known, settings)
        if scale is not None:
            allowed &= np.isin(midi % 12, scale)
        return allowed


class Stream:
    """A piece continued a few steps at a time, in the user's register, from Engine.stream:

        stream.feed(score)                        rows given whole (the player's phrase so far;
                                                  Score.of(rows, held_in=True) for rows that go on
                                                  from the last ones)
        stream.extend(steps, given, known) -> Score  the next rows, the `known` cells of `given`
                                                  kept (default: every voice free), the rest drawn
        stream.revise_last(row)                   the last row as it really sounded
        stream.score                              the whole piece so far

    This one asks `fill` for the whole piece at each `extend` (so every engine can stream; the
    k-th extend draws with seed + k); an engine with CONTINUE keeps its state and steps only the
    new rows. `feed` then `extend` draws what `generate` draws for the same prime and settings.
    """

    def __init__(self, engine: "Engine", settings: Settings):
        self.engine, self.settings = engine, settings
        self.score = Score.of(np.zeros((0, 4), dtype=np.int16))
        self._extends = 0

    def feed(self, score: Score) -> None:
        self.score = self.score.appended(score)

    def extend(self, steps: int, given: Score | None = None, known: np.ndarray | None = None) -> Score:
        given, known = self._rows(steps, given, known)
        settings = self.settings
        if self._extends and settings.seed is not None:
            settings = settings.replace(seed=settings.seed + self._extends)
        self._extends += 1
        piece_known = np.concatenate([np.ones(self.score.pitches.shape, dtype=bool), known])
        self.score = self.engine.fill(self.score.appended(given), piece_known, settings)
        return self.score.steps(len(self.score) - steps, len(self.score))

    def revise_last(self, row: Score) -> None:
        """The last row as it really sounded (the live bridge may have played another answer,
        or the player's timing another melody), before the next `feed` or `extend`."""
        self.score = self.score.steps(0, len(self.score) - 1).appended(row)

    @staticmethod
    def _rows(steps: int, given: Score | None, known: np.ndarray | None) -> tuple[Score, np.ndarray]:
        if given is None:
            return Score.of(np.full((steps, 4), REST, dtype=np.int16)), np.zeros((steps, 4), dtype=bool)
        known = np.zeros(given.pitches.shape, dtype=bool) if known is None else np.asarray(known, dtype=bool)
        if len(given) != steps or known.shape != given.pitches.shape or given.pitches.shape[1] != 4:
            raise BadInput(f"extend: given and known must both be ({steps}, 4), not {given.pitches.shape} "
                           f"and {known.shape}")
        return given, known


def settings_moved(settings: Settings, key_shift: int, range_shift: int) -> Settings:
    """The settings with an explicit key moved `key_shift` semitones and the voice ranges
    `range_shift` (kept inside MIDI)."""
    changes = {}
    if key_shift % 12 and settings.key not in ("off", "auto"):
        tonic, mode = keys.parse_key(settings.key)
        changes["key"] = keys.key_name((tonic + key_shift) % 12, mode)
    if range_shift:
        changes["voice_ranges"] = tuple((min(max(low + range_shift, 0), 116), min(max(high + range_shift, 11), 127))
                                        for low, high in settings.voice_ranges)
    return settings.replace(**changes) if changes else settings


def hold_through_short_rests(melody: np.ndarray) -> np.ndarray:
    """The melody with each rest between two notes that `rest_is_held` filled with the note before it."""
    held = melody.copy()
    sounding = np.flatnonzero(melody >= 0)
    for before, after in zip(sounding[:-1], sounding[1:]):
        if rest_is_held(after - before - 1):
            held[before + 1:after] = melody[before]
    return held


_OCTAVE_SHIFTS = np.arange(-60, 61, 12)


def octave_shift_into_range(melody: np.ndarray, low: int, high: int) -> int:
    """Whole-octave shift that puts most of the melody's notes inside [low, high].

    Ties go to the smaller shift, so a melody already in range is never moved.
    """
    notes = melody[melody >= 0].astype(np.int64)
    if notes.size == 0:
        return 0
    moved = notes[None, :] + _OCTAVE_SHIFTS[:, None]
    outside = ((moved < low) | (moved > high)).sum(axis=1)
    return int(_OCTAVE_SHIFTS[np.lexsort((_OCTAVE_SHIFTS, np.abs(_OCTAVE_SHIFTS), outside))[0]])


def fold_into_range(melody: np.ndarray, low: int, high: int, sounding: np.ndarray | None = None) -> np.ndarray:
    """Notes still outside [low, high] (a melody wider than the range) moved by octaves into it.
    Cells < 0 are rests, unless `sounding` says which cells are notes (a pitch moved below 0)."""
    pitches = melody.astype(np.int64)
    sounding = pitches >= 0 if sounding is None else np.asarray(sounding, dtype=bool)
    notes = pitches[sounding]
    if notes.size == 0 or (notes.min() >= low and notes.max() <= high):   # the common case
        return np.where(sounding, pitches, REST).astype(np.int16)
    up = np.where(pitches < low, -((pitches - low) // 12) * 12, 0)       # whole octaves up to reach low
    down = np.where(pitches > high, ((pitches - high + 11) // 12) * 12, 0)
    return np.where(sounding, pitches + up - down, REST).astype(np.int16)


def model_path(model: str | Path) -> Path:
    """The file of a shipped model's name (`coconet`, `coconet-live`, ...) or an `.onnx` path."""
    from models import SHIPPED_MODELS, shipped_model

    return shipped_model(str(model)) if str(model) in SHIPPED_MODELS else Path(model)


def model_settings(model: str | Path, base: Settings = Settings()) -> Settings:
    """`base` with the model's own sampling defaults (`Engine.default_settings`), read without
    building the engine (the batch converter's workers build theirs)."""
    return base.replace(**OnnxModel(model_path(model), threads=1).sampling_defaults())


def load_engine(model: str | Path = "coconet", threads: int | None = None, spin: bool = True) -> Engine:
    """An engine from a shipped model's name (`coconet`, `coconet-live`, ...) or an `.onnx` path."""
    path = model_path(model)
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


def consecutive_perfects(before: np.ndarray, voicing: dict[int, int]) -> int:
    """Pairs of voices making consecutive perfects (bridge.musicstats.consecutive_perfect) from
    `before` (a row of MIDI pitches) to `voicing` (voice -> pitch; a voice not in it rests)."""
    return sum(bool(consecutive_perfect(int(before[upper]), int(before[lower]),
                                        voicing.get(upper, REST), voicing.get(lower, REST)))
               for upper in range(len(before)) for lower in range(upper + 1, len(before)))
