"""Numba kernels for the RNN-RBM engine: block Gibbs sampling in a binary RBM with clamped units,
free energies, completing a chord with the likeliest notes, annealed importance sampling (AIS)
of the partition function, and the expected frame-level accuracy.

Layout: weights (V, H) float64 (visible x hidden), one RBM per row of visible_bias (F, V) and
hidden_bias (F, H) (the RNN gives every frame its own biases; the weights are shared), visible
(F, V) int8 0/1. Clamp (F, V) int8: -1 = free, 0 = held off, 1 = held on.

The Gibbs kernel takes its randomness as arrays of uniforms drawn by the caller (a seeded numpy
Generator), as bridge/kernels.py does, so `--seed` reproduces a result byte for byte. AIS and the
accuracy estimate need hundreds of millions of draws, which would not fit in arrays: those
kernels seed numba's own generator per frame from seeds the caller passes, which is just as
reproducible. Visible vectors are sparse (a chord is 3 or 4 notes of 50-odd), so the hidden
activations add up the weight rows of the notes that sound instead of a dense product.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# at or below this temperature a unit is on exactly when its input is positive (no sampling)
_ARGMAX_TEMPERATURE = 1e-6


@njit(cache=True, nogil=True)
def _sigmoid(x):
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True, nogil=True)
def _softplus(x):
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@njit(cache=True, nogil=True)
def _hidden_input(weights, hidden_bias_row, visible_row, out):
    """out := hidden_bias_row + visible_row @ weights, summing only the rows of units that are on."""
    num_visible, num_hidden = weights.shape
    for j in range(num_hidden):
        out[j] = hidden_bias_row[j]
    for i in range(num_visible):
        if visible_row[i] != 0:
            for j in range(num_hidden):
                out[j] += weights[i, j]


@njit(cache=True, nogil=True)
def _visible_input(weights_t, visible_bias_row, hidden_row, scale, out):
    """out := visible_bias_row + scale * (weights_t.T @ hidden_row), over the hidden units that are on."""
    num_hidden, num_visible = weights_t.shape
    for i in range(num_visible):
        out[i] = 0.0
    for j in range(num_hidden):
        if hidden_row[j] != 0:
            for i in range(num_visible):
                out[i] += weights_t[j, i]
    for i in range(num_visible):
        out[i] = visible_bias_row[i] + scale * out[i]


@njit(cache=True, nogil=True)
def gibbs_chains(weights, visible_bias, hidden_bias, clamp, visible, temperatures,
                 uniforms_hidden, uniforms_visible):
    """Run len(temperatures) block Gibbs steps (h given v, then v given h) in each chain, in place.

    Chain k is the RBM with biases visible_bias[k], hidden_bias[k]; it starts from visible[k]
    (clamped units are set to their clamp first) and ends with the last visible sample there.
    Step s draws at temperature temperatures[s]: p(on) = sigmoid(input / temperature); at
    temperature 0 a unit is on exactly when its input is positive. Clamped units never change.
    """
    num_visible, num_hidden = weights.shape
    num_chains = visible.shape[0]
    num_steps = temperatures.shape[0]
    if visible.shape != (num_chains, num_visible) or clamp.shape != visible.shape \
            or visible_bias.shape != visible.shape:
        raise ValueError("gibbs_chains: visible, clamp and visible_bias must be (K, V)")
    if hidden_bias.shape != (num_chains, num_hidden):
        raise ValueError("gibbs_chains: hidden_bias must be (K, H)")
    if uniforms_hidden.shape != (num_steps, num_chains, num_hidden) \
            or uniforms_visible.shape != (num_steps, num_chains, num_visible):
        raise ValueError("gibbs_chains: uniforms must be (steps, K, H) and (steps, K, V)")
    weights_t = np.ascontiguousarray(weights.T)
    hidden = np.zeros(num_hidden, dtype=np.int8)
    hidden_input = np.empty(num_hidden, dtype=np.float64)
    visible_input = np.empty(num_visible, dtype=np.float64)
    for k in range(num_chains):
        for i in range(num_visible):
            if clamp[k, i] >= 0:
                visible[k, i] = clamp[k, i]
        for s in range(num_steps):
            greedy = temperatures[s] <= _ARGMAX_TEMPERATURE
            inv_temperature = 0.0 if greedy else 1.0 / temperatures[s]
            _hidden_input(weights, hidden_bias[k], visible[k], hidden_input)
            for j in range(num_hidden):
                if greedy:
                    hidden[j] = 1 if hidden_input[j] > 0.0 else 0
                else:
                    hidden[j] = 1 if uniforms_hidden[s, k, j] < _sigmoid(hidden_input[j] * inv_temperature) else 0
            _visible_input(weights_t, visible_bias[k], hidden, 1.0, visible_input)
            for i in range(num_visible):
                if clamp[k, i] >= 0:
                    continue
                x = visible_input[i]
                if greedy:
                    visible[k, i] = 1 if x > 0.0 else 0
                else:
                    visible[k, i] = 1 if uniforms_visible[s, k, i] < _sigmoid(x * inv_temperature) else 0


@njit(cache=True, nogil=True)
def free_energy(weights, visible_bias, hidden_bias, visible, out):
    """out[k] := F(visible[k]) = -visible.bv - sum_j softplus(hidden input j), so that
    p(v) = exp(-F(v)) / Z in the RBM of row k."""
    num_visible, num_hidden = weights.shape
    num_rows = visible.shape[0]
    if visible.shape != (num_rows, num_visible) or visible_bias.shape != visible.shape \
            or hidden_bias.shape != (num_rows, num_hidden) or out.shape[0] != num_rows:
        raise ValueError("free_energy: shapes do not match")
    hidden_input = np.empty(num_hidden, dtype=np.float64)
    for k in range(num_rows):
        energy = 0.0
        for i in range(num_visible):
            if visible[k, i] != 0:
                energy -= visible_bias[k, i]
        _hidden_input(weights, hidden_bias[k], visible[k], hidden_input)
        for j in range(num_hidden):
            energy -= _softplus(hidden_input[j])
        out[k] = energy


@njit(cache=True, nogil=True)
def complete_chords(weights, visible_bias, hidden_bias, clamp, visible, wanted):
    """Turn free units on in each chain, in place, until `wanted` free units sound: each time the
    one the RBM finds likeliest given the rest, its exact conditional log-odds
    log p(v_i = 1 | v_-i) / p(v_i = 0 | v_-i) = visible_bias_i + sum_j softplus(x_j + W_ij) - softplus(x_j),
    x = hidden_bias + v @ W. Free = clamp -1; a chain with no free unit off stops short."""
    num_visible, num_hidden = weights.shape
    num_chains = visible.shape[0]
    if visible.shape != (num_chains, num_visible) or clamp.shape != visible.shape \
            or visible_bias.shape != visible.shape or hidden_bias.shape != (num_chains, num_hidden):
        raise ValueError("complete_chords: shapes do not match")
    hidden_input = np.empty(num_hidden, dtype=np.float64)
    for k in range(num_chains):
        sounding = 0
        for i in range(num_visible):
            if clamp[k, i] < 0 and visible[k, i] != 0:
                sounding += 1
        if sounding >= wanted:
            continue
        _hidden_input(weights, hidden_bias[k], visible[k], hidden_input)
        while sounding < wanted:
            best, best_log_odds = -1, -np.inf
            for i in range(num_visible):
                if clamp[k, i] >= 0 or visible[k, i] != 0:
                    continue
                log_odds = visible_bias[k, i]
                for j in range(num_hidden):
                    log_odds += _softplus(hidden_input[j] + weights[i, j]) - _softplus(hidden_input[j])
                if log_odds > best_log_odds:
                    best, best_log_odds = i, log_odds
            if best < 0:
                break
            visible[k, best] = 1
            for j in range(num_hidden):
                hidden_input[j] += weights[best, j]
            sounding += 1


@njit(cache=True, nogil=True)
def ais_log_partition(weights, visible_bias, hidden_bias, betas, chains, seeds, out):
    """out[f] := an AIS estimate of log Z of the RBM of row f (Salakhutdinov & Murray 2008).

    The base distribution is the RBM with no weights and the same visible biases (independent
    notes, sampled exactly; log Z0 = H log 2 + sum_i softplus(bv_i)); the intermediate
    distributions scale the weights and hidden biases by betas[0] = 0 < ... < betas[-1] = 1:
    p_b(v) ~ exp(v.bv) prod_j (1 + exp(beta_b (c_j + v.W_j))). Each of `chains` runs moves
    through them with one Gibbs transition per temperature; log Z = log Z0 + log mean(weights).
    Row f draws from numba's generator seeded with seeds[f].
    """
    num_visible, num_hidden = weights.shape
    num_rows = visible_bias.shape[0]
    num_betas = betas.shape[0]
    if hidden_bias.shape != (num_rows, num_hidden) or visible_bias.shape[1] != num_visible \
            or seeds.shape[0] != num_rows or out.shape[0] != num_rows:
        raise ValueError("ais_log_partition: shapes do not match")
    if num_betas < 2 or betas[0] != 0.0 or betas[num_betas - 1] != 1.0:
        raise ValueError("ais_log_partition: betas must run from 0 to 1")
    weights_t = np.ascontiguousarray(weights.T)
    visible = np.zeros(num_visible, dtype=np.int8)
    hidden = np.zeros(num_hidden, dtype=np.int8)
    hidden_input = np.empty(num_hidden, dtype=np.float64)
    visible_input = np.empty(num_visible, dtype=np.float64)
    log_weights = np.empty(chains, dtype=np.float64)
    for f in range(num_rows):
        np.random.seed(seeds[f])
        log_z0 = num_hidden * math.log(2.0)
        for i in range(num_visible):
            log_z0 += _softplus(visible_bias[f, i])
        for c in range(chains):
            for i in range(num_visible):
                visible[i] = 1 if np.random.random() < _sigmoid(visible_bias[f, i]) else 0
            _hidden_input(weights, hidden_bias[f], visible, hidden_input)
            log_weight = 0.0
            for b in range(1, num_betas):
                beta, previous = betas[b], betas[b - 1]
                for j in range(num_hidden):
                    log_weight += _softplus(beta * hidden_input[j]) - _softplus(previous * hidden_input[j])
                if b == num_betas - 1:
                    break
                # one Gibbs transition that leaves p_b invariant
                for j in range(num_hidden):
                    hidden[j] = 1 if np.random.random() < _sigmoid(beta * hidden_input[j]) else 0
                _visible_input(weights_t, visible_bias[f], hidden, beta, visible_input)
                for i in range(num_visible):
                    visible[i] = 1 if np.random.random() < _sigmoid(visible_input[i]) else 0
                _hidden_input(weights, hidden_bias[f], visible, hidden_input)
            log_weights[c] = log_weight
        top = log_weights.max()
        total = 0.0
        for c in range(chains):
            total += math.exp(log_weights[c] - top)
        out[f] = log_z0 + top + math.log(total / chains)


@njit(cache=True, nogil=True)
def expected_accuracy(weights, visible_bias, hidden_bias, target, burn_in, samples, thin, seeds, out):
    """out[f] := the mean over `samples` draws v from the RBM of row f of the frame accuracy
    TP / (TP + FP + FN) of v against target[f] (Bay et al. 2009; 1 when both are silent).

    One chain per row from silence: `burn_in` Gibbs steps, then a draw every `thin` steps.
    """
    num_visible, num_hidden = weights.shape
    num_rows = visible_bias.shape[0]
    if hidden_bias.shape != (num_rows, num_hidden) or target.shape != visible_bias.shape \
            or seeds.shape[0] != num_rows or out.shape[0] != num_rows:
        raise ValueError("expected_accuracy: shapes do not match")
    weights_t = np.ascontiguousarray(weights.T)
    visible = np.zeros(num_visible, dtype=np.int8)
    hidden = np.zeros(num_hidden, dtype=np.int8)
    hidden_input = np.empty(num_hidden, dtype=np.float64)
    visible_input = np.empty(num_visible, dtype=np.float64)
    for f in range(num_rows):
        np.random.seed(seeds[f])
        visible[:] = 0
        total = 0.0
        drawn = 0
        step = 0
        while drawn < samples:
            _hidden_input(weights, hidden_bias[f], visible, hidden_input)
            for j in range(num_hidden):
                hidden[j] = 1 if np.random.random() < _sigmoid(hidden_input[j]) else 0
            _visible_input(weights_t, visible_bias[f], hidden, 1.0, visible_input)
            for i in range(num_visible):
                visible[i] = 1 if np.random.random() < _sigmoid(visible_input[i]) else 0
            step += 1
            if step >= burn_in and (step - burn_in) % thin == 0:
                tp = 0
                fp = 0
                fn = 0
                for i in range(num_visible):
                    if visible[i] != 0 and target[f, i] != 0:
                        tp += 1
                    elif visible[i] != 0:
                        fp += 1
                    elif target[f, i] != 0:
                        fn += 1
                total += 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)
                drawn += 1
        out[f] = total / samples


def annealing_temperatures(steps: int, temperature: float) -> np.ndarray:
    """Per-step temperatures of a generation chain: from 1 down to `temperature` in a straight
    line when it is below 1 (a cold chain started cold would stick near its start), else flat."""
    if temperature >= 1.0 or steps <= 1:
        return np.full(max(steps, 1), temperature, dtype=np.float64)
    return np.linspace(1.0, temperature, steps)
