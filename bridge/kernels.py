"""Numba kernels for Coconet's annealed block Gibbs sampling, and the allowed-pitch table.

Layout for K parallel chains: pitches (K, T, V) int64 pitch indices (-1 = rest), masks (K, T, V)
float32 (1.0 = to be resampled), log_probs (K, T, V, P) float32. Kernels take their randomness as
arrays of uniforms drawn by the caller, so they stay pure, reproducible and safe to run in threads
(they release the GIL). Kernels check shapes because numba does not bounds-check indexing.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from bridge.musicstats import consecutive_perfect

# Above this temperature we sample; at or below it the softmax is a point mass on the argmax and
# dividing by the temperature would only overflow.
_ARGMAX_TEMPERATURE = 1e-6


@njit(cache=True, nogil=True)
def yao_mask_prob(step, num_steps, pmax, pmin, alpha):
    """Fraction of free cells to resample at Gibbs step `step` of `num_steps` (Yao et al. 2014)."""
    horizon = alpha * num_steps
    if horizon <= 0.0:
        # No annealing phase at all: run the whole schedule at the floor.
        return pmin
    return max(pmin, pmax - (pmax - pmin) * step / horizon)


@njit(cache=True, nogil=True)
def choose_resample_cells(free, prob, uniforms, mask_out):
    """mask_out := free & (uniforms < prob), with at least one masked cell per chain that has a free one."""
    if uniforms.shape != free.shape or mask_out.shape != free.shape:
        raise ValueError("choose_resample_cells: free, uniforms and mask_out must have the same shape")
    num_chains, num_steps, num_voices = free.shape
    for k in range(num_chains):
        num_masked = 0
        best_t = -1
        best_v = -1
        best_u = np.inf
        for t in range(num_steps):
            for v in range(num_voices):
                if not free[k, t, v]:
                    mask_out[k, t, v] = 0.0
                    continue
                u = uniforms[k, t, v]
                if u < prob:
                    mask_out[k, t, v] = 1.0
                    num_masked += 1
                else:
                    mask_out[k, t, v] = 0.0
                if best_t < 0 or u < best_u:
                    best_t, best_v, best_u = t, v, u
        # A step that resamples nothing is wasted network call; the smallest u is the cell
        # that was "closest" to being chosen, which keeps the choice driven by the same draws.
        if num_masked == 0 and best_t >= 0:
            mask_out[k, best_t, best_v] = 1.0


_consecutive_perfect = njit(cache=True, nogil=True)(consecutive_perfect)


@njit(cache=True, nogil=True)
def _consecutive_perfects(pitches, k, first, last, v, p):
    """How many consecutive perfects (bridge.musicstats.consecutive_perfect) voice v singing pitch
    p from step `first` to `last` would make with the other voices: into `first` from the step
    before and out of `last` into the step after (a held pitch makes none within)."""
    num_steps, num_voices = pitches.shape[1], pitches.shape[2]
    count = 0
    for u in range(num_voices):
        if u == v:
            continue
        if first > 0 and _consecutive_perfect(pitches[k, first - 1, v], pitches[k, first - 1, u],
                                              p, pitches[k, first, u]):
            count += 1
        if last + 1 < num_steps and _consecutive_perfect(pitches[k, last + 1, v], pitches[k, last + 1, u],
                                                         p, pitches[k, last, u]):
            count += 1
    return count


@njit(cache=True, nogil=True)
def tie_eighths(free, mask, eighth_phase, tied_voices, tie_next):
    """Make the masked cells of `tied_voices` whole 8th notes: where both 16ths of an 8th (steps
    t, t + 1 with t - eighth_phase[k] even) are free in a tied voice, the second is masked
    exactly when the first is, and tie_next[k, t, v] := whether the pair is masked (sample_masked
    then draws it as one note). tie_next is False everywhere else. free (K, T, V) bool, mask
    (K, T, V) float32 in place, eighth_phase (K,) 0 or 1, tied_voices (V,) bool."""
    num_chains, num_steps, num_voices = free.shape
    if mask.shape != free.shape or tie_next.shape != free.shape:
        raise ValueError("tie_eighths: free, mask and tie_next must have the same shape")
    if eighth_phase.shape[0] != num_chains or tied_voices.shape[0] != num_voices:
        raise ValueError("tie_eighths: one phase per chain, one flag per voice")
    for k in range(num_chains):
        for t in range(num_steps):
            for v in range(num_voices):
                tie_next[k, t, v] = False
        for t in range(eighth_phase[k] % 2, num_steps - 1, 2):
            for v in range(num_voices):
                if tied_voices[v] and free[k, t, v] and free[k, t + 1, v]:
                    mask[k, t + 1, v] = mask[k, t, v]
                    tie_next[k, t, v] = mask[k, t, v] == 1.0


@njit(cache=True, nogil=True)
def sample_masked(log_probs, mask, allowed, temperature, uniforms, pitches, parallel_penalty, tie_next=None):
    """Resample every masked cell from its tempered softmax restricted to `allowed[v]`, in place.

    Cells are drawn one after another, each seeing the ones drawn before it. With
    `parallel_penalty` > 0 a pitch loses that many nats of log-probability per consecutive
    perfect fifth or octave it would make with the voices around it. `log_probs` (K, T', V, P)
    may cover only the last T' of the T steps of the others (K, T, V), those of every masked cell.
    With `tie_next` (K, T, V) bool (see tie_eighths), a cell marked there and the next step's in
    its voice, both masked, are drawn as one note: from the mean of their two log-probabilities,
    penalized for the perfects into the first and out of the second.
    """
    num_chains, shown_steps, num_voices, num_pitches = log_probs.shape
    num_steps = pitches.shape[1]
    first_shown = num_steps - shown_steps
    cells = (num_chains, num_steps, num_voices)
    if mask.shape != cells or uniforms.shape != cells or pitches.shape != cells or first_shown < 0:
        raise ValueError("sample_masked: mask, uniforms and pitches must be (K, T, V) like log_probs (K, <= T, V, P)")
    if allowed.shape != (num_voices, num_pitches):
        raise ValueError("sample_masked: allowed must be (V, P) like log_probs")
    if tie_next is not None and tie_next.shape != cells:
        raise ValueError("sample_masked: tie_next must be (K, T, V) like pitches")
    greedy = temperature <= _ARGMAX_TEMPERATURE
    inv_temperature = 1.0 / temperature if not greedy else 0.0
    # one scratch row per call, not per cell
    logits = np.empty(num_pitches, dtype=np.float64)
    weights = np.empty(num_pitches, dtype=np.float64)
    for k in range(num_chains):
        for t in range(num_steps):
            for v in range(num_voices):
                if mask[k, t, v] != 1.0:
                    continue
                if t < first_shown:
                    raise ValueError("sample_masked: a masked cell before the steps log_probs covers")
                last = t   # the note drawn lasts from t to `last`
                if tie_next is not None:
                    if t > 0 and tie_next[k, t - 1, v]:
                        continue   # drawn with the 16th before it
                    if tie_next[k, t, v]:
                        if t + 1 >= num_steps or mask[k, t + 1, v] != 1.0:
                            raise ValueError("sample_masked: a tied cell whose next cell is not masked")
                        last = t + 1
                # -inf and NaN (NaN > x is False) never win, so a pitch the network rules out
                # cannot be drawn
                best = -1
                any_allowed = False
                top = -np.inf
                for p in range(num_pitches):
                    x = -np.inf
                    if allowed[v, p]:
                        any_allowed = True
                        x = np.float64(log_probs[k, t - first_shown, v, p])
                        if last > t:
                            x = 0.5 * (x + np.float64(log_probs[k, last - first_shown, v, p]))
                        if parallel_penalty > 0.0 and x > -np.inf:
                            x -= parallel_penalty * _consecutive_perfects(pitches, k, t, last, v, p)
                        if x > top:
                            top = x
                            best = p
                    logits[p] = x
                if not any_allowed:
                    continue  # nothing this voice may sing: keep what is there
                if best < 0:
                    # Every allowed pitch has zero probability under the network; rather than
                    # fail, fall back to a uniform draw over the range.
                    count = 0
                    for p in range(num_pitches):
                        if allowed[v, p]:
                            count += 1
                    target = int(uniforms[k, t, v] * count)
                    choice = -1
                    for p in range(num_pitches):
                        if allowed[v, p]:
                            if target == 0:
                                choice = p
                                break
                            target -= 1
                elif greedy:
                    choice = best
                else:
                    total = 0.0
                    for p in range(num_pitches):
                        w = np.exp((logits[p] - top) * inv_temperature) if logits[p] > -np.inf else 0.0
                        weights[p] = w
                        total += w
                    target = uniforms[k, t, v] * total
                    # Rounding can leave the running sum just short of target; the last pitch
                    # with weight is then the right answer (u is in [0, 1)).
                    choice = best
                    cumulative = 0.0
                    for p in range(num_pitches):
                        w = weights[p]
                        if w > 0.0:
                            cumulative += w
                            choice = p
                            if cumulative > target:
                                break
                for step in range(t, last + 1):
                    pitches[k, step, v] = choice


@njit(cache=True, nogil=True)
def masked_log_likelihood(log_probs, pitches, mask, out):
    """out[k] := sum of log_probs[k, t, v, pitches[k, t, v]] over masked, sounding cells."""
    num_chains, num_steps, num_voices, num_pitches = log_probs.shape
    cells = (num_chains, num_steps, num_voices)
    if pitches.shape != cells or mask.shape != cells:
        raise ValueError("masked_log_likelihood: pitches and mask must be (K, T, V) like log_probs")
    if out.shape[0] != num_chains:
        raise ValueError("masked_log_likelihood: out must have one entry per chain")
    for k in range(num_chains):
        total = 0.0
        for t in range(num_steps):
            for v in range(num_voices):
                if mask[k, t, v] != 1.0:
                    continue
                p = pitches[k, t, v]
                if p < 0:
                    continue
                if p >= num_pitches:
                    raise ValueError("masked_log_likelihood: pitch index out of range")
                total += log_probs[k, t, v, p]
        out[k] = total


@njit(cache=True, nogil=True)
def voice_head_log_probs(features, step, trunk_log_probs, step_pitches, first_voice, voice,
                         in_proj, bias, interval, upper_proj, out_weights, out):
    """out[k] := voice `voice`'s log-probabilities at `step`, from its voice head (the live model's
    fast path; the head is defined in models/coconet.py, VoiceHeads, and this is the same sum).

    features (K, C, T, P) from the trunk, trunk_log_probs (K, P) its log-probs for the voice at the
    step, step_pitches (K, V) the step's pitch indices: voices first_voice..voice-1 were drawn after
    the trunk ran and are told to the head (-1, a rest, tells nothing). Weights, index v - 1 for
    voice v: in_proj (V-1, H, C), bias (V-1, H), interval (V-1, V-1, 2P-1, H), upper_proj
    (V-1, V-1, H, C), out_weights (V-1, H). `out` (K, P) may be `trunk_log_probs` itself.
    """
    num_chains, channels, num_steps, num_pitches = features.shape
    hidden = in_proj.shape[1]
    if trunk_log_probs.shape != (num_chains, num_pitches) or out.shape != (num_chains, num_pitches):
        raise ValueError("voice_head_log_probs: trunk_log_probs and out must be (K, P) like features")
    if step_pitches.shape[0] != num_chains or not 0 < voice < step_pitches.shape[1] or not 0 <= step < num_steps:
        raise ValueError("voice_head_log_probs: bad step, voice or step_pitches")
    if in_proj.shape[2] != channels or interval.shape[2] != 2 * num_pitches - 1:
        raise ValueError("voice_head_log_probs: head weights do not fit the features")
    h = np.empty((hidden, num_pitches), dtype=np.float32)
    told = np.empty(hidden, dtype=np.float32)
    logits = np.empty(num_pitches, dtype=np.float64)
    v = voice - 1
    for k in range(num_chains):
        # what does not depend on the candidate pitch: the bias and the drawn voices' features
        for j in range(hidden):
            told[j] = bias[v, j]
        for u in range(first_voice, voice):
            q = step_pitches[k, u]
            if q < 0:
                continue
            for j in range(hidden):
                total = np.float32(0.0)
                for c in range(channels):
                    total += upper_proj[v, u, j, c] * features[k, c, step, q]
                told[j] += total
        for j in range(hidden):
            for p in range(num_pitches):
                h[j, p] = told[j]
            for c in range(channels):
                w = in_proj[v, j, c]
                for p in range(num_pitches):
                    h[j, p] += w * features[k, c, step, p]
        for u in range(first_voice, voice):
            q = step_pitches[k, u]
            if q < 0:
                continue
            for p in range(num_pitches):
                for j in range(hidden):
                    h[j, p] += interval[v, u, p - q + num_pitches - 1, j]
        top = -np.inf
        for p in range(num_pitches):
            z = np.float64(trunk_log_probs[k, p])
            for j in range(hidden):
                if h[j, p] > 0.0:
                    z += out_weights[v, j] * h[j, p]
            logits[p] = z
            if z > top:
                top = z
        total = 0.0
        for p in range(num_pitches):
            total += np.exp(logits[p] - top)
        norm = top + np.log(total)
        for p in range(num_pitches):
            out[k, p] = logits[p] - norm


@njit(cache=True, nogil=True)
def draw_step_with_heads(log_probs, features, step, first_voice, in_proj, bias, interval, upper_proj,
                         out_weights, allowed, temperature, uniforms, pitches, parallel_penalty, scores):
    """Draw voices first_voice.. of `step`, top down, in place in `pitches` (K, T, V): the top one
    from the trunk's `log_probs` (K, T, V, P), each below from its voice head told the voices
    drawn above it (voice_head_log_probs, written over the trunk's answer for it), each as
    sample_masked draws a cell. scores (K,) := the log-likelihood of each chain's draw."""
    num_chains, num_steps, num_voices = pitches.shape
    if scores.shape[0] != num_chains:
        raise ValueError("draw_step_with_heads: scores must have one entry per chain")
    cell = np.zeros(pitches.shape, dtype=np.float32)
    score = np.empty(num_chains, dtype=np.float64)
    scores[:] = 0.0
    for voice in range(first_voice, num_voices):
        if voice > first_voice:
            at_step = log_probs[:, step, voice]
            voice_head_log_probs(features, step, at_step, pitches[:, step], first_voice, voice,
                                 in_proj, bias, interval, upper_proj, out_weights, at_step)
        cell[:, step, voice] = 1.0
        sample_masked(log_probs, cell, allowed, temperature, uniforms, pitches, parallel_penalty)
        masked_log_likelihood(log_probs, pitches, cell, score)
        scores += score
        cell[:, step, voice] = 0.0


def allowed_pitches(voice_ranges, scale_pitch_classes, min_pitch: int, num_pitches: int) -> np.ndarray:
    """(V, P) bool: pitch index i is allowed for voice v if MIDI min_pitch + i is in its range (and key)."""
    midi = min_pitch + np.arange(num_pitches)
    if scale_pitch_classes is None:
        in_key = np.ones(num_pitches, dtype=bool)
    else:
        classes = [int(pc) for pc in scale_pitch_classes]
        if any(pc < 0 or pc > 11 for pc in classes):
            raise ValueError(f"pitch classes must be 0..11, got {classes}")
        in_key = np.isin(midi % 12, classes)
    rows = []
    for voice, (low, high) in enumerate(voice_ranges):
        if low > high:
            raise ValueError(f"voice {voice}: range low {low} is above high {high}")
        rows.append((midi >= low) & (midi <= high) & in_key)
    if not rows:
        return np.zeros((0, num_pitches), dtype=bool)
    return np.stack(rows)
