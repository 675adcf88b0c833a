"""The phrase models: three small recurrent networks that continue a melody one event at a time
(inputs and tokens: models.phrase_data).

    rhythm  GRU   the next note or rest and its length, given the last ones and the place in the bar
    chords  LSTM  the next beat's chord, given the chords so far and the melody of the last beat
    melody  LSTM  the next note's pitch, given the notes so far, its length, place and chord

Each is a `StepNet`: inputs (B, T, I) and a state in, logits (B, T, tokens) and the state out.
The state is one tensor, (2, layers, B, H) for an LSTM (h and c) or (1, layers, B, H) for a GRU,
so every net steps the same way; `PhraseNets` holds the three and exports them as one ONNX graph
(one step of each: `{name}_x`, `{name}_state` in; `{name}_logits`, `{name}_state_out` out).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from models import phrase_data as pd

NAMES = ("rhythm", "chords", "melody")
INPUTS = {"rhythm": pd.RHYTHM_INPUTS, "chords": pd.CHORD_INPUTS, "melody": pd.MELODY_INPUTS}
TOKENS = {"rhythm": pd.RHYTHM_TOKENS, "chords": pd.CHORD_TOKENS, "melody": pd.MELODY_TOKENS}


@dataclass
class StepNetConfig:
    name: str                  # rhythm | chords | melody
    cell: str = "lstm"         # lstm | gru
    hidden: int = 192
    layers: int = 2
    dropout: float = 0.3

    @property
    def inputs(self) -> int:
        return INPUTS[self.name]

    @property
    def tokens(self) -> int:
        return TOKENS[self.name]

    @property
    def state_parts(self) -> int:
        return 2 if self.cell == "lstm" else 1


DEFAULT_CONFIGS = {
    "rhythm": StepNetConfig("rhythm", cell="gru", hidden=128),
    "chords": StepNetConfig("chords", cell="lstm", hidden=192),
    "melody": StepNetConfig("melody", cell="lstm", hidden=192),
}


class StepNet(nn.Module):
    def __init__(self, config: StepNetConfig):
        super().__init__()
        self.config = config
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[config.cell]
        self.project = nn.Linear(config.inputs, config.hidden)
        self.rnn = rnn(config.hidden, config.hidden, num_layers=config.layers, batch_first=True,
                       dropout=config.dropout if config.layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.tokens)

    def initial_state(self, batch: int) -> torch.Tensor:
        c = self.config
        return torch.zeros(c.state_parts, c.layers, batch, c.hidden)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # x (B, T, I), state (parts, layers, B, H) -> logits (B, T, tokens), state
        if state is None:
            state = self.initial_state(x.shape[0]).to(x.device)
        hidden = torch.relu(self.project(x))
        if self.config.cell == "lstm":
            out, (h, c) = self.rnn(hidden, (state[0].contiguous(), state[1].contiguous()))
            state = torch.stack([h, c])
        else:
            out, h = self.rnn(hidden, state[0].contiguous())
            state = h.unsqueeze(0)
        return self.head(self.drop(out)), state


class PhraseNets(nn.Module):
    """The three nets; `forward` is one step of each, for export."""

    def __init__(self, configs: dict[str, StepNetConfig] | None = None):
        super().__init__()
        configs = configs or DEFAULT_CONFIGS
        self.nets = nn.ModuleDict({name: StepNet(configs[name]) for name in NAMES})

    def configs(self) -> dict[str, dict]:
        return {name: asdict(net.config) for name, net in self.nets.items()}

    @classmethod
    def from_configs(cls, configs: dict[str, dict]) -> "PhraseNets":
        return cls({name: StepNetConfig(**config) for name, config in configs.items()})

    def forward(self, rhythm_x, rhythm_state, chords_x, chords_state, melody_x, melody_state):
        # each x (B, 1, I), state (parts, layers, B, H) -> logits (B, 1, tokens), state
        out = []
        for name, x, state in (("rhythm", rhythm_x, rhythm_state), ("chords", chords_x, chords_state),
                               ("melody", melody_x, melody_state)):
            out.extend(self.nets[name](x, state))
        return tuple(out)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
