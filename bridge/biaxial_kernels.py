"""Numba kernels for the bi-axial LSTM engine: its note axis, an LSTM stack that runs along the
pitches of one step, each pitch's (play, articulate) drawn before the next pitch is looked at.

A network call per pitch per step would cost ~60 onnxruntime calls a 16th; the note stack is
small (two layers of tens of units), so it runs here from the weights the ONNX file carries, on
the time stack's per-pitch outputs that onnxruntime computes once a step.

Layout: pitches in index order, low to high; the axis runs from the top down when `downward`.
Note weights as torch keeps them, gates i, f, g, o, two layers: the first's input is the time
stack's output at the pitch and the (play, articulate) of the pitch before on the axis. Its
input weights on the time output are applied for every pitch at once (`input_gates`), as
gates_in (B, P, 4N1) with the bias added; the kernel along the pitches takes the rest: w_note0 (4N1, 2) on the pitch before, w_hh0 (4N1, N1), then w_ih1 (4N2, N1), w_hh1
(4N2, N2), b1 (4N2,) (torch's two biases summed), out_w (2, N2), out_b (2,). Clamps (B, P)
int8: -1 = free, 0 = held off, 1 = held on.
Randomness comes as uniforms (B, P, 2) drawn by the caller's seeded generator, so `--seed`
reproduces a result exactly.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from bridge.rbm_kernels import _sigmoid

# at or below this temperature a choice is the likelier one (no sampling)
_ARGMAX_TEMPERATURE = 1e-6


@njit(cache=True, nogil=True, fastmath=True)
def input_gates(time_out, time_in, bias, gates):
    """gates (S, P, 4N1) = time_out (S, P, Ht) @ time_in (Ht, 4N1) + bias: the first note layer's
    input from the time stack, for every pitch (here rather than numpy's BLAS, whose threads wait
    for cores on a busy machine: 7 ms for what takes a fraction of one)."""
    for s in range(time_out.shape[0]):
        for p in range(time_out.shape[1]):
            for g in range(gates.shape[2]):
                gates[s, p, g] = bias[g]
            for i in range(time_out.shape[2]):
                x = time_out[s, p, i]
                for g in range(gates.shape[2]):
                    gates[s, p, g] += x * time_in[i, g]


@njit(cache=True, nogil=True, fastmath=True)
def _lstm_update(gates, h, c):
    """h, c (N,) <- the LSTM cell's next state from its gates' pre-activations (4N,)."""
    n = h.shape[0]
    for j in range(n):
        i_gate = _sigmoid(gates[j])
        f_gate = _sigmoid(gates[n + j])
        g_gate = math.tanh(gates[2 * n + j])
        o_gate = _sigmoid(gates[3 * n + j])
        c[j] = f_gate * c[j] + i_gate * g_gate
        h[j] = o_gate * math.tanh(c[j])


@njit(cache=True, nogil=True, fastmath=True)
def _add_product(gates, w, x):
    """gates (G,) += w (G, In) @ x (In,)."""
    for g in range(w.shape[0]):
        acc = 0.0
        for i in range(x.shape[0]):
            acc += w[g, i] * x[i]
        gates[g] += acc


@njit(cache=True, nogil=True, fastmath=True)
def _note_axis(gates_in, notes, clamp_play, clamp_articulate, uniforms, temperature, conservativity, downward,
               w_note0, w_hh0, w_ih1, w_hh1, b1, out_w, out_b, logits, sample):
    """One step of one sequence along the pitch axis: gates_in (P, 4N1), the first layer's
    pre-activations from the time stack's outputs (and its bias) -> (P, 2) logits. With
    `sample`, each pitch's notes are drawn (clamps, temperature, and P(play) raised to the
    power `conservativity`, Johnson's: below 1 it plays more) into `notes` before the next
    pitch; else `notes` (P, 2) is read as given (teacher forcing)."""
    p_count = gates_in.shape[0]
    n1, n2 = w_hh0.shape[1], w_hh1.shape[1]
    h0 = np.zeros(n1)
    c0 = np.zeros(n1)
    h1 = np.zeros(n2)
    c1 = np.zeros(n2)
    gates0 = np.empty(4 * n1)
    gates1 = np.empty(4 * n2)
    before_play, before_articulate = 0.0, 0.0
    for k in range(p_count):
        p = p_count - 1 - k if downward else k
        for g in range(4 * n1):
            gates0[g] = gates_in[p, g] + w_note0[g, 0] * before_play + w_note0[g, 1] * before_articulate
        _add_product(gates0, w_hh0, h0)
        _lstm_update(gates0, h0, c0)
        for g in range(4 * n2):
            gates1[g] = b1[g]
        _add_product(gates1, w_ih1, h0)
        _add_product(gates1, w_hh1, h1)
        _lstm_update(gates1, h1, c1)
        for o in range(2):
            acc = out_b[o]
            for j in range(n2):
                acc += out_w[o, j] * h1[j]
            logits[p, o] = acc
        if sample:
            play = _draw(logits[p, 0], clamp_play[p], uniforms[p, 0], temperature, conservativity)
            articulate = 0.0
            if play > 0.0:
                articulate = _draw(logits[p, 1], clamp_articulate[p], uniforms[p, 1], temperature, 1.0)
            notes[p, 0] = play
            notes[p, 1] = articulate
        before_play = notes[p, 0]
        before_articulate = notes[p, 1]


@njit(cache=True, nogil=True)
def _draw(logit, clamp, uniform, temperature, power):
    """1.0 or 0.0: the clamp when there is one, else a draw of sigmoid(logit / temperature) ** power."""
    if clamp >= 0:
        return float(clamp)
    if temperature <= _ARGMAX_TEMPERATURE:
        return 1.0 if logit > 0.0 else 0.0
    return 1.0 if uniform < _sigmoid(logit / temperature) ** power else 0.0


@njit(cache=True, nogil=True)
def sample_step(gates_in, clamp_play, clamp_articulate, uniforms, temperature, conservativity, downward,
                w_note0, w_hh0, w_ih1, w_hh1, b1, out_w, out_b, notes, logits):
    """Draw one step's notes for each of B sequences (or B draws of one): gates_in (B, P, 4N1)
    -> notes (B, P, 2) (play, articulate as 0/1) and the logits (B, P, 2) they were drawn from."""
    for b in range(gates_in.shape[0]):   # not prange: numba's threads wait for cores a busy machine lends
        _note_axis(gates_in[b], notes[b], clamp_play[b], clamp_articulate[b], uniforms[b], temperature,
                   conservativity, downward,
                   w_note0, w_hh0, w_ih1, w_hh1, b1, out_w, out_b, logits[b], True)


@njit(cache=True, nogil=True, parallel=True)
def given_logits(gates_in, notes, downward, w_note0, w_hh0, w_ih1, w_hh1, b1, out_w, out_b, logits):
    """The logits (S, P, 2) of S given steps' notes (S, P, 2) from their first-layer gates
    (S, P, 4N1), each pitch given the notes of the pitches before it on the axis (the
    likelihood; parity)."""
    dummy_clamp = np.full(notes.shape[1], -1, dtype=np.int8)
    dummy_uniforms = np.zeros((notes.shape[1], 2))
    for s in prange(gates_in.shape[0]):
        _note_axis(gates_in[s], notes[s], dummy_clamp, dummy_clamp, dummy_uniforms, 1.0, 1.0, downward,
                   w_note0, w_hh0, w_ih1, w_hh1, b1, out_w, out_b, logits[s], False)


@njit(cache=True, nogil=True)
def log_likelihood(logits, notes, articulation):
    """Sum over steps and pitches of log P(play) and, where played and `articulation`,
    log P(articulate | play)."""
    total = 0.0
    for s in range(logits.shape[0]):
        for p in range(logits.shape[1]):
            total += _log_bernoulli(logits[s, p, 0], notes[s, p, 0])
            if articulation and notes[s, p, 0] > 0.5:
                total += _log_bernoulli(logits[s, p, 1], notes[s, p, 1])
    return total


@njit(cache=True, nogil=True)
def _log_bernoulli(logit, value):
    """log sigmoid(logit) when value is 1, log (1 - sigmoid(logit)) when 0, stably."""
    z = logit if value > 0.5 else -logit
    if z >= 0.0:
        return -math.log1p(math.exp(-z))
    return z - math.log1p(math.exp(z))
