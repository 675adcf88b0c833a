"""RNN-RBM engine (Boulanger-Lewandowski, Bengio, Vincent 2012): an RNN over frames sets the
biases of an RBM over the notes of each frame; a k-step block Gibbs chain in that RBM draws the
frame, with the given notes clamped on.

From the 16th grid to the model's frames (one frame = `steps_per_frame` 16ths, a quarter note):

- Frames start at the first row that has an unknown cell and every `steps_per_frame` rows before
  and after it. Offline (harmonize, generate) that is the first note, on the beat; live, the
  bridge asks about its last row only, so the frames end at the present note and the past is
  read a quarter note at a time back from it. A frame is what sounds at its first row (its
  "reference row"), as Boulanger-Lewandowski's data samples the chorales on each beat: a melody
  note that starts inside a beat (a passing note) is heard by the frame it falls in only through
  the frame's harmony, which holds for the whole frame.
- A frame with an unknown cell is sampled: the reference row's given notes clamped on; when the
  soprano is given, every pitch above it clamped off (the chain fills in the notes below); pitches
  outside the unknown voices' ranges, and outside the key when `--key` is set, clamped off. The
  free notes drawn go to the unknown voices by pitch order, highest first and the lowest to the
  lowest voice; fewer notes than voices leave the middle voices silent, more notes than voices
  drop the ones between. A draw with no free note at all gets the free note the RBM finds
  likeliest given the clamped ones (its exact conditional), so a melody note is never left bare
  while a free pitch is allowed. Every unknown cell of the frame's rows takes its voice's pitch.
- The training pieces were all moved to C (Boulanger-Lewandowski's data): the engine's
  `register_shift` moves the given notes to C (the key of `--key`, else the melody's estimated
  key) and by octaves to the data's register; Engine.fill moves them, and the result back.

Knobs: `temperature` (the chain cools from 1 to it over its k steps, metadata `gibbs_steps`),
`candidates` (chains per frame; the one with the lowest free energy wins), `parallel_penalty`
(the RBM knows chords, not voices: with it on, at least PENALTY_CHAINS chains per frame, scored
by free energy plus the penalty per consecutive fifth or octave with the frame before), `key`,
`voice_ranges`, `seed`. The coconet schedule (steps, pmax, pmin, alpha) does not apply.
The network (one recurrent step per frame) runs in onnxruntime; the chains are numba kernels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from bridge import keys, rbm_kernels
from bridge.engines import FILL, PREDICT_MELODY, REST, SOPRANO, Engine, assign_by_pitch_order, consecutive_perfects
from bridge.score import Score
from bridge.settings import Settings

VOICES = 4
# evaluation: AIS chains and temperatures per frame, and independent AIS runs (seeds) whose spread
# is reported; frame accuracy from one chain per frame: burn-in, then a draw every THIN steps
EVAL_AIS_CHAINS = 16
EVAL_AIS_TEMPERATURES = 200
EVAL_SEEDS = 3
EVAL_BURN_IN, EVAL_SAMPLES, EVAL_THIN = 50, 20, 5
# melody_candidates: chains whose top notes are counted
CANDIDATE_CHAINS = 32
# chains per frame when the parallel penalty is on (at least; `candidates` if more)
PENALTY_CHAINS = 8


class RnnRbmEngine(Engine):

    receptive_radius = None  # recurrent: the whole roll matters
    capabilities = frozenset({FILL, PREDICT_MELODY})
    knobs = frozenset({"temperature", "candidates", "parallel_penalty", "key", "voice_ranges", "seed"})

    def __init__(self, model):
        super().__init__(model)
        self.max_pitch = self.min_pitch + self.num_pitches - 1
        self.num_recurrent = model.meta_int("recurrent")
        self.num_hidden = model.meta_int("hidden")
        self.steps_per_frame = model.meta_int("steps_per_frame")
        self.gibbs_steps = model.meta_int("gibbs_steps")
        self.tonic = model.meta_int("tonic")
        self.soprano_median = float(model.metadata["soprano_median"])
        notes = np.zeros((1, self.num_pitches), dtype=np.float32)
        state = np.zeros((1, self.num_recurrent), dtype=np.float32)
        # the RBM's weights are an output of the step graph; they do not change, so read them once
        self.weights = np.ascontiguousarray(model.run({"notes": notes, "state": state})[3], dtype=np.float64)

    def step(self, notes: np.ndarray, state: np.ndarray):
        """(B, P) previous frames' notes, (B, U) states -> next states, (B, P) visible and (B, H)
        hidden biases (float64) of the frames that follow."""
        state, visible_bias, hidden_bias = self.model.session.run(
            ["next_state", "visible_bias", "hidden_bias"], {"notes": notes, "state": state})
        return state, visible_bias.astype(np.float64), hidden_bias.astype(np.float64)

    # ---- from the user's pitches to the model's -----------------------------------------------

    def register_shift(self, roll: np.ndarray, known: np.ndarray, settings: Settings, octaves: int) -> int:
        """Semitones to add to MIDI pitches to put them where the training data was: tonic on
        the data's (C), the melody's median near the data's top-voice median."""
        given = known & (roll >= 0)
        melody = roll[given[:, SOPRANO], SOPRANO]
        notes = melody if melody.size else roll[given]
        if settings.key not in ("off", "auto"):
            tonic = keys.parse_key(settings.key)[0]
        elif notes.size:
            tonic = keys.estimate_key(notes)[0]
        else:
            tonic = self.tonic
        base = (self.tonic - tonic) % 12
        low, high = settings.voice_ranges[SOPRANO]
        register = float(np.median(notes)) if melody.size else (low + high) / 2
        # the octave of `base` nearest the data's register; ties to the lower
        return min((base + 12 * n for n in range(-10, 11)),
                   key=lambda s: (abs(register + s - self.soprano_median), s))

    def frame_notes(self, row: np.ndarray) -> np.ndarray:
        """(1, P) visible vector of a row of MIDI pitches (the model's pitches outside its range dropped)."""
        notes = np.zeros((1, self.num_pitches), dtype=np.float32)
        for pitch in row:
            index = int(pitch) - self.min_pitch
            if pitch >= 0 and 0 <= index < self.num_pitches:
                notes[0, index] = 1.0
        return notes

    # ---- inpainting ---------------------------------------------------------------------------

    def _fill(self, score: Score, known: np.ndarray, settings: Settings, open_end: bool) -> Score:
        # recurrent: a frame depends only on the frames before it, so an open end changes nothing
        out, known = self.given_cells(score.pitches, known)
        unknown_rows = np.flatnonzero(~known.all(axis=1))
        if unknown_rows.size == 0:
            return score
        steps, spf = len(out), self.steps_per_frame
        free_allowed = self.free_pitches(out, known, settings)
        rng = np.random.default_rng(settings.seed)
        notes = np.zeros((1, self.num_pitches), dtype=np.float32)
        state = np.zeros((1, self.num_recurrent), dtype=np.float32)
        for start in range(int(unknown_rows[0]) % spf, steps, spf):
            rows = slice(start, min(start + spf, steps))
            state, visible_bias, hidden_bias = self.step(notes, state)
            if not known[rows].all():
                self.sample_frame(out, known, start, rows, visible_bias, hidden_bias, free_allowed, settings, rng)
            notes = self.frame_notes(out[start])
        return score.replace(pitches=out)

    def sample_frame(self, out, known, start, rows, visible_bias, hidden_bias, free_allowed,
                     settings: Settings, rng: np.random.Generator) -> None:
        """Draw the frame whose reference row is `start` and write its unknown cells into `out`."""
        reference, reference_known = out[start], known[start]
        clamp = np.where(free_allowed, -1, 0).astype(np.int8)
        for v in range(VOICES):
            index = int(reference[v]) - self.min_pitch
            if reference_known[v] and reference[v] >= 0 and 0 <= index < self.num_pitches:
                clamp[index] = 1
        if reference_known[SOPRANO] and reference[SOPRANO] >= 0:
            top = int(reference[SOPRANO]) - self.min_pitch
            clamp[max(top + 1, 0):] = 0   # the melody is the top voice: nothing above it
        # the RBM knows chords, not voices: with the parallel penalty on, several chains are drawn
        # and the one whose voices make the fewest consecutive fifths and octaves with the frame
        # before wins (free energy + penalty nats per parallel)
        chains = max(settings.candidates, PENALTY_CHAINS if settings.parallel_penalty > 0 and start > 0 else 1)
        clamps = np.repeat(clamp[None], chains, axis=0)
        visible = np.zeros((chains, self.num_pitches), dtype=np.int8)
        visible_bias = np.repeat(visible_bias, chains, axis=0)
        hidden_bias = np.repeat(hidden_bias, chains, axis=0)
        temperatures = rbm_kernels.annealing_temperatures(self.gibbs_steps, settings.temperature)
        uniforms_hidden = rng.random((len(temperatures), chains, self.num_hidden))
        uniforms_visible = rng.random((len(temperatures), chains, self.num_pitches))
        rbm_kernels.gibbs_chains(self.weights, visible_bias, hidden_bias, clamps, visible, temperatures,
                                 uniforms_hidden, uniforms_visible)
        unknown_voices = [v for v in range(VOICES) if not reference_known[v]]
        # a draw with no free note would leave the melody note bare: it gets the likeliest one.
        # Not every draw to one note per voice: that took the bench's parallels over their bar
        # (0.75 -> 1.00 per 100 changes) and moved no other line across its own.
        rbm_kernels.complete_chords(self.weights, visible_bias, hidden_bias, clamps, visible,
                                    min(len(unknown_voices), 1))
        voicings = []
        for chain in visible:
            drawn = np.flatnonzero((chain == 1) & (clamp != 1))
            free_notes = sorted((int(i) + self.min_pitch for i in drawn), reverse=True)
            pitch_of_voice = {v: int(reference[v]) for v in range(VOICES) if reference_known[v]}
            pitch_of_voice.update(assign_by_pitch_order(free_notes, unknown_voices))
            voicings.append(pitch_of_voice)
        best = 0
        if chains > 1:
            score = np.empty(chains)
            rbm_kernels.free_energy(self.weights, visible_bias, hidden_bias, visible, score)
            if settings.parallel_penalty > 0 and start > 0:
                before = out[max(start - self.steps_per_frame, 0)]
                score += settings.parallel_penalty * np.array([consecutive_perfects(before, voicing)
                                                               for voicing in voicings])
            best = int(np.argmin(score))
        pitch_of_voice = voicings[best]
        for t in range(rows.start, rows.stop):
            for v in range(VOICES):
                if not known[t, v]:
                    out[t, v] = pitch_of_voice.get(v, REST)

    def _melody_candidates(self, roll: np.ndarray, known: np.ndarray, settings: Settings, count: int) -> list[int]:
        """The commonest top notes (in the soprano's range) of CANDIDATE_CHAINS draws from the
        RBM of the last row's frame, given the frames before it: the model's own distribution of
        the next melody note, estimated by sampling (ties: the lower pitch)."""
        given, known = self.given_cells(roll, known)
        steps, spf = len(given), self.steps_per_frame
        if steps == 0 or count <= 0:
            return []
        notes = np.zeros((1, self.num_pitches), dtype=np.float32)
        state = np.zeros((1, self.num_recurrent), dtype=np.float32)
        for start in range((steps - 1) % spf, steps, spf):
            state, visible_bias, hidden_bias = self.step(notes, state)
            notes = self.frame_notes(given[start])
        rng = np.random.default_rng(settings.seed)
        chains = CANDIDATE_CHAINS
        clamps = np.full((chains, self.num_pitches), -1, dtype=np.int8)
        visible = np.zeros((chains, self.num_pitches), dtype=np.int8)
        temperatures = np.ones(self.gibbs_steps)
        rbm_kernels.gibbs_chains(self.weights, np.repeat(visible_bias, chains, axis=0),
                                 np.repeat(hidden_bias, chains, axis=0), clamps, visible, temperatures,
                                 rng.random((self.gibbs_steps, chains, self.num_hidden)),
                                 rng.random((self.gibbs_steps, chains, self.num_pitches)))
        low, high = settings.voice_ranges[SOPRANO]
        tally: dict[int, int] = {}
        for chain in visible:
            sounding = np.flatnonzero(chain)
            if sounding.size:
                top = int(sounding[-1]) + self.min_pitch
                if low <= top <= high:
                    tally[top] = tally.get(top, 0) + 1
        return [p for p, _ in sorted(tally.items(), key=lambda item: (-item[1], item[0]))][:count]

    def warm_up(self, settings: Settings | None = None) -> None:
        super().warm_up(settings)
        energy = np.empty(1)
        rbm_kernels.free_energy(self.weights, np.zeros((1, self.num_pitches)), np.zeros((1, self.num_hidden)),
                                np.zeros((1, self.num_pitches), dtype=np.int8), energy)

    # ---- evaluation ------------------------------------------------------------------------

    def evaluate(self, data: Path, split: str, limit: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
        """Frame-level log-likelihood per time step and expected frame accuracy, on a piano-roll
        pickle (Boulanger-Lewandowski's JSB quarter-note data).

        log p(v_t | v_<t) = -F_t(v_t) - log Z_t, each Z_t by AIS (EVAL_AIS_CHAINS chains x
        EVAL_AIS_TEMPERATURES temperatures), repeated with EVAL_SEEDS seeds: the figure is their
        mean, the spread their standard deviation. Every time step of every chorale weighs the
        same, as the paper's evaluation notes ask. Accuracy: the expectation over the model's
        frame, given the true frames before it, of TP / (TP + FP + FN) (Bay et al. 2009),
        estimated with EVAL_SAMPLES draws per frame, averaged over frames.
        """
        from models.data import frames_to_roll, load_jsb_quarter

        chorales = load_jsb_quarter(data, split)[:limit]
        if not chorales:
            raise ValueError("no chorales in the split")
        outside = sum(1 for c in chorales for f in c for p in f if not self.min_pitch <= p <= self.max_pitch)
        betas = np.linspace(0.0, 1.0, EVAL_AIS_TEMPERATURES)
        log_likelihood = np.zeros(EVAL_SEEDS)
        accuracy, frames = 0.0, 0
        for index, chorale in enumerate(chorales):
            target = frames_to_roll(chorale, self.min_pitch, self.num_pitches)
            visible_bias, hidden_bias = self.sequence_biases(target)
            visible = target.astype(np.int8)
            energy = np.empty(len(target))
            rbm_kernels.free_energy(self.weights, visible_bias, hidden_bias, visible, energy)
            # seeds unique to (run, chorale, frame), so a --limit run repeats the full run's numbers
            frame_ids = np.arange(len(target), dtype=np.int64) + 1000 * index
            for run in range(EVAL_SEEDS):
                log_z = np.empty(len(target))
                rbm_kernels.ais_log_partition(self.weights, visible_bias, hidden_bias, betas, EVAL_AIS_CHAINS,
                                              frame_ids + 10_000_000 * run, log_z)
                log_likelihood[run] -= float(np.sum(energy + log_z))
            frame_accuracy = np.empty(len(target))
            rbm_kernels.expected_accuracy(self.weights, visible_bias, hidden_bias, visible, EVAL_BURN_IN,
                                          EVAL_SAMPLES, EVAL_THIN, frame_ids + 99_000_000, frame_accuracy)
            accuracy += float(frame_accuracy.sum())
            frames += len(target)
            if progress:
                progress(index + 1, len(chorales))
        per_step = log_likelihood / frames
        return {
            "chorales": len(chorales),
            "frames": frames,
            "log_likelihood": float(per_step.mean()),
            "log_likelihood_seed_std": float(per_step.std(ddof=1)) if EVAL_SEEDS > 1 else 0.0,
            "accuracy": accuracy / frames,
            "ais_chains": EVAL_AIS_CHAINS,
            "ais_temperatures": EVAL_AIS_TEMPERATURES,
            "ais_seeds": EVAL_SEEDS,
            "notes_outside_range": outside,
        }

    def sequence_biases(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, P) true frames -> (T, P) visible and (T, H) hidden biases, each frame's given the ones before."""
        notes = np.zeros((1, self.num_pitches), dtype=np.float32)
        state = np.zeros((1, self.num_recurrent), dtype=np.float32)
        visible_bias = np.empty((len(frames), self.num_pitches))
        hidden_bias = np.empty((len(frames), self.num_hidden))
        for t in range(len(frames)):
            state, visible_bias[t], hidden_bias[t] = self.step(notes, state)
            notes = frames[t:t + 1].astype(np.float32)
        return visible_bias, hidden_bias
