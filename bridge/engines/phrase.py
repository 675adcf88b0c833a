"""The phrase engine: continues a melody with three recurrent nets (models.phrase), one event at a
time, and puts voices under it.

A continuation, event by event from where the prime stops:
  1. rhythm (GRU) draws the next event: a note or a rest, and its length in 16ths;
  2. melody (LSTM) draws the note's pitch, given the notes before, its length and its place in
     the bar;
  3. chords (LSTM) draws the chord of every beat the event has reached, given the chords before
     and the melody of the beat before, among the chords that hold the melody's note at the beat.
The melody leads and the chords follow it, as a chorale's harmony follows its tune: drawn first,
a chord leaves the melody (which learnt that a note on the beat is nearly always a tone of its
chord) only leaps between its tones (51% of the moves stepwise in 2-bar continuations of the JSB
test sopranos, against Bach's 83%; `bench/bench_phrase.py`). The melody net learnt with the chord
as an input where it was known and without it (folk tunes, and a chorale's chord hidden one time
in five); it continues without it.
Each draw is the numba kernel bridge.phrase_kernels.draw_tokens: temperature, top-p, the soprano's
range and the key for pitches, and a repetition guard (`repeat_limit`). The prime primes the
nets first: its events give rhythm and melody their state in one call each; its chords are
named from its voices where they are given, else each beat's likeliest chord under the chord net
that holds the melody's note at the beat.

The voices under the whole melody come from `settings.harmonizer`: a model that fills (default
`coconet`, given the prime's known voices), or `chords` for a plain voicing of the drawn chords.

The engine writes melodies; it does not fill in a given score (no FILL), so `harmonize` and the
live note and phrase modes ask another engine; `generate` (`bachbridge generate`, `continue`,
the live respond mode) is what it is for. Knobs: `temperature`, `top_p`, `repeat_limit`, `key`,
`voice_ranges` (the soprano's bounds the melody), `harmonizer`, `seed`, and the harmonizer's own.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from bridge import keys
from bridge.engines import CONTINUE, SOPRANO, Engine, hold_through_short_rests, load_engine, octave_shift_into_range
from bridge.errors import BadInput
from bridge.phrase_kernels import draw_tokens
from bridge.score import REST, Score
from bridge.settings import Settings
from models import FILLING_MODELS
from models import phrase_data as pd
from models.phrase_data import Line

NETS = ("rhythm", "chords", "melody")
CHORD_VOICING = "chords"
# what `settings.harmonizer` may name
HARMONIZERS = (*FILLING_MODELS, CHORD_VOICING)
# the last melody tokens the repetition guard looks at (it reads the last `repeat_limit` of them)
HISTORY = 16


class PhraseEngine(Engine):

    receptive_radius = None
    capabilities = frozenset({CONTINUE})
    knobs = frozenset({"temperature", "top_p", "repeat_limit", "key", "voice_ranges", "harmonizer", "seed",
                       "steps", "pmax", "pmin", "alpha", "candidates", "parallel_penalty"})

    def __init__(self, model):
        super().__init__(model)
        configs = json.loads(model.metadata["configs"])
        self.inputs = {name: next(i.shape[2] for i in model.session.get_inputs() if i.name == f"{name}_x")
                       for name in NETS}
        self.state_shapes = {name: (2 if c["cell"] == "lstm" else 1, c["layers"], c["hidden"])
                             for name, c in configs.items()}
        self._harmonizers: dict[str, Engine] = {}

    # ---- the nets ---------------------------------------------------------------------------------

    def initial_state(self, name: str) -> np.ndarray:
        parts, layers, hidden = self.state_shapes[name]
        return np.zeros((parts, layers, 1, hidden), dtype=np.float32)

    def run(self, name: str, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One net over (1, T, I) inputs from `state` -> (T, tokens) logits and the state after."""
        feeds = {}
        for other in NETS:
            if other == name:
                feeds[f"{other}_x"], feeds[f"{other}_state"] = x, state
            else:   # the graph holds all three; the others get one empty step
                feeds[f"{other}_x"] = np.zeros((1, 1, self.inputs[other]), dtype=np.float32)
                feeds[f"{other}_state"] = self.initial_state(other)
        outputs = dict(zip(self.model.output_names, self.model.run(feeds)))
        return outputs[f"{name}_logits"][0], outputs[f"{name}_state_out"]

    # ---- generate: the prime's melody continued, voices under it ---------------------------------

    def _fill_many(self, scores, knowns, settings, open_end):
        raise BadInput("the phrase engine continues melodies; it does not fill in a score "
                       "(harmonize with coconet, rnnrbm or biaxial)")

    def warm_up(self, settings: Settings | None = None) -> None:
        """The nets and the draw once; the harmonizer `settings` name loaded and warmed too."""
        settings = (settings or Settings(harmonizer=CHORD_VOICING)).replace(seed=0)
        prime = np.full((8, 4), REST, dtype=np.int16)
        prime[:, SOPRANO] = 72
        known = np.zeros(prime.shape, dtype=bool)
        known[:, SOPRANO] = True
        self.generate(Score.of(prime), known, 16, settings)

    def generate(self, prime: np.ndarray | Score, prime_known: np.ndarray, steps: int, settings: Settings) -> Score:
        """The prime's soprano (its known cells) continued by `steps` 16ths of new melody, on the
        prime's meter; the prime's known cells kept exactly, every other cell drawn."""
        prime = prime if isinstance(prime, Score) else Score.of(np.asarray(prime, dtype=np.int16).reshape(-1, 4))
        prime_known = np.asarray(prime_known, dtype=bool).reshape(prime.pitches.shape)
        rng = np.random.default_rng(settings.seed)
        bar, downbeat = prime.meter
        soprano = np.where(prime_known[:, SOPRANO], prime.pitches[:, SOPRANO], REST)
        prime_line = pd.line_of(soprano, prime.onsets[:, SOPRANO] & prime_known[:, SOPRANO], bar, downbeat)
        lower_known = prime_known[:, 1:].all() and len(prime) > 0
        given_chords = pd.beat_chords(np.where(prime_known, prime.pitches, REST)) if lower_known else None
        # the nets' register: whole octaves that put the prime in the soprano's range (chords do not move)
        low, high = settings.voice_ranges[SOPRANO]
        shift = octave_shift_into_range(soprano, low, high)
        line, chords = self.continue_line(prime_line.transposed(shift), len(prime), steps, settings, rng, given_chords)
        melody = np.full(len(prime) + steps, REST, dtype=np.int16)
        onsets = np.zeros(len(melody), dtype=bool)
        for pitch, onset, length in zip(line.pitch, line.onset, line.length):
            if pitch >= 0:
                melody[onset:onset + length] = pitch - shift
                onsets[onset] = True
        melody[:len(prime)] = soprano
        onsets[:len(prime)] = prime.onsets[:, SOPRANO] & prime_known[:, SOPRANO]
        return self._voices(prime, prime_known, Score.melody(melody, onsets, prime.meter), chords, settings)

    def continue_line(self, prime: Line, prime_steps: int, steps: int, settings: Settings,
                      rng: np.random.Generator, given_chords: np.ndarray | None = None) -> tuple[Line, np.ndarray]:
        """(the prime's events followed by the new ones, up to prime_steps + steps; the chord token
        of every beat) in the nets' register."""
        bar, downbeat = prime.bar, prime.downbeat
        end = prime_steps + steps
        beats = -(-end // pd.BEAT)
        chords = np.full(beats, pd.NO_CHORD, dtype=np.int64)
        pitch, onset, length = list(prime.pitch), list(prime.onset), list(prime.length)
        allowed_pitches = self._melody_pitches(prime, settings)
        row = {name: np.zeros((1, 1, self.inputs[name]), dtype=np.float32) for name in NETS}
        logits_out = {}

        # prime rhythm and melody, each in one call over the prime's events
        rhythm_state, melody_state = self.initial_state("rhythm"), self.initial_state("melody")
        last_token, last_pitch = -1, -1
        prime_beats = -(-prime_steps // pd.BEAT)
        chords_state, chord_beats = self._prime_chords(prime, prime_beats, given_chords, chords)
        if len(prime.pitch):
            inputs, targets = pd.rhythm_sequence(prime)
            _, rhythm_state = self.run("rhythm", inputs[None], rhythm_state)
            last_token = int(targets[-1])
            inputs, _ = pd.melody_sequence(prime, with_chords=False)
            if len(inputs):
                _, melody_state = self.run("melody", inputs[None], melody_state)
                last_pitch = int(prime.pitch[prime.pitch >= 0][-1])
        history = np.full((1, HISTORY), -1, dtype=np.int64)
        sounded = [pd.melody_token(p) for p in prime.pitch if p >= 0][-HISTORY:]
        if sounded:
            history[0, -len(sounded):] = sounded
        uniform = np.empty(1)
        token = np.empty(1, dtype=np.int64)
        all_allowed = {"rhythm": np.ones((1, pd.RHYTHM_TOKENS), dtype=bool)}
        no_history = np.full((1, 1), -1, dtype=np.int64)
        t = prime_steps if not len(onset) else max(prime_steps, onset[-1] + length[-1])
        # after a prime that ends in silence (a call waiting for its answer) the first event is a note
        notes_only = np.zeros((1, pd.RHYTHM_TOKENS), dtype=bool)
        notes_only[0, :pd.MAX_LENGTH] = True
        first_rhythm = notes_only if len(pitch) and pitch[-1] < 0 else all_allowed["rhythm"]

        def draw(name, logits, allowed, hist, repeat_limit):
            uniform[0] = rng.random()
            draw_tokens(logits[-1:].astype(np.float32), allowed, hist, settings.temperature, settings.top_p,
                        repeat_limit, uniform, token)
            return int(token[0])

        while t < end:
            position = (t - downbeat) % bar
            pd.rhythm_input(row["rhythm"][0, 0], last_token, position, bar)
            logits_out["rhythm"], rhythm_state = self.run("rhythm", row["rhythm"], rhythm_state)
            last_token = draw("rhythm", logits_out["rhythm"], first_rhythm, no_history, 0)
            first_rhythm = all_allowed["rhythm"]
            is_rest, event_length = pd.token_rest_length(last_token)
            event_length = min(event_length, end - t)
            note = REST
            if not is_rest:
                pd.melody_input(row["melody"][0, 0], last_pitch, event_length, position, bar, -1)
                logits_out["melody"], melody_state = self.run("melody", row["melody"], melody_state)
                note = pd.MELODY_LOW + draw("melody", logits_out["melody"], allowed_pitches, history,
                                            settings.repeat_limit)
                history[0, :-1] = history[0, 1:]
                history[0, -1] = note - pd.MELODY_LOW
                last_pitch = note
            pitch.append(note)
            onset.append(t)
            length.append(event_length)
            t += event_length
            # the chord of every beat whose first 16th this event has reached, holding its note
            while chord_beats * pd.BEAT < t:
                b = chord_beats
                line = Line(np.array(pitch), np.array(onset), np.array(length), bar, downbeat)
                classes = pd.beat_melody_classes(line, b)[b - 1] if b else np.zeros(12, dtype=np.float32)
                beat = ((b * pd.BEAT - downbeat) % bar) // pd.BEAT
                pd.chord_input(row["chords"][0, 0], int(chords[b - 1]) if b else -1, classes, beat, bar)
                logits_out["chords"], chords_state = self.run("chords", row["chords"], chords_state)
                sounding = _pitch_at_beats(line, b + 1)[b]
                chords[b] = draw("chords", logits_out["chords"], _holding(sounding), no_history, 0)
                chord_beats += 1
        line = Line(np.array(pitch, dtype=np.int64), np.array(onset, dtype=np.int64),
                    np.array(length, dtype=np.int64), bar, downbeat)
        return line, chords

    def _prime_chords(self, prime: Line, prime_beats: int, given: np.ndarray | None,
                      chords: np.ndarray) -> tuple[np.ndarray, int]:
        """Steps the chord net through the prime's beats, writing their chords into `chords`:
        the given ones, else each beat's likeliest chord that holds the melody's note at the
        beat (any chord where none sounds). -> (the chord net's state, beats done)."""
        state = self.initial_state("chords")
        if prime_beats == 0:
            return state, 0
        classes = pd.beat_melody_classes(prime, prime_beats)
        if given is not None:
            chords[:prime_beats] = given[:prime_beats]
            line = Line(prime.pitch, prime.onset, prime.length, prime.bar, prime.downbeat, chords[:prime_beats])
            inputs, _ = pd.chord_sequence(line)
            _, state = self.run("chords", inputs[None], state)
            return state, prime_beats
        row = np.zeros((1, 1, self.inputs["chords"]), dtype=np.float32)
        at_beat = _pitch_at_beats(prime, prime_beats)
        for b in range(prime_beats):
            beat = ((b * pd.BEAT - prime.downbeat) % prime.bar) // pd.BEAT
            pd.chord_input(row[0, 0], int(chords[b - 1]) if b else -1, classes[b - 1] if b else np.zeros(12), beat,
                           prime.bar)
            logits, state = self.run("chords", row, state)
            chords[b] = int(np.argmax(np.where(_holding(at_beat[b])[0], logits[-1], -np.inf)))
        return state, prime_beats

    def _melody_pitches(self, prime: Line, settings: Settings) -> np.ndarray:
        """(1, MELODY_TOKENS) bool: the pitches the melody may take: inside the soprano's range, in
        the key when one is set (`auto`: the prime's)."""
        low, high = settings.voice_ranges[SOPRANO]
        midi = pd.MELODY_LOW + np.arange(pd.MELODY_TOKENS)
        allowed = (midi >= low) & (midi <= high)
        scale = None
        if settings.key not in ("off", "auto"):
            scale = keys.scale_pitch_classes(*keys.parse_key(settings.key))
        elif settings.key == "auto" and (prime.pitch >= 0).any():
            notes = prime.pitch >= 0
            scale = keys.scale_pitch_classes(*keys.estimate_key(prime.pitch[notes], prime.length[notes]))
        if scale is not None:
            allowed &= np.isin(midi % 12, scale)
        return allowed[None, :]

    # ---- the voices under the melody ---------------------------------------------------------------

    def harmonizer(self, name: str) -> Engine:
        """The engine that fills the voices under a phrase, loaded once."""
        if name not in self._harmonizers:
            engine = load_engine(name)
            if "fill" not in engine.capabilities:
                raise BadInput(f"harmonizer {name!r} cannot fill in voices under a melody")
            self._harmonizers[name] = engine
        return self._harmonizers[name]

    def _voices(self, prime: Score, prime_known: np.ndarray, melody: Score, chords: np.ndarray,
                settings: Settings) -> Score:
        steps = len(melody)
        soprano = np.array(melody.pitches[:, 0])
        pitches = np.full((steps, 4), REST, dtype=np.int16)
        onsets = np.zeros((steps, 4), dtype=bool)
        pitches[:len(prime)] = np.where(prime_known, prime.pitches, REST)
        onsets[:len(prime)] = prime.onsets & prime_known
        known = np.zeros((steps, 4), dtype=bool)
        known[:len(prime)] = prime_known
        if settings.harmonizer == CHORD_VOICING:
            voiced = voice_chords(soprano, chords, settings.voice_ranges)
            free = ~known
            pitches[free] = voiced[free]
            pitches[:, SOPRANO], onsets[:, SOPRANO] = soprano, melody.onsets[:, 0]
            return Score.of(pitches, onsets, meter=prime.meter)
        held = hold_through_short_rests(soprano)
        pitches[:, SOPRANO] = held
        onsets[:, SOPRANO] = melody.onsets[:, 0]
        known[:, SOPRANO] = True
        known[held < 0] = True
        pitches[held < 0] = REST
        filled = self.harmonizer(settings.harmonizer).fill(Score.of(pitches, onsets, meter=prime.meter), known, settings)
        pitches, onsets = np.array(filled.pitches), np.array(filled.onsets)
        pitches[:, SOPRANO], onsets[:, SOPRANO] = soprano, melody.onsets[:, 0]
        return Score.of(pitches, onsets, meter=prime.meter)

    # ---- likelihood ---------------------------------------------------------------------------------

    def evaluate(self, data: Path, split: str, limit: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
        """Held-out negative log-likelihood per event (nats) of each net on the sopranos of a JSB
        16th split (Coconet's npz), beside an order-3 Markov chain over the same tokens trained
        on the file's train split in this run."""
        from models.data import load_jsb16

        lines = pd.jsb_lines(load_jsb16(data, split)[:limit])
        if not lines:
            raise ValueError("no chorales in the split")
        return sequence_figures(self, pd.jsb_lines(load_jsb16(data, "train")), lines, progress)


def sequence_figures(engine: PhraseEngine, train: list[Line], test: list[Line],
                     progress: Callable[[int, int], None] | None = None, chords: bool = True) -> dict:
    """{net}_nll and {net}_markov3_nll per event on `test` (and the events counted), the
    Markov chains trained on `train`; `chords=False` for lines without chords (folk tunes)."""
    from models.ngram import MarkovChain

    makers = {"rhythm": pd.rhythm_sequence, "melody": lambda line: pd.melody_sequence(line, with_chords=chords)}
    if chords:
        makers["chords"] = pd.chord_sequence
    tokens = {"rhythm": pd.RHYTHM_TOKENS, "chords": pd.CHORD_TOKENS, "melody": pd.MELODY_TOKENS}
    figures: dict = {}
    for name, make in makers.items():
        baseline = MarkovChain(3, tokens[name]).fit(make(line)[1] for line in train)
        total, events = 0.0, 0
        for index, line in enumerate(test):
            inputs, targets = make(line)
            if not len(targets):
                continue
            logits, _ = engine.run(name, inputs[None], engine.initial_state(name))
            log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
            total -= float(log_probs[np.arange(len(targets)), targets].sum())
            events += len(targets)
            if progress is not None:
                progress(index + 1, len(test))
        markov_total, markov_events = baseline.nll(make(line)[1] for line in test)
        figures[f"{name}_nll"] = total / events
        figures[f"{name}_markov3_nll"] = markov_total / markov_events
        figures[f"{name}_events"] = events
    return figures


def _pitch_at_beats(line: Line, beats: int) -> np.ndarray:
    """(beats,) the melody's pitch sounding at each beat's first 16th (-1: a rest)."""
    at = np.full(beats, REST, dtype=np.int64)
    for pitch, onset, length in zip(line.pitch, line.onset, line.length):
        for b in range(-(-onset // pd.BEAT), min(beats, -(-(onset + length) // pd.BEAT))):
            at[b] = pitch
    return at


def _holding(pitch: int) -> np.ndarray:
    """(1, CHORD_TOKENS) bool: the chords that hold `pitch` (every chord but none when it is a rest)."""
    if pitch < 0:
        return np.ones((1, pd.CHORD_TOKENS), dtype=bool)
    return _CHORDS_HOLDING[pitch % 12][None, :]


_CHORDS_HOLDING = np.array([[pc in pd.chord_tones(c) for c in range(pd.CHORD_TOKENS)] for pc in range(12)])


def voice_chords(soprano: np.ndarray, chords: np.ndarray, ranges) -> np.ndarray:
    """(T, 4) a plain voicing of a chord per beat under a (T,) soprano: the bass on the root
    (nearest the last bass), alto and tenor on the chord's other tones below the soprano, each
    nearest its last pitch; every voice rests where the soprano rests for a beat or more."""
    steps = len(soprano)
    voiced = np.full((steps, 4), REST, dtype=np.int16)
    voiced[:, SOPRANO] = soprano
    held = hold_through_short_rests(soprano)
    last = [None, (ranges[1][0] + ranges[1][1]) // 2, (ranges[2][0] + ranges[2][1]) // 2,
            (ranges[3][0] + ranges[3][1]) // 2]
    for b in range(-(-steps // pd.BEAT)):
        span = slice(b * pd.BEAT, min(steps, (b + 1) * pd.BEAT))
        top = held[span]
        if b >= len(chords) or chords[b] == pd.NO_CHORD or (top < 0).all():
            continue
        tones = pd.chord_tones(int(chords[b]))
        ceiling = int(top[top >= 0].min())
        row = {}
        for voice, choices in ((3, tones[:1]), (1, tones), (2, tones)):
            low, high = ranges[voice]
            high = min(high, ceiling - 1 if voice != 2 else row.get(1, ceiling) - 1)
            # a tone no voice above sings yet, else any chord tone
            taken = {p % 12 for p in row.values()} | {ceiling % 12}
            candidates = [p for p in range(low, high + 1) if p % 12 in choices and p % 12 not in taken] or \
                         [p for p in range(low, high + 1) if p % 12 in tones]
            if candidates:
                row[voice] = min(candidates, key=lambda p: abs(p - last[voice]))
                last[voice] = row[voice]
        for voice, pitch in row.items():
            voiced[span, voice] = np.where(top >= 0, pitch, REST)
    return voiced
