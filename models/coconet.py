"""Coconet (Huang, Cooijmans, Roberts, Courville, Eck 2017): counterpoint by convolution.

The whole model in one file. A chorale is a (time, voice) grid of pitches; the net sees it as
an image with time and pitch as the two spatial axes and the voices as channels:

    pitches (B, T, V) int64, pitch index 0..P-1, -1 = no note (a rest)
    mask    (B, T, V) float32, 1 = unknown (to be predicted), 0 = given
      -> one-hot (B, V, T, P) zeroed where unknown, plus the mask broadcast over pitch
      -> (B, 2V, T, P) = 8 channels for four voices
      -> conv stack with batch norm and residual blocks
      -> logits (B, V, T, P) -> log_softmax over pitch -> (B, T, V, P)

Two flavours of the same stack:
- standard: dense 3x3 convolutions (the paper's net, shallower and narrower for 2 CPU cores);
- separable: depthwise 3x3 convolutions, each followed by a pointwise 1x1 convolution; much
  cheaper per layer, for live use.
Both dilate the residual blocks' convolutions along pitch (and the live net along time too): with
16 undilated layers a cell sees only 16 semitones either way, so the bass could not see the
melody two octaves above it; dilations 1, 2, 4, 12 let every voice see every pitch at no cost.

Voice heads (`head_channels` > 0, the live model): the live bridge asks for one step's lower
voices, top down, each given the ones above. The conv stack (the trunk) runs once, with all of
them unknown; the top unknown voice comes from its softmax, and each voice below from a small
head on the trunk's features at that step, told the pitches drawn above it since:

    features (B, C, P) at the step, the trunk's log-probs (B, P) of voice v there,
    drawn (B, V): pitches drawn after the trunk ran (-1: not drawn, the trunk knew it)
      -> h[p] = relu(in_proj[v] F[:, p] + bias[v]
                     + sum over drawn voices u above v of interval[v, u][p - q_u] + upper_proj[v, u] F[:, q_u])
      -> logits[p] = trunk log-prob[p] + out[v] . h[p] -> log_softmax over pitch -> (B, P)

one trunk call per step instead of one per voice; the heads run at the runtime in numba
(bridge/kernels.py, `voice_head_log_probs`), on their weights exported as graph outputs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class CoconetConfig:
    num_voices: int = 4
    num_pitches: int = 46
    min_pitch: int = 36          # MIDI pitch of index 0
    num_layers: int = 16         # convolutions in all: input conv, residual blocks of 2, output conv
    channels: int = 64
    separable: bool = False
    # residual-block conv i is dilated time_dilations[i % len] x pitch_dilations[i % len]
    time_dilations: tuple[int, ...] = field(default=(1,))
    pitch_dilations: tuple[int, ...] = field(default=(1, 2, 4, 12))
    head_channels: int = 0       # > 0: voice heads of this width (see the top of the file)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CoconetConfig":
        d = dict(d)
        for k in ("time_dilations", "pitch_dilations"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def time_radii(config: CoconetConfig) -> list[int]:
    """For each conv in order (the input layer, the blocks' two each, the output layer): the steps
    on either side of a cell from which it and the convs after it reach the cell's output. The
    first is the whole net's receptive radius."""
    num_blocks = (config.num_layers - 2) // 2
    dil = config.time_dilations
    own = [1] + [dil[i % len(dil)] for i in range(2 * num_blocks)] + [1]
    return [sum(own[i:]) for i in range(len(own))]


class ConvLayer(nn.Module):
    """conv -> batch norm; dense dilated 3x3, or depthwise dilated 3x3 then pointwise 1x1."""

    def __init__(self, c_in: int, c_out: int, separable: bool, dilation: tuple[int, int]):
        super().__init__()
        if separable and c_in == c_out:
            self.conv = nn.Sequential(
                nn.Conv2d(c_in, c_in, 3, padding=dilation, dilation=dilation, groups=c_in, bias=False),
                nn.Conv2d(c_in, c_out, 1, bias=False),
            )
        else:
            self.conv = nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return self.norm(self.conv(x))


class Coconet(nn.Module):
    def __init__(self, config: CoconetConfig):
        super().__init__()
        self.config = config
        c, v = config.channels, config.num_voices
        num_blocks = (config.num_layers - 2) // 2
        dil = [(config.time_dilations[i % len(config.time_dilations)],
                config.pitch_dilations[i % len(config.pitch_dilations)]) for i in range(2 * num_blocks)]
        self.input_layer = ConvLayer(2 * v, c, separable=False, dilation=(1, 1))
        self.blocks = nn.ModuleList(
            nn.ModuleList([ConvLayer(c, c, config.separable, dil[2 * b]),
                           ConvLayer(c, c, config.separable, dil[2 * b + 1])])
            for b in range(num_blocks)
        )
        self.output_layer = nn.Conv2d(c, v, 3, padding=1)
        self.heads = VoiceHeads(config) if config.head_channels else None
        self.register_buffer("pitch_ids", torch.arange(config.num_pitches), persistent=False)
        self.time_radii = time_radii(config)

    def forward(self, pitches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # pitches (B,T,V) int64, mask (B,T,V) float -> log-probs (B,T,V,P)
        return self.trunk(pitches, mask)[0]

    def trunk(self, pitches: torch.Tensor, mask: torch.Tensor,
              from_step: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # -> log-probs (B,T',V,P), and the last block's features (B,C,T',P) the voice heads read;
        # T' = T, or with `from_step` (a 0-d int64 tensor) T - from_step: only the steps from it on
        onehot = (pitches.unsqueeze(-1) == self.pitch_ids).to(mask.dtype)      # (B,T,V,P)
        known = (1.0 - mask).unsqueeze(-1)                                      # (B,T,V,1)
        x = torch.cat([onehot * known, mask.unsqueeze(-1).expand_as(onehot)], dim=2)  # (B,T,2V,P)
        x = x.permute(0, 2, 1, 3)                                              # (B,2V,T,P)
        # Each block is computed only on the steps the wanted ones can still see through it and
        # the layers after it (their time radii, left of the wanted steps: the right edge is the
        # roll's end either way). The leftmost outputs of a cropped block see its convs' zero
        # padding instead of the steps cropped away, and the next crop drops exactly those: the
        # wanted steps come out as the whole roll's would. (A crop per block, not per conv: each
        # crop costs the runtime a change of memory layout.)
        wanted = None if from_step is None else pitches.shape[1] - from_step
        radii = self.time_radii
        x = F.relu(self.input_layer(self._keep(x, wanted, radii[0])))
        for b, (first, second) in enumerate(self.blocks):
            x = self._keep(x, wanted, radii[1 + 2 * b])
            x = F.relu(x + second(F.relu(first(x))))
        x = self._keep(x, wanted, radii[-1])
        logits = self._keep(self.output_layer(x), wanted, 0).permute(0, 2, 1, 3)   # (B,T',V,P)
        return F.log_softmax(logits, dim=-1), self._keep(x, wanted, 0)

    @staticmethod
    def _keep(x: torch.Tensor, wanted: torch.Tensor | None, radius: int) -> torch.Tensor:
        # the last `wanted + radius` steps of x (B,C,T,P), all of them when fewer (a slice clamps)
        return x if wanted is None else x[:, :, -(wanted + radius):]


class VoiceHeads(nn.Module):
    """A small head per voice below the top one (see the top of the file). Index v - 1 holds
    voice v's weights; interval and upper_proj [v - 1, u] those of a drawn voice u above it."""

    def __init__(self, config: CoconetConfig):
        super().__init__()
        v, p, c, h = config.num_voices, config.num_pitches, config.channels, config.head_channels
        self.in_proj = nn.Parameter(torch.randn(v - 1, h, c) / c ** 0.5)
        self.bias = nn.Parameter(torch.zeros(v - 1, h))
        self.interval = nn.Parameter(torch.randn(v - 1, v - 1, 2 * p - 1, h) * 0.1)  # [., ., p - q + P - 1]
        self.upper_proj = nn.Parameter(torch.randn(v - 1, v - 1, h, c) / c ** 0.5)
        self.out = nn.Parameter(torch.zeros(v - 1, h))   # zero: a new head starts as the trunk's answer
        self.register_buffer("pitch_ids", torch.arange(p), persistent=False)

    def forward(self, features: torch.Tensor, trunk_log_probs: torch.Tensor, drawn: torch.Tensor,
                voice: int) -> torch.Tensor:
        # features (B,C,P) at the step, trunk_log_probs (B,P) of `voice`, drawn (B,V) -> (B,P) log-probs
        num_pitches = features.shape[-1]
        h = torch.einsum("hc,bcp->bhp", self.in_proj[voice - 1], features) + self.bias[voice - 1, :, None]
        for upper in range(voice):
            q = drawn[:, upper]                                                  # (B,)
            is_drawn = (q >= 0).to(features.dtype)[:, None, None]
            q = q.clamp(min=0)
            offsets = self.pitch_ids - q[:, None] + num_pitches - 1              # (B,P)
            h = h + self.interval[voice - 1, upper][offsets].transpose(1, 2) * is_drawn
            at_q = features.gather(2, q[:, None, None].expand(-1, features.shape[1], 1))[..., 0]  # (B,C)
            h = h + (at_q @ self.upper_proj[voice - 1, upper].T)[:, :, None] * is_drawn
        logits = trunk_log_probs + torch.einsum("h,bhp->bp", self.out[voice - 1], F.relu(h))
        return F.log_softmax(logits, dim=-1)

    def step_nll(self, features: torch.Tensor, log_probs: torch.Tensor, pitches: torch.Tensor,
                 steps: torch.Tensor, first_voices: torch.Tensor) -> torch.Tensor:
        """Mean NLL (nats) of the voices the heads draw in the examples that ask one step's
        voices from `first_voices[b]` down (`steps[b]` >= 0; -1: another kind of question), each
        head told the true pitches of the voices drawn above it (the chronological factorization
        is exact, so teacher forcing is what sampling does). features (B,C,T,P) and log_probs
        (B,T,V,P) from the trunk, pitches (B,T,V)."""
        rows = torch.nonzero(steps >= 0)[:, 0]
        if rows.numel() == 0:
            return features.new_zeros(())
        step, first = steps[rows], first_voices[rows]
        at_step = features[rows, :, step]                                        # (N,C,P)
        truth = pitches[rows, step]                                              # (N,V)
        voice_ids = torch.arange(truth.shape[1], device=truth.device)
        drawn = torch.where(voice_ids >= first[:, None], truth, torch.full_like(truth, -1))
        total, count = features.new_zeros(()), 0
        for voice in range(1, truth.shape[1]):
            asked = (first < voice) & (truth[:, voice] >= 0)
            if not asked.any():
                continue
            head = self(at_step[asked], log_probs[rows[asked], step[asked], voice], drawn[asked], voice)
            total = total - head.gather(1, truth[asked, voice, None]).sum()
            count += int(asked.sum())
        return total / max(count, 1)


def masked_nll(log_probs: torch.Tensor, pitches: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood (nats) per target note (`target` (B,T,V): 1 = counts).

    Orderless NADE (Uria et al. 2014, as in Coconet): each example's summed loss over its masked
    cells is rescaled by cells / masked cells; dividing by cells again gives the per-note mean over
    the masked cells of each example, averaged over the batch. Rests carry no loss.
    """
    has_note = (pitches >= 0).to(log_probs.dtype)
    nll = -log_probs.gather(-1, pitches.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B,T,V)
    weight = target * has_note
    per_example = (nll * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2)).clamp(min=1.0)
    return per_example.mean()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
