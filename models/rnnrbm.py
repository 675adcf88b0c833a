"""RNN-RBM (Boulanger-Lewandowski, Bengio, Vincent 2012): a recurrent network that sets, at every
frame, the biases of a restricted Boltzmann machine over the notes sounding in that frame.

The whole model in one file. A piece is a piano roll of frames (one per quarter note for the JSB
data), each a 0/1 vector over the pitches the data uses:

    v       (B, T, P) float32, 1 = the pitch sounds in that frame
    state   u_t = tanh(b_u + W_uu u_{t-1} + W_vu v_{t-1})      (B, T, U)   summary of frames < t
            (u_{-1} = 0 and v_{-1} = silence: the first frame's state is tanh(b_u))
    biases  visible b_v + W_uv u_t   (B, T, P);  hidden b_h + W_uh u_t   (B, T, H)
    RBM     p(v_t | v_<t) = exp(-F_t(v_t)) / Z_t,
            F_t(v) = -v.b_v,t - sum_j softplus(b_h,t,j + (v W)_j),  W (P, H) shared by all frames

Training is contrastive divergence (CD-k): the cost F_t(v_data) - F_t(v_k), with v_k the end of a
k-step Gibbs chain started at the data and treated as a constant; its gradient is the CD
estimate of the log-likelihood gradient for W and the biases, and flows into the RNN through the
biases. `step` is what the runtime exports: one frame's recurrence, previous notes and state in,
next state and the RBM's biases (and its weights) out.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class RnnRbmConfig:
    min_pitch: int = 43          # MIDI pitch of visible unit 0 (the JSB quarter data: 43..96)
    num_pitches: int = 54
    hidden: int = 150            # RBM hidden units
    recurrent: int = 100         # RNN units
    cd_steps: int = 15           # k of CD-k in training
    steps_per_frame: int = 4     # 16th notes per frame (quarter-note frames)
    dropout: float = 0.0         # training only: share of the previous frame's notes hidden from the RNN

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RnnRbmConfig":
        return cls(**d)


class RnnRbm(nn.Module):
    def __init__(self, config: RnnRbmConfig):
        super().__init__()
        self.config = config
        p, h, u = config.num_pitches, config.hidden, config.recurrent
        # small random weights, zero biases (as in the paper's code); orthogonal recurrence keeps
        # early gradients from vanishing or exploding over 100+ frames
        self.weights = nn.Parameter(0.01 * torch.randn(p, h))             # W    (P, H)
        self.visible_bias = nn.Parameter(torch.zeros(p))                   # b_v  (P,)
        self.hidden_bias = nn.Parameter(torch.zeros(h))                    # b_h  (H,)
        self.state_to_visible = nn.Parameter(0.0001 * torch.randn(u, p))   # W_uv (U, P)
        self.state_to_hidden = nn.Parameter(0.0001 * torch.randn(u, h))    # W_uh (U, H)
        self.notes_to_state = nn.Parameter(0.01 * torch.randn(p, u))       # W_vu (P, U)
        self.state_to_state = nn.Parameter(0.5 * torch.nn.init.orthogonal_(torch.empty(u, u)))  # W_uu
        self.state_bias = nn.Parameter(torch.zeros(u))                     # b_u  (U,)

    # ---- the recurrence -------------------------------------------------------------------

    def step(self, notes: torch.Tensor, state: torch.Tensor):
        """One frame: (B, P) notes of the previous frame and (B, U) the state before it ->
        (B, U) next state, (B, P) visible and (B, H) hidden biases of this frame, (P, H) weights."""
        state = torch.tanh(self.state_bias + notes @ self.notes_to_state + state @ self.state_to_state)
        return (state, self.visible_bias + state @ self.state_to_visible,
                self.hidden_bias + state @ self.state_to_hidden, self.weights * 1.0)

    forward = step  # what export_onnx traces

    def biases(self, v: torch.Tensor):
        """(B, T, P) frames -> (B, T, P) visible and (B, T, H) hidden biases of every frame,
        each given the frames before it."""
        batch, steps, _ = v.shape
        # inputs from the previous frame, all at once: silence before the first
        previous = torch.cat([v.new_zeros(batch, 1, v.shape[2]), v[:, :-1]], dim=1)
        # 229 chorales overfit 44k parameters within a few dozen epochs: dropping input notes
        # makes the RNN rely on more than the last chord (off at run time: eval mode)
        previous = F.dropout(previous, self.config.dropout, self.training)
        drive = self.state_bias + previous @ self.notes_to_state                # (B, T, U)
        state = v.new_zeros(batch, self.config.recurrent)
        states = []
        for t in range(steps):
            state = torch.tanh(drive[:, t] + state @ self.state_to_state)
            states.append(state)
        states = torch.stack(states, dim=1)                                     # (B, T, U)
        return (self.visible_bias + states @ self.state_to_visible,
                self.hidden_bias + states @ self.state_to_hidden)

    # ---- the RBM ----------------------------------------------------------------------------

    def free_energy(self, v, visible_bias, hidden_bias):
        """(..., P) frames and their biases -> (...) free energies F(v)."""
        return -(v * visible_bias).sum(-1) - F.softplus(hidden_bias + v @ self.weights).sum(-1)

    @torch.no_grad()
    def gibbs(self, v, visible_bias, hidden_bias, steps: int):
        """`steps` block Gibbs steps from v in each frame's RBM; the last visible sample."""
        for _ in range(steps):
            h = torch.bernoulli(torch.sigmoid(hidden_bias + v @ self.weights))
            v = torch.bernoulli(torch.sigmoid(visible_bias + h @ self.weights.T))
        return v

    def cd_cost(self, v, frame_mask, steps: int | None = None, use_rnn: bool = True):
        """Mean over real frames (frame_mask (B, T) 1 = a frame, 0 = padding) of F(v) - F(v_k).

        Its value is no likelihood, but its gradient is CD-k's. `use_rnn=False` trains the RBM
        alone (the paper's pre-training): every frame gets the plain biases b_v, b_h."""
        if use_rnn:
            visible_bias, hidden_bias = self.biases(v)
        else:
            visible_bias = self.visible_bias.expand(*v.shape[:2], -1)
            hidden_bias = self.hidden_bias.expand(*v.shape[:2], -1)
        negative = self.gibbs(v, visible_bias.detach(), hidden_bias.detach(), steps or self.config.cd_steps)
        gap = self.free_energy(v, visible_bias, hidden_bias) - self.free_energy(negative, visible_bias, hidden_bias)
        return (gap * frame_mask).sum() / frame_mask.sum().clamp(min=1.0)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
