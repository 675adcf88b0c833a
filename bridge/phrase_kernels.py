"""Numba kernel for the phrase engine: one token drawn from a recurrent net's logits, for a batch
of B continuations side by side (variants).

    logits   (B, N) float32  the net's answer for each continuation
    allowed  (B, N) bool     tokens the caller permits (range, key, chord tones): all False
                             means no constraint could be kept, and then any token may come
    history  (B, H) int64    each continuation's last H tokens, oldest first, -1 where none
    uniforms (B,) float64    one draw each, from the caller's seeded generator (so `--seed`
                             reproduces a phrase exactly)
    -> out   (B,) int64

A draw is tempered (temperature 0: the likeliest token), cut to the smallest set of likeliest
tokens whose probability reaches `top_p` (nucleus sampling), and guarded against repetition:
a token that already fills the last `repeat_limit` places of the history is not drawn again
(0: no guard), unless nothing else is allowed.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# at or below this temperature a draw is the likeliest token
_ARGMAX_TEMPERATURE = 1e-6


@njit(cache=True, nogil=True)
def draw_tokens(logits, allowed, history, temperature, top_p, repeat_limit, uniforms, out):
    batch, tokens = logits.shape
    if allowed.shape != logits.shape or history.shape[0] != batch or uniforms.shape[0] != batch or out.shape[0] != batch:
        raise ValueError("draw_tokens: logits, allowed, history, uniforms and out disagree on the batch")
    keep = np.empty(tokens, dtype=np.bool_)
    weights = np.empty(tokens, dtype=np.float64)
    for b in range(batch):
        any_allowed = False
        for n in range(tokens):
            keep[n] = allowed[b, n]
            any_allowed = any_allowed or keep[n]
        if not any_allowed:
            keep[:] = True
        # the repetition guard: the token filling the last repeat_limit places, if one does
        length = history.shape[1]
        if 0 < repeat_limit <= length:
            repeated = history[b, length - 1]
            for i in range(length - repeat_limit, length):
                if history[b, i] != repeated:
                    repeated = -1
            if 0 <= repeated < tokens and keep[repeated]:
                keep[repeated] = False
                others = False
                for n in range(tokens):
                    others = others or keep[n]
                if not others:
                    keep[repeated] = True
        best, best_logit = -1, -np.inf
        for n in range(tokens):
            if keep[n] and (best < 0 or logits[b, n] > best_logit):
                best, best_logit = n, logits[b, n]
        if temperature <= _ARGMAX_TEMPERATURE:
            out[b] = best
            continue
        total = 0.0
        for n in range(tokens):
            weights[n] = np.exp((logits[b, n] - best_logit) / temperature) if keep[n] else 0.0
            total += weights[n]
        # nucleus: take tokens likeliest first until their share reaches top_p; drop the rest
        if top_p < 1.0:
            kept_share = 0.0
            order = np.argsort(-weights)
            cut = tokens
            for rank in range(tokens):
                kept_share += weights[order[rank]] / total
                if kept_share >= top_p:
                    cut = rank + 1
                    break
            for rank in range(cut, tokens):
                weights[order[rank]] = 0.0
            total = 0.0
            for n in range(tokens):
                total += weights[n]
        target = uniforms[b] * total
        chosen = best
        running = 0.0
        for n in range(tokens):
            if weights[n] > 0.0:
                running += weights[n]
                chosen = n
                if running > target:
                    break
        out[b] = chosen
