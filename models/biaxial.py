"""Bi-axial LSTM (Daniel Johnson, "Generating Polyphonic Music Using Tied Parallel Networks",
2017; the Theano code of 2015, danieldjohnson/biaxial-rnn-music-composition): one stack of LSTMs
along time, run at every pitch with the same weights, then one along the pitch axis.

The whole model in one file. A piece is a roll of 16th steps over the model's pitches, each cell a
pair (play, articulate): the pitch sounds, and it is struck at this step (not held from the last).

    notes    (B, T, P, 2) float32   play, articulate
    inputs   (B, T, P, F)           per pitch, from the step before (`step_features`):
             vicinity  (50)  play and articulate of the 25 pitches from an octave below to an
                             octave above this one (outside the range: 0)
             context   (12)  how many pitches of each pitch class sound, counted from this
                             pitch's class (interval classes 0..11 above it)
             beat      (4)   the 16th's place in a 4/4 bar, 4 bits as -1/+1
             absolute (13)   only with `absolute_pitch`: the pitch's class (one-hot) and its
                             place in the range (0..1); without them the model is the same at
                             every pitch (a transposed input gives transposed outputs)
    time     LSTM x len(time_sizes) along T, the B*P sequences in parallel   -> (B, T, P, Ht)
    note     LSTM x len(note_sizes) along the pitch axis, the B*T sequences in parallel, from
             the top pitch down (`downward`, so that a pitch hears every pitch above it, the
             melody first) or from the bottom up (Johnson's order); its input at each pitch is the
             time stack's output there and the (play, articulate) just decided for the pitch
             before it on the axis                                          -> (B, T, P, Hn)
    logits   (B, T, P, 2)  P(play), P(articulate | play) through a sigmoid

Johnson's inputs also carried the pitch itself and its class (kept here as `absolute_pitch`, off
by default) and a final constant 0 (dropped). His sizes: time [300, 300], note [100, 50],
dropout 0.5.

What the runtime exports (export_onnx.py): `TimeStep`, the time stack over one or more steps (the
notes of the step before each, their beats and the LSTM states in; the per-pitch outputs and the
states after the last out),
and the note stack's weights, which the sampling kernel (bridge/biaxial_kernels.py) runs in numba.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

OCTAVE = 12
VICINITY = 2 * OCTAVE + 1
BEAT_BITS = 4


@dataclass
class BiaxialConfig:
    min_pitch: int = 30              # MIDI pitch of index 0: the JSB range 36..81 and transpositions
    num_pitches: int = 58            # .. to 87
    time_sizes: list[int] = field(default_factory=lambda: [128, 128])
    note_sizes: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.3             # between layers, in training
    downward: bool = True            # the note axis from the top pitch down
    absolute_pitch: bool = False     # pitch class and place in the range as inputs
    step_16ths: int = 1              # 16ths per time step: 4 for the quarter-note frames of the JSB pickle
    articulation: bool = True        # False: the data cannot say what is struck (the pickle's frames);
                                     # every sounding pitch reads as struck, and only play is scored

    @property
    def num_features(self) -> int:
        return 2 * VICINITY + OCTAVE + BEAT_BITS + (OCTAVE + 1 if self.absolute_pitch else 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BiaxialConfig":
        return cls(**d)


def beat_bits(steps: torch.Tensor) -> torch.Tensor:
    """(...) integer 16th steps -> (..., 4) their place in a 4/4 bar, bit by bit as -1/+1."""
    bits = torch.stack([(steps // (1 << k)) % 2 for k in range(BEAT_BITS)], dim=-1)
    return 2.0 * bits.float() - 1.0


def step_features(notes: torch.Tensor, steps: torch.Tensor, config: BiaxialConfig) -> torch.Tensor:
    """The time stack's inputs at one or more steps, from the notes of the step before each.

    notes (..., P, 2) the previous step's play and articulate; steps (...) the index of the step
    being predicted (its beat: `config.step_16ths` 16ths a step) -> (..., P, F)."""
    p = notes.shape[-2]
    lead = notes.shape[:-2]
    padded = F.pad(notes, (0, 0, OCTAVE, OCTAVE))                                   # (..., P + 24, 2)
    # the window of 25 pitches around each pitch, lowest first
    vicinity = torch.stack([padded[..., k:k + p, :] for k in range(VICINITY)], dim=-2)  # (..., P, 25, 2)
    vicinity = vicinity.reshape(*lead, p, 2 * VICINITY)
    # pitch-class counts of what plays, as intervals above each pitch (octave-periodic)
    play = notes[..., 0]                                                            # (..., P)
    pitch_class = torch.arange(p, device=notes.device) % OCTAVE
    octave = torch.arange(OCTAVE, device=notes.device)
    classes = (pitch_class[:, None] == octave[None, :]).to(notes.dtype)            # (P, 12) one-hot
    counts = play @ classes                                                         # (..., 12)
    # context[..., q, k] = counts[..., (class(q) + k) % 12]
    index = (pitch_class[:, None] + octave[None, :]) % OCTAVE                      # (P, 12)
    context = counts[..., index]                                                    # (..., P, 12)
    beat = beat_bits(steps * config.step_16ths)[..., None, :].expand(*lead, p, BEAT_BITS)
    parts = [vicinity, context, beat]
    if config.absolute_pitch:
        # the pitch class of index q is that of MIDI min_pitch + q
        absolute_class = (torch.arange(p, device=notes.device) + config.min_pitch) % OCTAVE
        place = (torch.arange(p, device=notes.device, dtype=notes.dtype) / max(p - 1, 1))[:, None]
        one_hot = (absolute_class[:, None] == octave[None, :]).to(notes.dtype)
        parts += [one_hot.expand(*lead, p, OCTAVE), place.expand(*lead, p, 1)]
    return torch.cat(parts, dim=-1)


class Biaxial(nn.Module):
    def __init__(self, config: BiaxialConfig):
        super().__init__()
        self.config = config
        sizes = [config.num_features] + list(config.time_sizes)
        self.time_layers = nn.ModuleList(nn.LSTM(a, b, batch_first=True) for a, b in zip(sizes, sizes[1:]))
        sizes = [config.time_sizes[-1] + 2] + list(config.note_sizes)
        self.note_layers = nn.ModuleList(nn.LSTM(a, b, batch_first=True) for a, b in zip(sizes, sizes[1:]))
        self.out = nn.Linear(config.note_sizes[-1], 2)
        with torch.no_grad():
            # start at a chorale's base rates (about 4 of 58 pitches play; a quarter of them are
            # struck at a 16th), not at 1/2: from 1/2, the first epochs only learn these, slowly
            self.out.bias.copy_(torch.tensor([-2.6, -1.05]))

    def _stack(self, layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for k, layer in enumerate(layers):
            if k:
                x = F.dropout(x, self.config.dropout, self.training)
            x = layer(x)[0]
        return x

    def time_outputs(self, notes: torch.Tensor, start_step: int | torch.Tensor = 0) -> torch.Tensor:
        """(B, T, P, 2) notes -> (B, T, P, Ht): each step's time-stack output, given the steps
        before it (silence before the first). `start_step`: the 16th step of the first (beat)."""
        batch, steps, p, _ = notes.shape
        previous = torch.cat([notes.new_zeros(batch, 1, p, 2), notes[:, :-1]], dim=1)
        step_index = torch.arange(steps, device=notes.device) + start_step
        x = step_features(previous, step_index[None, :].expand(batch, steps), self.config)   # (B, T, P, F)
        x = x.permute(0, 2, 1, 3).reshape(batch * p, steps, -1)                              # (B*P, T, F)
        x = self._stack(self.time_layers, x)
        return x.reshape(batch, p, steps, -1).permute(0, 2, 1, 3)                            # (B, T, P, Ht)

    def forward(self, notes: torch.Tensor, start_step: int | torch.Tensor = 0) -> torch.Tensor:
        """(B, T, P, 2) notes -> (B, T, P, 2) logits of play and articulate, each given the steps
        before it and, along the note axis, the pitches decided before it (teacher forcing)."""
        return self.note_logits(self.time_outputs(notes, start_step), notes)

    def note_logits(self, hidden: torch.Tensor, notes: torch.Tensor) -> torch.Tensor:
        """(B, T, P, Ht) time-stack outputs and (B, T, P, 2) notes -> (B, T, P, 2) logits, each
        pitch given the notes of the pitches before it on the note axis."""
        batch, steps, p, _ = notes.shape
        order = torch.arange(p - 1, -1, -1, device=notes.device) if self.config.downward else torch.arange(p, device=notes.device)
        hidden, along = hidden[:, :, order], notes[:, :, order]
        before = torch.cat([along.new_zeros(batch, steps, 1, 2), along[:, :, :-1]], dim=2)   # the pitch before on the axis
        x = torch.cat([F.dropout(hidden, self.config.dropout, self.training), before], dim=-1)
        x = self._stack(self.note_layers, x.reshape(batch * steps, p, -1))
        logits = self.out(x).reshape(batch, steps, p, 2)
        return logits[:, :, torch.argsort(order)]


def loss(logits: torch.Tensor, notes: torch.Tensor, mask: torch.Tensor,
         articulation: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative log-likelihood of `notes` (B, T, P, 2) under `logits`, nats per real step (mask
    (B, T) 1 = a real step): play everywhere, articulate where played (unless not
    `articulation`). -> (loss, steps)."""
    play, articulate = notes[..., 0], notes[..., 1]
    per_pitch = F.binary_cross_entropy_with_logits(logits[..., 0], play, reduction="none")
    if articulation:
        per_pitch = per_pitch + F.binary_cross_entropy_with_logits(logits[..., 1], articulate, reduction="none") * play
    per_step = per_pitch.sum(-1) * mask                                            # (B, T)
    steps = mask.sum().clamp(min=1.0)
    return per_step.sum() / steps, steps


class TimeStep(nn.Module):
    """The time stack over one or more steps, from given states, for the runtime: (B, T, P, 2)
    the notes of the step before each, (B, T) each step's 16th index, (L, B*P, H) hidden and
    cell states -> (B, T, P, Ht) outputs and the states after the last step. One step at a time
    while drawing; a run of given steps in one call."""

    def __init__(self, model: Biaxial):
        super().__init__()
        self.model = model

    def forward(self, notes: torch.Tensor, step: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor):
        config = self.model.config
        batch, steps, p, _ = notes.shape
        x = step_features(notes, step, config)                                  # (B, T, P, F)
        x = x.permute(0, 2, 1, 3).reshape(batch * p, steps, -1)                 # (B*P, T, F)
        new_hidden, new_cell = [], []
        for k, layer in enumerate(self.model.time_layers):
            size = layer.hidden_size
            x, (h, c) = layer(x, (hidden[k:k + 1, :, :size], cell[k:k + 1, :, :size]))
            new_hidden.append(F.pad(h, (0, hidden.shape[-1] - size)))
            new_cell.append(F.pad(c, (0, cell.shape[-1] - size)))
        out = x.reshape(batch, p, steps, -1).permute(0, 2, 1, 3)                # (B, T, P, Ht)
        return out, torch.cat(new_hidden), torch.cat(new_cell)


def note_weights(model: Biaxial) -> dict[str, torch.Tensor]:
    """The note stack as plain arrays for the numba kernel: per layer the input and recurrent
    weights (4H, In) and (4H, H), the bias (4H,) (torch's two biases summed), gates in torch's
    order i, f, g, o; then the output layer (2, H) and (2,)."""
    weights = {}
    for k, layer in enumerate(model.note_layers):
        weights[f"note{k}_w_ih"] = layer.weight_ih_l0
        weights[f"note{k}_w_hh"] = layer.weight_hh_l0
        weights[f"note{k}_b"] = layer.bias_ih_l0 + layer.bias_hh_l0
    weights["out_w"] = model.out.weight
    weights["out_b"] = model.out.bias
    return weights


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
