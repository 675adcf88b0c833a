"""Bi-axial LSTM engine (Johnson 2017): a time stack of LSTMs run at every pitch with the same
weights, then a note stack along the pitches; each 16th's notes drawn pitch by pitch.

Through the roll from its first row: onnxruntime runs the time stack (the notes of the row
before in, every pitch's output and the next states out; a run of given rows in one call), and
at each row with an unknown cell the numba kernel (bridge/biaxial_kernels.py) runs the note axis
down from the top pitch, drawing each pitch's (play, articulate) before the next:

- a given cell is clamped: its pitch plays, struck at the score's onsets (a repeated melody
  note is struck again); when the soprano is given, every pitch above it is clamped off (the
  melody is the top voice), and so is every pitch outside the unknown voices' ranges, and
  outside the key when `--key` is set;
- the free notes drawn go to the unknown voices by pitch order, as the RNN-RBM's do (highest
  first, the lowest to the lowest voice), struck where the model drew articulate (and wherever a
  voice comes to a new pitch); the row as it will sound is what the next step reads.

The model is the same at every pitch (no absolute pitch among its inputs), so it needs no key of
its own: a melody in any key gets its harmony in that key (Engine.fill moves it by whole octaves
only, into the soprano's range). Its beat input counts 16ths from the score's first row. The JSB
16th data never strikes a held pitch again, so the shipped model seldom does; one trained on
music that does (a MIDI folder) has those strikes written as separate notes.

A row whose draw leaves an unknown voice without a note is drawn again (up to VOICING_DRAWS
times): what is kept is a draw from the model given that every voice sounds. With `candidates`
above 1, that many draws, the likeliest of the full ones. When not one draw holds a free note,
the pitch the note axis was likeliest to play in the one kept is struck: a melody note never
sounds bare while a free pitch is allowed. Johnson's adaptive conservativity
steers the rows between: P(play) is raised to a power that falls a little after each row whose
first draw left a voice out and climbs back toward 1 after each full one.

The parallel penalty (on unless `parallel_penalty` is 0) counts a draw whose voices make
consecutive fifths or octaves with the row before as not yet full, within the same VOICING_DRAWS,
and the fewest win; with `candidates`, the likeliest less `parallel_penalty` nats a parallel.

Knobs: `temperature` (each play and articulate drawn from sigmoid(logit / temperature); 0: the
likelier), `candidates`, `parallel_penalty`, `key`, `voice_ranges`, `seed`. The Gibbs schedule
does not apply.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np

from bridge import biaxial_kernels
from bridge.engines import (ARTICULATE, CONTINUE, FILL, PREDICT_MELODY, RANK, REST, SOPRANO, Engine, Stream,
                             assign_by_pitch_order, consecutive_perfects)
from bridge.errors import BadInput
from bridge.score import Score, pitch_changes
from bridge.settings import Settings
from models.data import voices_to_notes

VOICES = 4
# a row is drawn again until every voice sounds, this many times at most, this many at once
# (side by side): see BiaxialEngine.draw_row
VOICING_DRAWS = 8
DRAWS_AT_ONCE = 2
# adaptive conservativity (adapted_conservativity) never plays more eagerly than P(play) ** this
CONSERVATIVITY_FLOOR = 0.5
# draws of each step for the frame accuracy (its spread over the test split is then under 0.002)
ACCURACY_DRAWS = 4
NOTE_WEIGHTS = ("note0_w_ih", "note0_w_hh", "note0_b", "note1_w_ih", "note1_w_hh", "note1_b", "out_w", "out_b")


class NoteStack:
    """The note axis's weights (NOTE_WEIGHTS, as the ONNX file carries them) and what the engine
    asks of it, in bridge.biaxial_kernels: the first layer's input from the time outputs for all
    pitches at once, then the rest along the pitches."""

    def __init__(self, weights: dict, downward: bool = True):
        w = {name: np.ascontiguousarray(weights[name], dtype=np.float64) for name in NOTE_WEIGHTS}
        width = w["note0_w_ih"].shape[1] - 2                       # the time stack's output size
        self.time_in = np.ascontiguousarray(w["note0_w_ih"][:, :width].T)   # (Ht, 4N1)
        self.bias0 = w["note0_b"]
        self.kernel_weights = (np.ascontiguousarray(w["note0_w_ih"][:, width:]), w["note0_w_hh"], w["note1_w_ih"],
                               w["note1_w_hh"], w["note1_b"], w["out_w"], w["out_b"])
        self.downward = downward

    def gates(self, time_out: np.ndarray) -> np.ndarray:
        """(S, P, Ht) time outputs -> (S, P, 4N1) the first note layer's pre-activations."""
        time_out = np.ascontiguousarray(time_out, dtype=np.float64)
        gates = np.empty((*time_out.shape[:2], len(self.bias0)))
        biaxial_kernels.input_gates(time_out, self.time_in, self.bias0, gates)
        return gates

    def sample(self, time_out: np.ndarray, clamp_play: np.ndarray, clamp_articulate: np.ndarray,
               uniforms: np.ndarray, temperature: float, conservativity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(B, P, Ht) time outputs (or (1, P, Ht) for B draws of one row), (B, P) clamps, (B, P, 2)
        uniforms -> the notes (B, P, 2) drawn pitch by pitch (P(play) ** conservativity), and
        their logits."""
        gates = self.gates(time_out)
        if len(gates) != len(uniforms):
            gates = np.ascontiguousarray(np.repeat(gates, len(uniforms), axis=0))
        notes = np.zeros(uniforms.shape)
        logits = np.empty(uniforms.shape)
        biaxial_kernels.sample_step(gates, clamp_play, clamp_articulate, uniforms, float(temperature),
                                    float(conservativity), self.downward, *self.kernel_weights, notes, logits)
        return notes, logits

    def logits(self, time_out: np.ndarray, notes: np.ndarray) -> np.ndarray:
        """(S, P, Ht) time outputs and (S, P, 2) given notes -> (S, P, 2) float32 logits, each
        pitch given the notes before it on the axis."""
        logits = np.empty(notes.shape, dtype=np.float64)
        biaxial_kernels.given_logits(self.gates(time_out), np.ascontiguousarray(notes, dtype=np.float64),
                                     self.downward, *self.kernel_weights, logits)
        return logits.astype(np.float32)


def adapted_conservativity(conservativity: float, full: bool) -> float:
    """Johnson's adaptive conservativity (his main.py), from row to row: a row whose first draw
    left a voice without a note lowers it (P(play) ** c with c < 1 plays more), a full one lets it
    back toward 1; never below CONSERVATIVITY_FLOOR."""
    if full:
        return conservativity + (1.0 - conservativity) * 0.3
    return max(min(conservativity, 1.0) - 0.02, CONSERVATIVITY_FLOOR)


class BiaxialEngine(Engine):

    receptive_radius = None  # recurrent: the whole roll before a cell matters
    knobs = frozenset({"temperature", "candidates", "parallel_penalty", "key", "voice_ranges", "seed"})
    capabilities = frozenset({FILL, CONTINUE, ARTICULATE, PREDICT_MELODY, RANK})

    def __init__(self, model):
        super().__init__(model)
        self.time_layers = model.meta_int("time_layers")
        self.state_width = model.meta_int("state_width")
        self.downward = bool(model.meta_int("downward"))
        if not self.downward:  # the top note comes last on an upward axis: no cheap melody prediction
            self.capabilities = self.capabilities - {PREDICT_MELODY}
        # a quarter-note model (trained on the pickle's frames, play only) only evaluates there
        self.step_16ths = int(model.metadata.get("step_16ths", 1))
        self.articulation = bool(int(model.metadata.get("articulation", 1)))
        hidden, cell = self.zero_states(1)
        outputs = dict(zip(model.output_names, model.run({"notes": np.zeros((1, 1, self.num_pitches, 2), np.float32),
                                                          "step": np.zeros((1, 1), np.int64), "hidden": hidden,
                                                          "cell": cell})))
        # the note stack's weights are outputs of the step graph; they do not change: read once
        self.note_stack = NoteStack(outputs, self.downward)

    def zero_states(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        shape = (self.time_layers, batch * self.num_pitches, self.state_width)
        return np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)

    def time_steps(self, notes: np.ndarray, first: int, hidden: np.ndarray, cell: np.ndarray):
        """(T, P, 2) the notes of the row before each of T rows, the 16th of the first of them, the
        states -> (T, P, Ht) float64 time outputs and the states after the last."""
        steps = np.arange(first, first + len(notes), dtype=np.int64)[None]
        time_out, hidden, cell = self.model.session.run(
            ["time_out", "next_hidden", "next_cell"],
            {"notes": np.asarray(notes, dtype=np.float32)[None], "step": steps, "hidden": hidden, "cell": cell})
        return time_out[0].astype(np.float64), hidden, cell

    # ---- inpainting ---------------------------------------------------------------------------

    def _fill(self, score: Score, known: np.ndarray, settings: Settings, open_end: bool) -> Score:
        # recurrent: a row depends only on the rows before it, so an open end changes nothing
        out, known = self.given_cells(score.pitches, known)
        if known.all():
            return score
        struck = np.array(score.onsets) & known
        allowed = self.free_pitches(out, known, settings)
        stepper = Stepper(self, settings)
        draw_rows(stepper, out, struck, known, allowed)
        return Score.of(out, struck)

    def _fill_many(self, scores: list[Score], knowns: list[np.ndarray], settings: Settings,
                   open_end: bool) -> list[Score]:
        """Scores that share every row but the last, all given (the live bridge's speculation:
        one window, several next melody notes), read that past once and draw their last rows
        each from it, as `_fill` would one by one; others one by one."""
        shared = len(scores) > 1 and all(
            len(score) == len(scores[0]) and len(score) > 1 and np.asarray(known)[:-1].all()
            and np.array_equal(score.pitches[:-1], scores[0].pitches[:-1])
            and np.array_equal(score.onsets[:-1], scores[0].onsets[:-1]) for score, known in zip(scores, knowns))
        if not shared:
            return [self._fill(score, known, settings, open_end) for score, known in zip(scores, knowns)]
        past = Stepper(self, settings)
        past.read(np.array(scores[0].pitches[:-1]), np.array(scores[0].onsets[:-1]))
        filled = []
        for score, known in zip(scores, knowns):
            known = np.asarray(known, dtype=bool)
            out, struck = np.array(score.pitches), np.array(score.onsets) & known
            if not known[-1].all():
                stepper = copy.copy(past)   # its arrays are replaced, never written into
                stepper.rng = np.random.default_rng(settings.seed)
                out[-1], struck[-1] = stepper.draw(out[-1], struck[-1], known[-1],
                                                   self.free_pitches(out, known, settings))
            filled.append(Score.of(out, struck))
        return filled

    def stream(self, settings: Settings) -> "BiaxialStream":
        return BiaxialStream(self, settings)

    def draw_row(self, time_out: np.ndarray, clamp_play: np.ndarray, clamp_articulate: np.ndarray, wanted: int,
                 settings: Settings, conservativity: float, rng: np.random.Generator,
                 parallels: Callable[[np.ndarray], int] | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """Model pitches of the free notes drawn at one row, (P,) whether each pitch was drawn
        struck, and whether the first draw gave every voice a note.

        Independent-looking choices along the pitch axis often leave a voice out (more so at a
        low temperature, which sharpens each one), so a draw that gives fewer than `wanted`
        notes is drawn again, DRAWS_AT_ONCE at a time side by side, up to VOICING_DRAWS: the
        first full one is a draw from the model (at this `conservativity`) given that every
        voice sounds (else the fullest is kept). `parallels` (free notes -> consecutive fifths
        and octaves they make with the row before) makes a draw with any count as not full
        while others may be drawn, and the fewest win among the full ones. With `candidates`
        above 1, that many draws, the likeliest full one, less `parallel_penalty` nats a
        parallel."""
        if settings.candidates > 1:
            notes, logits = self._draws(time_out, clamp_play, clamp_articulate, int(settings.candidates), settings,
                                        conservativity, rng)
            return (*self._choose(notes, logits, clamp_play, wanted, parallels, settings.parallel_penalty),
                    bool(self._free(notes[:1], clamp_play).sum() >= wanted))
        tried_notes, tried_logits = [], []
        while sum(len(n) for n in tried_notes) < VOICING_DRAWS:
            notes, logits = self._draws(time_out, clamp_play, clamp_articulate, DRAWS_AT_ONCE, settings,
                                        conservativity, rng)
            tried_notes.append(notes)
            tried_logits.append(logits)
            free = self._free(notes, clamp_play)
            if any(free[d].sum() >= wanted and (parallels is None or parallels(np.flatnonzero(free[d])) == 0)
                   for d in range(len(notes))):
                break
        first_full = self._free(tried_notes[0][:1], clamp_play).sum() >= wanted
        return (*self._choose(np.concatenate(tried_notes), np.concatenate(tried_logits), clamp_play, wanted,
                              parallels, None), bool(first_full))

    def _draws(self, time_out, clamp_play, clamp_articulate, count: int, settings: Settings, conservativity: float,
               rng):
        p = self.num_pitches
        return self.note_stack.sample(time_out, np.repeat(clamp_play[None], count, 0),
                                      np.repeat(clamp_articulate[None], count, 0), rng.random((count, p, 2)),
                                      settings.temperature, conservativity)

    @staticmethod
    def _free(notes: np.ndarray, clamp_play: np.ndarray) -> np.ndarray:
        """(D, P) the free pitches each of D draws plays."""
        return (notes[:, :, 0] > 0.5) & (clamp_play != 1)[None]

    @staticmethod
    def _choose(notes: np.ndarray, logits: np.ndarray, clamp_play: np.ndarray, wanted: int,
                parallels: Callable[[np.ndarray], int] | None,
                penalty: float | None) -> tuple[np.ndarray, np.ndarray]:
        """The free notes of the draw kept: a full one (every voice a note) before any other, of
        those the fewest parallels (`parallels`), then one with just the voices wanted before one
        with more (the middle ones are dropped), else the fullest; the first of equals, or, with
        a `penalty`, the likeliest less `penalty` nats a parallel. When every draw was empty,
        the kept one's likeliest free pitch, so that a voice sounds."""
        free = BiaxialEngine._free(notes, clamp_play)
        counts = free.sum(axis=1)
        best, best_key = 0, None
        for d in range(len(notes)):
            count = parallels(np.flatnonzero(free[d])) if parallels is not None else 0
            if penalty is None:
                key = (counts[d] >= wanted, -count, counts[d] == wanted, min(counts[d], wanted), -d)
            else:
                score = biaxial_kernels.log_likelihood(logits[d:d + 1], notes[d:d + 1], True) - penalty * count
                key = (counts[d] >= wanted, counts[d] == wanted, min(counts[d], wanted), score)
            if best_key is None or key > best_key:
                best, best_key = d, key
        drawn, articulated = np.flatnonzero(free[best]), notes[best, :, 1] > 0.5
        if drawn.size == 0 and wanted > 0 and (clamp_play < 0).any():
            # no draw held a free note: the melody note would sound bare. The one the note
            # axis was likeliest to play in the draw kept (given silence above it) is struck.
            open_pitches = np.flatnonzero(clamp_play < 0)
            drawn = open_pitches[[int(np.argmax(logits[best, open_pitches, 0]))]]
            articulated[drawn] = True
        return drawn, articulated

    def notes_of(self, rows: np.ndarray, struck: np.ndarray) -> np.ndarray:
        """(T, P, 2) play and articulate of (T, 4) rows of MIDI pitches struck at `struck` (the
        model's pitches only)."""
        return voices_to_notes(rows, self.min_pitch, self.num_pitches, struck)

    def rows_notes(self, out: np.ndarray, struck: np.ndarray, first: int, last: int) -> np.ndarray:
        """(last - first, P, 2) notes of rows first..last-1 as they sound (row -1: silence before the start)."""
        notes = self.notes_of(out[max(first, 0):last], struck[max(first, 0):last])
        silence = np.zeros((max(-first, 0), self.num_pitches, 2), dtype=np.float32)
        return np.concatenate([silence, notes])

    def clamps(self, row: np.ndarray, struck: np.ndarray, known: np.ndarray,
               allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P,) int8 clamps of play and articulate of one row: the given cells on (struck at their
        onsets), the pitches above a given soprano and those not `allowed` off."""
        clamp_play = np.where(allowed, -1, 0).astype(np.int8)
        clamp_articulate = np.full(self.num_pitches, -1, dtype=np.int8)
        for v in range(VOICES):
            index = int(row[v]) - self.min_pitch
            if known[v] and row[v] >= 0 and 0 <= index < self.num_pitches:
                clamp_play[index] = 1
                clamp_articulate[index] = 1 if struck[v] else 0
        if known[SOPRANO] and row[SOPRANO] >= 0:
            top = int(row[SOPRANO]) - self.min_pitch
            clamp_play[max(top + 1, 0):] = 0
        return clamp_play, clamp_articulate

    def top_note_probabilities(self, roll: np.ndarray, known: np.ndarray, settings: Settings) -> np.ndarray:
        """(P,) the probability that each model pitch is the top note drawn at the last row, given
        the rows before it (the last row's own cells left to the draw), exactly: the note axis
        runs from the top down, so it is P(p plays | nothing above plays) times P(nothing above p
        plays), read off one pass with nothing played; clamped pitches as inpaint clamps them."""
        given, known = self.given_cells(roll, known)
        previous = self.rows_notes(given, pitch_changes(given), -1, len(given) - 1)
        time_out, _, _ = self.time_steps(previous, 0, *self.zero_states(1))
        silent = np.zeros((1, self.num_pitches, 2))
        logits = self.note_stack.logits(time_out[-1:], silent)[0, :, 0].astype(np.float64)
        temperature = max(float(settings.temperature), 1e-6)
        play = 1.0 / (1.0 + np.exp(-logits / temperature))
        play[~self.free_pitches(given, known, settings)] = 0.0
        none_above = np.concatenate([np.cumprod((1.0 - play)[::-1])[::-1][1:], [1.0]])
        return play * none_above

    def _melody_candidates(self, roll: np.ndarray, known: np.ndarray, settings: Settings, count: int) -> list[int]:
        """The likeliest top notes (in the soprano's range) of the last row (top_note_probabilities;
        ties: the lower pitch). Only with the note axis from the top down; else none."""
        roll = np.asarray(roll)
        if len(roll) == 0 or count <= 0 or not self.downward:
            return []
        top = self.top_note_probabilities(roll, known, settings)
        low, high = settings.voice_ranges[SOPRANO]
        midi = self.min_pitch + np.arange(self.num_pitches)
        order = sorted((i for i in range(self.num_pitches) if low <= midi[i] <= high), key=lambda i: (-top[i], i))
        return [int(midi[i]) for i in order[:count]]

    def warm_up(self, settings: Settings | None = None) -> None:
        super().warm_up(settings)
        width = self.note_stack.time_in.shape[0]
        self.note_stack.logits(np.zeros((1, self.num_pitches, width)), np.zeros((1, self.num_pitches, 2)))

    # ---- evaluation ------------------------------------------------------------------------

    def evaluate(self, data: Path, split: str, limit: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
        """Log-likelihood per step (exact: the note axis factorizes a step) and Bay et al.'s frame
        accuracy (the expected TP / (TP + FP + FN) between the true pitches and a step drawn from
        the model at temperature 1, pitch by pitch down the note axis, given the true steps
        before it; ACCURACY_DRAWS draws a step), of a 16th model on the JSB 16th split
        (Jsb16thSeparated.npz, play and articulate scored) or of a quarter-note model on the
        quarter-note pickle (Boulanger-Lewandowski's frames, play scored: the RNN-RBM's figures)."""
        from models import data as corpus

        on_frames = Path(data).suffix == ".pkl"
        if on_frames != (self.step_16ths == 4):
            raise BadInput(f"this model steps in {'quarter notes' if self.step_16ths == 4 else '16ths'}: evaluate it on "
                           f"{'the quarter-note pickle' if self.step_16ths == 4 else corpus.JSB_16TH_NPZ}", data)
        if on_frames:
            chorales = corpus.load_jsb_quarter(data, split)[:limit]
            pitch_lists = [[p for frame in c for p in frame] for c in chorales]
            notes_of = lambda c: corpus.frames_to_notes(c, self.min_pitch, self.num_pitches)  # noqa: E731
        else:
            chorales = corpus.load_jsb16(data, split)[:limit]
            pitch_lists = [c[c >= 0] for c in chorales]
            notes_of = lambda c: corpus.voices_to_notes(c, self.min_pitch, self.num_pitches)  # noqa: E731
        if not chorales:
            raise ValueError("no chorales in the split")
        highest = self.min_pitch + self.num_pitches - 1
        outside = sum(int(np.sum((np.asarray(p) < self.min_pitch) | (np.asarray(p) > highest))) for p in pitch_lists)
        rng = np.random.default_rng(0)
        total, steps, accuracy = 0.0, 0, 0.0
        for index, chorale in enumerate(chorales):
            notes = notes_of(chorale)
            log_likelihood, time_out = self.sequence_log_likelihood(notes)
            total += log_likelihood
            steps += len(notes)
            accuracy += self.frame_accuracy(time_out, notes, rng)
            if progress:
                progress(index + 1, len(chorales))
        return {"chorales": len(chorales), "steps": steps, "log_likelihood": total / steps,
                "accuracy": accuracy / steps, "notes_outside_range": outside}

    def sequence_log_likelihood(self, notes: np.ndarray) -> tuple[float, np.ndarray]:
        """(log p of (T, P, 2) notes from silence, exact; the time stack's outputs)."""
        previous = np.concatenate([np.zeros((1, self.num_pitches, 2), dtype=np.float32), notes[:-1]])
        time_out, _, _ = self.time_steps(previous, 0, *self.zero_states(1))
        logits = self.note_stack.logits(time_out, notes).astype(np.float64)
        return float(biaxial_kernels.log_likelihood(logits, notes.astype(np.float64), self.articulation)), time_out

    def _log_likelihoods(self, views: list[Score], known: np.ndarray) -> list[float]:
        # the known cells weigh the same in every filling but for what the unknown ones change in
        # how likely they are: the whole piece's likelihood ranks the fillings
        return [self.sequence_log_likelihood(self.notes_of(np.asarray(view.pitches), np.asarray(view.onsets)))[0]
                for view in views]

    def frame_accuracy(self, time_out: np.ndarray, notes: np.ndarray, rng: np.random.Generator) -> float:
        """Sum over the T steps of the mean over ACCURACY_DRAWS draws of TP / (TP + FP + FN)
        between the true pitches played and the drawn ones (a step with neither counts 1)."""
        free = np.full((len(notes), self.num_pitches), -1, dtype=np.int8)
        true = notes[..., 0] > 0.5
        total = 0.0
        for _ in range(ACCURACY_DRAWS):
            drawn, _ = self.note_stack.sample(time_out, free, free, rng.random((*free.shape, 2)), 1.0)
            drawn = drawn[..., 0] > 0.5
            tp = (drawn & true).sum(axis=1)
            wrong = (drawn ^ true).sum(axis=1)
            total += float(np.where(tp + wrong > 0, tp / np.maximum(tp + wrong, 1), 1.0).sum())
        return total / ACCURACY_DRAWS


class Stepper:
    """The model run through a score row by row in its own register, the time stack's state kept
    between calls: `read` rows given whole, `draw` a row's unknown cells. What `_fill` and
    BiaxialStream share; one seeded generator and one adaptive conservativity for the piece."""

    def __init__(self, engine: BiaxialEngine, settings: Settings):
        if engine.step_16ths != 1:
            raise BadInput("a quarter-note model only evaluates (on the quarter-note pickle); "
                           "harmonize with a 16th model", engine.model.path)
        self.engine, self.settings = engine, settings
        self.hidden, self.cell = engine.zero_states(1)
        self.rng = np.random.default_rng(settings.seed)
        self.conservativity = 1.0
        self.previous = np.zeros((engine.num_pitches, 2), dtype=np.float32)  # the notes of the last row
        self.last = np.full(VOICES, REST, dtype=np.int16)                    # its pitches
        self.last_struck = np.zeros(VOICES, dtype=bool)                      # and onsets
        self.step = 0

    def read(self, rows: np.ndarray, struck: np.ndarray) -> None:
        """(T, 4) given rows and their onsets: the time stack steps over them in one call."""
        self._step_over(rows, struck)

    def _step_over(self, rows: np.ndarray, struck: np.ndarray, then_one_more: bool = False) -> np.ndarray | None:
        """The time stack over `rows` (and, `then_one_more`, the row after them: its output is
        returned, for drawing it), in one call."""
        engine = self.engine
        notes = engine.notes_of(rows, struck)
        inputs = np.concatenate([self.previous[None], notes if then_one_more else notes[:-1]])
        time_out, self.hidden, self.cell = engine.time_steps(inputs, self.step, self.hidden, self.cell)
        if len(rows):
            self.previous, self.last, self.last_struck = notes[-1], np.array(rows[-1], dtype=np.int16), np.array(struck[-1])
        self.step += len(rows)
        return time_out[-1:] if then_one_more else None

    def revise_last(self, row: np.ndarray) -> None:
        """The last row's pitches as they really sounded: what the next row reads (the time
        stack's state holds the rows before it only). A voice whose pitch changed strikes it."""
        row = np.array(row, dtype=np.int16)
        struck = np.where(row == self.last, self.last_struck, row >= 0)
        self.previous = self.engine.notes_of(row[None], struck[None])[0]
        self.last, self.last_struck = row, struck

    def draw(self, row: np.ndarray, struck: np.ndarray, known: np.ndarray, allowed: np.ndarray,
             given_before: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One row with unknown cells -> (4,) pitches and onsets, its known cells kept, its
        unknown ones drawn; `given_before` (rows, onsets) are read first, in the same call."""
        engine = self.engine
        rows, rows_struck = given_before if given_before is not None else (np.zeros((0, VOICES), np.int16),
                                                                            np.zeros((0, VOICES), bool))
        time_out = self._step_over(rows, rows_struck, then_one_more=True)
        row, struck = np.array(row, dtype=np.int16), np.array(struck, dtype=bool)
        unknown_voices = [v for v in range(VOICES) if not known[v]]
        parallels = self._parallels(row, known, unknown_voices) if self.settings.parallel_penalty > 0 else None
        drawn, articulated, first_full = engine.draw_row(time_out, *engine.clamps(row, struck, known, allowed),
                                                         len(unknown_voices), self.settings, self.conservativity,
                                                         self.rng, parallels)
        self.conservativity = adapted_conservativity(self.conservativity, first_full)
        row[unknown_voices] = REST
        struck[unknown_voices] = False
        free_notes = sorted((int(i) + engine.min_pitch for i in drawn), reverse=True)
        for v, pitch in assign_by_pitch_order(free_notes, unknown_voices).items():
            row[v] = pitch
            # a voice coming to a new pitch strikes it whatever the model said
            struck[v] = articulated[pitch - engine.min_pitch] or self.last[v] != pitch
        self.previous = engine.notes_of(row[None], struck[None])[0]
        self.last, self.last_struck = row, struck
        self.step += 1
        return row, struck

    def _parallels(self, row: np.ndarray, known: np.ndarray, unknown_voices: list[int]) -> Callable[[np.ndarray], int]:
        """free notes (model pitches) -> the consecutive fifths and octaves the row they make
        (given cells and the free notes by pitch order) forms with the row before."""
        given = {v: int(row[v]) for v in range(VOICES) if known[v]}
        last, lowest = self.last, self.engine.min_pitch

        def parallels(free: np.ndarray) -> int:
            voicing = dict(given)
            voicing.update(assign_by_pitch_order(sorted((int(i) + lowest for i in free), reverse=True), unknown_voices))
            return consecutive_perfects(last, voicing)
        return parallels


def draw_rows(stepper: Stepper, pitches: np.ndarray, onsets: np.ndarray, known: np.ndarray, allowed: np.ndarray) -> None:
    """Through (T, 4) rows in place: each unknown cell drawn, each run of given rows read in the
    same time-stack call as the row after it."""
    complete = known.all(axis=1)
    t = 0
    while t < len(pitches):
        end = t
        while end < len(pitches) and complete[end]:
            end += 1
        if end == len(pitches):
            stepper.read(pitches[t:end], onsets[t:end])
            return
        pitches[end], onsets[end] = stepper.draw(pitches[end], onsets[end], known[end], allowed,
                                                 (pitches[t:end], onsets[t:end]))
        t = end + 1


class BiaxialStream(Stream):
    """Stream with the time stack's state kept: each `feed` or `extend` costs what its own rows
    cost, however long the piece. The register is fixed by the first melody note it is given
    (whole octaves into the soprano's range, as Engine.fill moves it)."""

    def __init__(self, engine: BiaxialEngine, settings: Settings):
        super().__init__(engine, settings)
        self.shift: int | None = None
        self.view_settings = settings
        self.stepper = Stepper(engine, settings)

    def _view(self, score: Score, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows' pitches and onsets in the model's register; a voice whose first row differs
        from the last row before strikes it."""
        if self.shift is None and (known[:, SOPRANO] & (score.pitches[:, SOPRANO] >= 0)).any():
            view, self.shift, self.view_settings = self.engine._model_view(score, known, self.settings)
        else:
            view = self.engine._model_view(score, known, self.settings, self.shift or 0)[0]
        pitches, onsets = np.array(view.pitches), np.array(view.onsets)
        if len(pitches):
            onsets[0] |= (pitches[0] >= 0) & (pitches[0] != self.stepper.last)
        return pitches, onsets

    def feed(self, score: Score) -> None:
        if len(score) == 0:
            return
        self.stepper.read(*self._view(score, np.ones(score.pitches.shape, dtype=bool)))
        self.score = self.score.appended(score)

    def revise_last(self, row: Score) -> None:
        pitches, _ = self._view(row, np.ones(row.pitches.shape, dtype=bool))
        self.stepper.revise_last(pitches[0])
        super().revise_last(row)

    def extend(self, steps: int, given: Score | None = None, known: np.ndarray | None = None) -> Score:
        given, known = self._rows(steps, given, known)
        pitches, onsets = self._view(given, known)
        allowed = self.engine.free_pitches(pitches, known, self.view_settings)
        draw_rows(self.stepper, pitches, onsets, known, allowed)
        rows = self.engine._user_view(Score.of(pitches, onsets, held_in=True), given, known, self.shift or 0)
        self.score = self.score.appended(rows)
        return rows
