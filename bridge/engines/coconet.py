"""Coconet engine: annealed block Gibbs sampling over an orderless inpainting network.

Each Gibbs step masks a share of the free cells (Yao et al.'s annealed schedule), asks the
network for every masked cell's pitch distribution given all the others, and redraws the masked
cells from it. Several chains (`candidates`) run side by side in one batch; the likeliest under
the model wins. The network runs in onnxruntime; everything between its calls is a numba kernel.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from bridge import kernels, keys
from bridge.engines import REST, SOPRANO, Engine
from bridge.errors import BadInput
from bridge.settings import Settings

# blocks of the candidates' pseudo-likelihood: each free cell is masked in exactly one of them
SCORE_BLOCKS = 4
# unknown steps shown after an open-ended roll (see _sample): a beat
OPEN_END_STEPS = 4


class CoconetEngine(Engine):

    def __init__(self, model):
        super().__init__(model)
        self.num_voices = model.meta_int("num_voices")
        self.receptive_radius = model.meta_int("receptive_radius")

    def log_probs(self, pitches: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(K, T, V) pitch indices and mask -> (K, T, V, P) log-probabilities."""
        return self.model.run({"pitches": pitches, "mask": mask})[0]

    def allowed(self, roll: np.ndarray, settings: Settings) -> np.ndarray:
        """(V, P) pitches each voice may take: its range, and the key's scale when one is set."""
        scale = None
        if settings.key == "auto":
            melody = roll[:, SOPRANO]
            scale = keys.scale_pitch_classes(*keys.estimate_key(melody[melody >= 0]))
        elif settings.key != "off":
            scale = keys.scale_pitch_classes(*keys.parse_key(settings.key))
        return kernels.allowed_pitches(settings.voice_ranges, scale, self.min_pitch, self.num_pitches)

    def inpaint(self, roll: np.ndarray, known: np.ndarray, settings: Settings, open_end: bool = False) -> np.ndarray:
        return self.inpaint_many([roll], [known], settings, open_end)[0]

    def inpaint_many(self, rolls: list[np.ndarray], knowns: list[np.ndarray], settings: Settings,
                     open_end: bool = False) -> list[np.ndarray]:
        """Rolls of one length, and one set of allowed pitches, run as one batch (rolls x
        candidates chains); anything else one by one."""
        rolls = [np.asarray(roll) for roll in rolls]
        knowns = [np.asarray(known, dtype=bool) for known in knowns]
        for roll, known in zip(rolls, knowns):
            if roll.ndim != 2 or roll.shape[1] != self.num_voices or known.shape != roll.shape:
                raise BadInput(f"roll and known must both be (T, {self.num_voices}), not {roll.shape} and {known.shape}")
            given = known & (roll >= 0)
            lowest, highest = self.min_pitch, self.min_pitch + self.num_pitches - 1
            if np.any(given & ((roll < lowest) | (roll > highest))):
                raise BadInput(f"given notes must lie in MIDI {lowest}..{highest} for this model")
        if not rolls:
            return []
        allowed = [self.allowed(roll, settings) for roll in rolls] if settings.key == "auto" else \
            [self.allowed(rolls[0], settings)] * len(rolls)
        if len(rolls) > 1 and (len({roll.shape for roll in rolls}) > 1
                               or any(not np.array_equal(a, allowed[0]) for a in allowed[1:])):
            return [self._sample([roll], [known], a, settings, open_end)[0]
                    for roll, known, a in zip(rolls, knowns, allowed)]
        return self._sample(rolls, knowns, allowed[0], settings, open_end)

    def _sample(self, rolls: list[np.ndarray], knowns: list[np.ndarray], allowed: np.ndarray,
                settings: Settings, open_end: bool) -> list[np.ndarray]:
        """N rolls of one shape, K = candidates chains each: annealed block Gibbs, or, when the free
        cells all lie in one step, ancestral sampling of that step.

        One step's few cells are drawn top voice first, each from the network's distribution given
        the voices above it (one call per voice): an exact draw from the chronological
        factorization the network was trained on, where a couple of Gibbs steps would draw the
        voices nearly independently of each other. With `open_end` the music goes on after the last
        step: unknown steps are appended (the network was trained with the future masked, never
        with silence after the present), seen by the network, never drawn nor returned."""
        length, voices = rolls[0].shape
        if length == 0:
            return [roll.astype(np.int16) for roll in rolls]
        n, k = len(rolls), settings.candidates
        future = min(OPEN_END_STEPS, self.receptive_radius) if open_end else 0
        rng = np.random.default_rng(settings.seed)
        roll = np.stack(rolls)                                   # (N, T, V)
        known = np.stack(knowns)
        given = known & (roll >= 0)
        pitches = np.full((n * k, length + future, voices), REST, dtype=np.int64)
        pitches[:, :length] = np.repeat(np.where(given, roll.astype(np.int64) - self.min_pitch, REST), k, axis=0)
        free = np.zeros(pitches.shape, dtype=bool)               # the cells to draw: (N*K, T+F, V)
        free[:, :length] = np.repeat(~known, k, axis=0)
        draw = np.empty(pitches.shape, dtype=np.float32)         # the cells drawn this time
        unknown = np.empty(pitches.shape, dtype=np.float32)      # what the network is told is unknown
        uniforms = np.empty(pitches.shape, dtype=np.float64)

        def drawn_from_the_network(cells: np.ndarray, unknown_cells: np.ndarray | None = None) -> None:
            """Draw `cells` from the network told that `unknown_cells` (default: those) are unknown."""
            draw[...] = cells
            unknown[...] = draw if unknown_cells is None else unknown_cells
            unknown[:, length:] = 1.0
            log_probs = self.log_probs(pitches, unknown)
            rng.random(out=uniforms)
            kernels.sample_masked(log_probs, draw, allowed, settings.temperature, uniforms, pitches,
                                  settings.parallel_penalty)

        steps_with_free = np.flatnonzero(free.any(axis=(0, 2)))
        if len(steps_with_free) == 1:
            step = steps_with_free[0]
            for voice in range(voices):
                if free[:, step, voice].any():
                    this_voice = np.zeros_like(free)
                    this_voice[:, step, voice] = free[:, step, voice]
                    unknown_below = free.copy()
                    unknown_below[:, step, :voice] = False      # this voice and those under it unknown
                    drawn_from_the_network(this_voice, unknown_below)
        else:
            # step 0 draws every free cell given only the known ones; then annealed block Gibbs
            cells = free.astype(np.float32)
            for gibbs_step in range(settings.steps):
                if gibbs_step > 0:
                    share = kernels.yao_mask_prob(gibbs_step, settings.steps, settings.pmax, settings.pmin,
                                                  settings.alpha)
                    rng.random(out=uniforms)
                    kernels.choose_resample_cells(free, share, uniforms, cells)
                drawn_from_the_network(cells)

        pitches = pitches[:, :length]
        free = free[:, :length]
        out = []
        for i in range(n):
            chains = slice(i * k, (i + 1) * k)
            best = i * k + (self.likeliest_chain(pitches[chains], free[chains], rng) if k > 1 else 0)
            result = np.where(pitches[best] >= 0, pitches[best] + self.min_pitch, REST).astype(np.int16)
            result[known[i]] = roll[i][known[i]]
            out.append(result)
        return out

    def melody_candidates(self, roll: np.ndarray, known: np.ndarray, settings: Settings, count: int) -> list[int]:
        # one network call: the last step's soprano distribution, every unknown cell masked, and
        # the future unknown (see _sample)
        future = min(OPEN_END_STEPS, self.receptive_radius)
        given = known & (roll >= 0)
        pitches = np.full((1, len(roll) + future, self.num_voices), REST, dtype=np.int64)
        pitches[0, :len(roll)] = np.where(given, roll.astype(np.int64) - self.min_pitch, REST)
        mask = np.ones(pitches.shape, dtype=np.float32)
        mask[0, :len(roll)] = ~known
        log_probs = self.log_probs(pitches, mask)[0, len(roll) - 1, SOPRANO]
        low, high = settings.voice_ranges[SOPRANO]  # a melody may leave the key: the range only
        midi = self.min_pitch + np.arange(self.num_pitches)
        log_probs = np.where((midi >= low) & (midi <= high), log_probs, -np.inf)
        likeliest = np.argsort(-log_probs)[:count]
        return [int(i) + self.min_pitch for i in likeliest if np.isfinite(log_probs[i])]

    def likeliest_chain(self, pitches: np.ndarray, free: np.ndarray, rng: np.random.Generator) -> int:
        """Index of the chain with the highest blocked pseudo-log-likelihood of its free cells."""
        block_of_cell = rng.integers(SCORE_BLOCKS, size=pitches.shape[1:])
        score = np.zeros(pitches.shape[0], dtype=np.float64)
        block_score = np.empty_like(score)
        for block in range(SCORE_BLOCKS):
            mask = (free & (block_of_cell == block)).astype(np.float32)
            kernels.masked_log_likelihood(self.log_probs(pitches, mask), pitches, mask, block_score)
            score += block_score
        return int(np.argmax(score))

    # ---- evaluation ------------------------------------------------------------------------

    def evaluate(self, data: Path, split: str, limit: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
        """Note-wise NLL in chronological order and the masked loss at a fixed 50% mask.

        Note-wise: the mean over every sounding (step, voice) of -log p(x[t,v] | all earlier
        steps' voices and the voices above v at step t), reading the softmax with that cell and
        everything after it masked. The network sees only `receptive_radius` steps each side, so
        each query runs on that window of the chorale alone: exactly the full-length answer, at a
        fraction of the cost.
        """
        from models.data import fixed_fraction_mask, load_jsb16, to_indices

        chorales = [to_indices(c) for c in load_jsb16(data, split)][:limit]
        note_nll, note_count, masked_nll, masked_count = 0.0, 0, 0.0, 0
        for index, chorale in enumerate(chorales):
            total, count = self.chronological_nll(chorale)
            note_nll, note_count = note_nll + total, note_count + count
            pitches = chorale[None].astype(np.int64)
            mask = fixed_fraction_mask(pitches.shape, 0.5, seed=index)
            weight = mask[0] * (chorale >= 0)
            picked = np.take_along_axis(self.log_probs(pitches, mask)[0],
                                        np.maximum(chorale, 0)[..., None], axis=-1)[..., 0]
            masked_nll -= float(np.sum(picked * weight))
            masked_count += int(weight.sum())
            if progress:
                progress(index + 1, len(chorales))
        return {
            "chorales": len(chorales),
            "notes": note_count,
            "notewise_nll": note_nll / max(note_count, 1),
            "masked50_nll": masked_nll / max(masked_count, 1),
        }

    def chronological_nll(self, chorale: np.ndarray, batch: int = 256) -> tuple[float, int]:
        """Summed note-wise NLL of one chorale (pitch indices, -1 = rest) and its note count."""
        steps, voices = chorale.shape
        radius = self.receptive_radius
        queries = [(t, v) for t in range(steps) for v in range(voices) if chorale[t, v] >= 0]
        # windows of equal extent share a batch: interior ones are all 2*radius+1 long
        by_extent: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for t, v in queries:
            extent = (max(0, t - radius) - t, min(steps, t + radius + 1) - t)
            by_extent.setdefault(extent, []).append((t, v))
        total = 0.0
        for (before, after), group in by_extent.items():
            length = after - before
            for start in range(0, len(group), batch):
                chunk = group[start:start + batch]
                pitches = np.empty((len(chunk), length, voices), dtype=np.int64)
                mask = np.zeros((len(chunk), length, voices), dtype=np.float32)
                for row, (t, v) in enumerate(chunk):
                    pitches[row] = chorale[t + before:t + after]
                    mask[row, -before, v:] = 1.0
                    mask[row, -before + 1:] = 1.0
                log_probs = self.log_probs(pitches, mask)
                for row, (t, v) in enumerate(chunk):
                    total -= float(log_probs[row, -before, v, chorale[t, v]])
        return total, len(queries)
