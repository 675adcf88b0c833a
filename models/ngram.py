"""An order-k Markov chain over tokens, the baseline the phrase models must beat: the next token
given the k before it, with Witten-Bell interpolation down to a uniform distribution, so every
token of a held-out sequence has a probability. numpy and dicts only."""
from __future__ import annotations

import math
from collections import Counter, defaultdict


class MarkovChain:
    def __init__(self, order: int, tokens: int):
        self.order, self.tokens = order, tokens
        # context (a tuple of up to `order` tokens) -> Counter of next tokens
        self.counts: dict[tuple, Counter] = defaultdict(Counter)

    def fit(self, sequences) -> "MarkovChain":
        for sequence in sequences:
            sequence = [int(t) for t in sequence]
            for i, token in enumerate(sequence):
                for k in range(min(i, self.order) + 1):
                    self.counts[tuple(sequence[i - k:i])][token] += 1
        return self

    def probability(self, context: tuple, token: int) -> float:
        """p(token | the last `order` tokens of context), interpolated from the empty context up."""
        p = 1.0 / self.tokens
        for k in range(min(len(context), self.order) + 1):
            seen = self.counts.get(tuple(context[len(context) - k:]))
            if not seen:
                break
            total = sum(seen.values())
            distinct = len(seen)
            weight = total / (total + distinct)
            p = weight * seen[token] / total + (1 - weight) * p
        return p

    def nll(self, sequences) -> tuple[float, int]:
        """(total negative log-likelihood in nats, events) over held-out sequences."""
        total, events = 0.0, 0
        for sequence in sequences:
            sequence = [int(t) for t in sequence]
            for i, token in enumerate(sequence):
                total -= math.log(self.probability(tuple(sequence[max(0, i - self.order):i]), token))
                events += 1
        return total, events
