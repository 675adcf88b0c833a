"""Coconet engine: annealed block Gibbs sampling over an orderless inpainting network.

Each Gibbs step masks a share of the free cells (Yao et al.'s annealed schedule), asks the
network for every masked cell's pitch distribution given all the others, and redraws the masked
cells from it. Several chains (`candidates`) run side by side in one batch; the likeliest under
the model wins. The network runs in onnxruntime; everything between its calls is a numba kernel.

When the free cells all lie in one step (the live bridge's note mode) the voices are drawn top
down instead, each given the ones above: with one network call per voice, or, for a model with
voice heads (models/coconet.py), one call and then a small head per voice in numba.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from bridge import kernels, keys
from bridge.engines import FILL, PREDICT_MELODY, RANK, REST, SOPRANO, Engine
from bridge.errors import BadInput
from bridge.score import Score
from bridge.settings import Settings

# blocks of the candidates' pseudo-likelihood: each free cell is masked in exactly one of them
SCORE_BLOCKS = 4
# unknown steps shown after an open-ended roll (see _sample): a beat
OPEN_END_STEPS = 4
# the Gibbs steps that redraw at least this share of the free cells redraw every voice in whole
# 8th notes (see _sample)
EIGHTHS_WHILE_SHARE = 0.4
# graph outputs of a model with voice heads: the trunk's features, then the heads' weights
# (in the order bridge.kernels.voice_head_log_probs takes them; export_onnx.py writes them so)
FEATURES = "features"
# the graph input that asks for the log-probs of the steps from it on only (0: all); graphs
# exported before it had none
FROM_STEP = "from_step"
HEAD_WEIGHTS = ("in_proj", "bias", "interval", "upper_proj", "out")


class CoconetEngine(Engine):

    capabilities = frozenset({FILL, PREDICT_MELODY, RANK})

    def __init__(self, model):
        super().__init__(model)
        self.num_voices = model.meta_int("num_voices")
        self.receptive_radius = model.meta_int("receptive_radius")
        self.head_weights = None
        self._crops = FROM_STEP in {i.name for i in model.session.get_inputs()}
        if int(model.metadata.get("voice_heads", 0)):
            # constant outputs of the graph: read once
            empty = self._feeds(np.zeros((1, 1, self.num_voices), np.int64),
                                np.ones((1, 1, self.num_voices), np.float32))
            self.head_weights = tuple(np.ascontiguousarray(w) for w in model.session.run(list(HEAD_WEIGHTS), empty))
        self._allowed_cache: tuple | None = None

    def _feeds(self, pitches: np.ndarray, mask: np.ndarray, from_step: int = 0) -> dict:
        feeds = {"pitches": pitches, "mask": mask}
        if self._crops:
            feeds[FROM_STEP] = np.array(from_step, np.int64)
        return feeds

    def log_probs(self, pitches: np.ndarray, mask: np.ndarray, from_step: int = 0) -> np.ndarray:
        """(K, T, V) pitch indices and mask -> (K, T, V, P) log-probabilities; with `from_step`
        only the steps from it on, (K, T - from_step, V, P), computed in less time where the
        graph can (it then runs each layer only where those steps see)."""
        log_probs = self.model.session.run(["log_probs"], self._feeds(pitches, mask, from_step))[0]
        return log_probs if self._crops else log_probs[:, from_step:]

    def log_probs_and_features(self, pitches: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A model with voice heads: log-probabilities, and the trunk's features (K, C, T, P)."""
        return tuple(self.model.session.run(["log_probs", FEATURES], self._feeds(pitches, mask)))

    def allowed(self, roll: np.ndarray, settings: Settings) -> np.ndarray:
        """(V, P) pitches each voice may take: its range, and the key's scale when one is set."""
        if settings.key == "auto":
            melody = roll[:, SOPRANO]
            scale = keys.scale_pitch_classes(*keys.estimate_key(melody[melody >= 0]))
            return kernels.allowed_pitches(settings.voice_ranges, scale, self.min_pitch, self.num_pitches)
        # the same knobs every time (the live bridge asks at each note): remember the last answer
        cache_key = (settings.voice_ranges, settings.key)
        cached = self._allowed_cache
        if cached is None or cached[0] != cache_key:
            scale = keys.scale_pitch_classes(*keys.parse_key(settings.key)) if settings.key != "off" else None
            cached = (cache_key, kernels.allowed_pitches(settings.voice_ranges, scale, self.min_pitch, self.num_pitches))
            self._allowed_cache = cached
        return cached[1]

    def _fill_many(self, scores: list[Score], knowns: list[np.ndarray], settings: Settings,
                   open_end: bool) -> list[Score]:
        """Scores of one length, and one set of allowed pitches, run as one batch (scores x
        candidates chains); anything else one by one. The network knows no onsets: a filled-in
        voice strikes where its pitch changes."""
        rolls = [np.asarray(score.pitches) for score in scores]
        lowest, highest = self.min_pitch, self.min_pitch + self.num_pitches - 1
        for roll, known in zip(rolls, knowns):
            if np.any(known & (roll >= 0) & ((roll < lowest) | (roll > highest))):
                raise BadInput(f"given notes must lie in MIDI {lowest}..{highest} for this model")
        if not rolls:
            return []
        phases = [score.meter[1] % 2 for score in scores]
        allowed = [self.allowed(roll, settings) for roll in rolls] if settings.key == "auto" else \
            [self.allowed(rolls[0], settings)] * len(rolls)
        if len(rolls) > 1 and (len({roll.shape for roll in rolls}) > 1
                               or any(not np.array_equal(a, allowed[0]) for a in allowed[1:])):
            filled = [self._sample([roll], [known], a, settings, open_end, [phase])[0]
                      for roll, known, a, phase in zip(rolls, knowns, allowed, phases)]
        else:
            filled = self._sample(rolls, knowns, allowed[0], settings, open_end, phases)
        return [score.replace(pitches=result) for score, result in zip(scores, filled)]

    def _sample(self, rolls: list[np.ndarray], knowns: list[np.ndarray], allowed: np.ndarray,
                settings: Settings, open_end: bool, eighth_phases: list[int]) -> list[np.ndarray]:
        """N rolls of one shape, K = candidates chains each: annealed block Gibbs, or, when the free
        cells all lie in one step, ancestral sampling of that step.

        The Gibbs steps redraw whole 8th notes (the two 16ths from an even step after the roll's
        `eighth_phases` on, drawn as one pitch: kernels.tie_eighths) in the bass always, and in
        every voice while they redraw at least EIGHTHS_WHILE_SHARE of the cells; the upper voices'
        16ths come from the last, finer steps. Redrawn a 16th at a time, a passing note needs its
        two 16ths to change together, one draw at a time, which they rarely do: the bass then leaps
        from root to root and writes 16ths Bach almost never writes (README, "Musical figures").

        One step's few cells are drawn top voice first, each from the network's distribution given
        the voices above it: an exact draw from the chronological factorization the network was
        trained on, where a couple of Gibbs steps would draw the voices nearly independently of
        each other. One network call per voice; with voice heads, one call and a head per voice
        below the top one (`_draw_step_with_heads`). With `open_end` the music goes on after the
        last step: unknown steps are appended (the network was trained with the future masked,
        never with silence after the present), seen by the network, never drawn nor returned."""
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
        tie_next = np.zeros(pitches.shape, dtype=bool)           # drawn with the next step's, as one note
        phase = np.repeat(np.asarray(eighth_phases, dtype=np.int64), k)
        unknown = np.empty(pitches.shape, dtype=np.float32)      # what the network is told is unknown
        uniforms = np.empty(pitches.shape, dtype=np.float64)

        def drawn_from_the_network(cells: np.ndarray, unknown_cells: np.ndarray | None = None,
                                   from_step: int = 0, tied: np.ndarray | None = None) -> None:
            """Draw `cells` (none before `from_step`; `tied` as sample_masked's tie_next) from
            the network told that `unknown_cells` (default: those) are unknown."""
            draw[...] = cells
            unknown[...] = draw if unknown_cells is None else unknown_cells
            unknown[:, length:] = 1.0
            log_probs = self.log_probs(pitches, unknown, from_step)
            rng.random(out=uniforms)
            kernels.sample_masked(log_probs, draw, allowed, settings.temperature, uniforms, pitches,
                                  settings.parallel_penalty, tied)

        chain_scores = None  # log-likelihood of each chain's draw, where the draw gives it exactly
        steps_with_free = np.flatnonzero(free.any(axis=(0, 2)))
        first_voice = self._heads_first_voice(free[:, steps_with_free[0]]) if len(steps_with_free) == 1 else None
        if first_voice is not None:
            rng.random(out=uniforms)
            chain_scores = self._draw_step_with_heads(pitches, free, steps_with_free[0], first_voice, length,
                                                      allowed, settings, uniforms)
        elif len(steps_with_free) == 1:
            step = steps_with_free[0]
            for voice in range(voices):
                if free[:, step, voice].any():
                    this_voice = np.zeros_like(free)
                    this_voice[:, step, voice] = free[:, step, voice]
                    unknown_below = free.copy()
                    unknown_below[:, step, :voice] = False      # this voice and those under it unknown
                    drawn_from_the_network(this_voice, unknown_below, from_step=step)
        else:
            # step 0 draws every free cell given only the known ones; then annealed block Gibbs
            cells = free.astype(np.float32)
            every_voice = np.ones(voices, dtype=bool)
            bass = np.arange(voices) == voices - 1
            for gibbs_step in range(settings.steps):
                share = 1.0
                if gibbs_step > 0:
                    share = kernels.yao_mask_prob(gibbs_step, settings.steps, settings.pmax, settings.pmin,
                                                  settings.alpha)
                    rng.random(out=uniforms)
                    kernels.choose_resample_cells(free, share, uniforms, cells)
                kernels.tie_eighths(free, cells, phase, every_voice if share >= EIGHTHS_WHILE_SHARE else bass,
                                    tie_next)
                drawn_from_the_network(cells, tied=tie_next)

        pitches = pitches[:, :length]
        free = free[:, :length]
        out = []
        for i in range(n):
            chains = slice(i * k, (i + 1) * k)
            if k == 1:
                best = i * k
            elif chain_scores is not None:
                best = i * k + int(np.argmax(chain_scores[chains]))
            else:
                best = i * k + self.likeliest_chain(pitches[chains], free[chains], rng)
            result = np.where(pitches[best] >= 0, pitches[best] + self.min_pitch, REST).astype(np.int16)
            result[known[i]] = roll[i][known[i]]
            out.append(result)
        return out

    def _heads_first_voice(self, free_at_step: np.ndarray) -> int | None:
        """The top free voice when the voice heads can draw this step: the model has them, and in
        every chain the free voices are that one and all below it (free_at_step (K, V))."""
        if self.head_weights is None:
            return None
        pattern = free_at_step[0]
        first = int(np.argmax(pattern))
        if not pattern[first] or not pattern[first:].all() or not (free_at_step == pattern).all():
            return None
        return first

    def _draw_step_with_heads(self, pitches: np.ndarray, free: np.ndarray, step: int, first_voice: int,
                              length: int, allowed: np.ndarray, settings: Settings,
                              uniforms: np.ndarray) -> np.ndarray:
        """Draw voices first_voice.. of `step` top down, in place in `pitches` (K, T+F, V): one
        network call with them all unknown gives the top one; each below comes from its voice
        head, told the voices drawn above it. -> (K,) log-likelihood of each chain's draw."""
        mask = free.astype(np.float32)
        mask[:, length:] = 1.0
        log_probs, features = self.log_probs_and_features(pitches, mask)
        scores = np.empty(len(pitches), dtype=np.float64)
        kernels.draw_step_with_heads(log_probs, features, step, first_voice, *self.head_weights, allowed,
                                     settings.temperature, uniforms, pitches, settings.parallel_penalty, scores)
        return scores

    def _melody_candidates(self, roll: np.ndarray, known: np.ndarray, settings: Settings, count: int) -> list[int]:
        # one network call: the last step's soprano distribution, every unknown cell masked, and
        # the future unknown (see _sample)
        future = min(OPEN_END_STEPS, self.receptive_radius)
        given = known & (roll >= 0)
        pitches = np.full((1, len(roll) + future, self.num_voices), REST, dtype=np.int64)
        pitches[0, :len(roll)] = np.where(given, roll.astype(np.int64) - self.min_pitch, REST)
        mask = np.ones(pitches.shape, dtype=np.float32)
        mask[0, :len(roll)] = ~known
        log_probs = self.log_probs(pitches, mask, from_step=len(roll) - 1)[0, 0, SOPRANO]
        low, high = settings.voice_ranges[SOPRANO]  # a melody may leave the key: the range only
        midi = self.min_pitch + np.arange(self.num_pitches)
        log_probs = np.where((midi >= low) & (midi <= high), log_probs, -np.inf)
        likeliest = np.argsort(-log_probs)[:count]
        return [int(i) + self.min_pitch for i in likeliest if np.isfinite(log_probs[i])]

    def likeliest_chain(self, pitches: np.ndarray, free: np.ndarray, rng: np.random.Generator) -> int:
        """Index of the chain with the highest blocked pseudo-log-likelihood of its free cells."""
        return int(np.argmax(self.pseudo_log_likelihoods(pitches, free, rng)))

    def pseudo_log_likelihoods(self, pitches: np.ndarray, free: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(K,) blocked pseudo-log-likelihood of each chain's free cells: the cells split at random
        into SCORE_BLOCKS blocks (the same split for every chain), each block's cells read from
        the network with that block unknown."""
        block_of_cell = rng.integers(SCORE_BLOCKS, size=pitches.shape[1:])
        score = np.zeros(pitches.shape[0], dtype=np.float64)
        block_score = np.empty_like(score)
        for block in range(SCORE_BLOCKS):
            mask = (free & (block_of_cell == block)).astype(np.float32)
            kernels.masked_log_likelihood(self.log_probs(pitches, mask), pitches, mask, block_score)
            score += block_score
        return score

    def _log_likelihoods(self, views: list[Score], known: np.ndarray) -> list[float]:
        pitches = np.stack([np.where(view.pitches >= 0, view.pitches.astype(np.int64) - self.min_pitch, REST)
                            for view in views])
        free = np.broadcast_to(~known, pitches.shape)
        return list(self.pseudo_log_likelihoods(pitches, free, np.random.default_rng(0)))

    # ---- evaluation ------------------------------------------------------------------------

    def evaluate(self, data: Path, split: str, limit: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
        """Note-wise NLL in chronological order and the masked loss at a fixed 50% mask.

        Note-wise: the mean over every sounding (step, voice) of -log p(x[t,v] | all earlier
        steps' voices and the voices above v at step t), reading the softmax with that cell and
        everything after it masked. The network sees only `receptive_radius` steps each side, so
        each query runs on that window of the chorale alone: exactly the full-length answer, at a
        fraction of the cost. A model with voice heads also gets `notewise_nll_heads`: the same
        mean with the alto, tenor and bass read as note mode draws them (see chronological_nll).
        """
        from models.data import fixed_fraction_mask, load_jsb16, to_indices

        chorales = [to_indices(c) for c in load_jsb16(data, split)][:limit]
        note_nll, note_count, masked_nll, masked_count, heads_nll = 0.0, 0, 0.0, 0, 0.0
        for index, chorale in enumerate(chorales):
            total, count = self.chronological_nll(chorale)
            note_nll, note_count = note_nll + total, note_count + count
            if self.head_weights is not None:
                heads_nll += self.chronological_nll(chorale, batch=64, heads=True)[0]
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
            **({"notewise_nll_heads": heads_nll / max(note_count, 1)} if self.head_weights is not None else {}),
        }

    def chronological_nll(self, chorale: np.ndarray, batch: int = 256, heads: bool = False) -> tuple[float, int]:
        """Summed note-wise NLL of one chorale (pitch indices, -1 = rest) and its note count.

        Each query (t, v) masks the cell and everything after it. With `heads` (a model with voice
        heads), one query per step answers the alto, tenor and bass, as note mode draws them: the
        alto from the network with the three masked, the tenor and bass from their heads told
        the true voices above them."""
        steps, voices = chorale.shape
        radius = self.receptive_radius
        if heads:
            queries = [(t, v) for t in range(steps) for v in range(2)
                       if (chorale[t, 0] >= 0 if v == 0 else (chorale[t, 1:] >= 0).any())]
        else:
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
                if not heads:
                    log_probs = self.log_probs(pitches, mask)
                    for row, (t, v) in enumerate(chunk):
                        total -= float(log_probs[row, -before, v, chorale[t, v]])
                    continue
                log_probs, features = self.log_probs_and_features(pitches, mask)
                lower = np.array([row for row, (_, v) in enumerate(chunk) if v == 1], dtype=np.int64)
                if lower.size:  # each lower voice's log-probs from its head, in place of the network's
                    at_step = log_probs[lower, -before]                            # (N, V, P)
                    features_at_step = features[lower, :, -before:1 - before]      # (N, C, 1, P)
                    for voice in range(2, voices):
                        kernels.voice_head_log_probs(features_at_step, 0, at_step[:, voice], pitches[lower, -before],
                                                     1, voice, *self.head_weights, at_step[:, voice])
                    log_probs[lower, -before] = at_step
                for row, (t, v) in enumerate(chunk):
                    for voice in (range(1, voices) if v == 1 else (0,)):
                        if chorale[t, voice] >= 0:
                            total -= float(log_probs[row, -before, voice, chorale[t, voice]])
        count = int(np.sum(chorale[:, 0] >= 0)) + int(np.sum(chorale[:, 1:] >= 0)) if heads else len(queries)
        return total, count
