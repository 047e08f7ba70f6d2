"""Torch modules that torch itself does not provide (imported only when a model is built)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nncli.errors import NncliError


class Step(nn.Module):
    """Heaviside step: 1.0 where x > 0, else 0.0.

    Its true derivative is zero (undefined at 0), which would stop every gradient. The
    backward pass is therefore straight-through (the identity), as in binary networks:
    with the `perceptron` loss, whose gradient at the output is (y - t), one SGD step on a
    single neuron is exactly Rosenblatt's rule w += lr (t - y) x.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x - x.detach() is exactly 0 (for finite x) but carries x's gradient. Plain tensor
        # ops, one graph with or without gradients: tracing, torch.export and ONNX take it
        return (x > 0).to(x.dtype) + (x - x.detach())


class PerceptronLoss(nn.Module):
    """The perceptron rule as a loss on 0/1 outputs y (of a `step`) and 0/1 targets t.

    Its value is the fraction misclassified, mean |y - t|; its gradient with respect to y
    is (y - t) / n. Through the straight-through step and a dense layer, plain SGD then
    updates w += lr (t - y) x / n: Rosenblatt's rule (exactly, with batch_size 1).
    """

    def forward(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        error = (y - t).detach()
        # y - y.detach() is zero in value but carries y's gradient, scaled by the error
        return (error.abs() + error * (y - y.detach())).mean()


class PositiveWeightedBCE(nn.BCELoss):
    """BCELoss with positives weighted per output column, as BCEWithLogitsLoss's
    pos_weight does: -(w t log p + (1 - t) log(1 - p)), logs clamped at -100 like torch."""

    def __init__(self, pos_weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pos_weight: torch.Tensor = self.pos_weight  # type: ignore[assignment]
        w = pos_weight * t + (1 - t)
        return nn.functional.binary_cross_entropy(p, t, weight=w)


class Residual(nn.Module):
    """body(x) + x, or body(x) + projection(x) where the body changes the shape."""

    def __init__(self, body: nn.Module, projection: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.projection = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.projection is None else self.projection(x)
        out: torch.Tensor = self.body(x) + skip
        return out


class Parallel(nn.Module):
    """Branches that each take the same input, merged by concatenating their outputs along
    the first dimension after the batch (channels, features) or by adding them."""

    def __init__(self, branches: list[nn.Module], merge: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.merge = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = [branch(x) for branch in self.branches]
        if self.merge == "concat":
            return torch.cat(outs, dim=1)
        total = outs[0]
        for out in outs[1:]:
            total = total + out
        return total


class GlobalPool(nn.Module):
    """The mean (or max) of each channel over every dimension after it: (N, C, ...) ->
    (N, C), whatever the number of spatial (or time) dimensions."""

    def __init__(self, reduce: str, over: str = "channels") -> None:
        super().__init__()
        self.reduce = reduce
        self.over = over

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.over == "time":
            return self._over_time(x)
        flat = x.flatten(2)
        out: torch.Tensor = flat.amax(dim=2) if self.reduce == "max" else flat.mean(dim=2)
        return out

    def _over_time(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, F) -> (N, F) over the real steps only (an all-padding sequence gives 0)."""
        keep = steps(x).unsqueeze(-1)
        if self.reduce == "max":
            lowest = torch.finfo(x.dtype).min
            top = x.masked_fill(~keep, lowest).amax(dim=1)
            return torch.where(keep.any(dim=1), top, torch.zeros_like(top))
        count = keep.sum(dim=1).clamp(min=1).to(x.dtype)
        return (x * keep.to(x.dtype)).sum(dim=1) / count


# --- sequences: (batch, time, features), a time step whose features are all zero is padding


def steps(x: torch.Tensor) -> torch.Tensor:
    """The padding mask of a batch of sequences (N, T, F): True at the real steps (a step
    whose features are all zero is padding: `embedding` outputs zeros for id 0, and every
    sequence layer here outputs zeros at padded steps, so the mask travels with the
    tensor through an nn.Sequential without a second input)."""
    return (x != 0).any(dim=-1)


def within(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sequence's length (1 + the last real step; 0 when it is all padding) and the
    (N, T) mask of the steps before it. Plain tensor ops, no branch on values: torch.export
    and ONNX take it."""
    positions = torch.arange(1, x.shape[1] + 1, device=x.device)
    lengths = (steps(x).long() * positions).amax(dim=1)
    return lengths, positions.unsqueeze(0) <= lengths.unsqueeze(1)


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence's first `length` steps in reverse order, its padding left in place
    (its own inverse)."""
    t = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    last = lengths.unsqueeze(1) - 1
    order = torch.where(t <= last, last - t, t)
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class Embedding(nn.Module):
    """Token ids (N, T), whole numbers carried as floats, -> vectors (N, T, D); id 0 is
    padding and gives a zero vector (so the next layers see where the padding is)."""

    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        # prepare checked every row of the training data up front (engine.model's
        # with_vocabulary): training batches need no check of their own
        self.data_checked = False

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        tracing = torch.jit.is_tracing()  # type: ignore[attr-defined, no-untyped-call]
        trusted = self.training and self.data_checked
        if not (trusted or tracing or torch.compiler.is_compiling()):
            self._check(ids)  # (a check on values: left out of an exported graph)
        index = ids.long()
        out: torch.Tensor = self.embedding(index)
        return out * (index != 0).unsqueeze(-1).to(out.dtype)

    def _check(self, ids: torch.Tensor) -> None:
        """New inputs (predict, eval) with ids the trained vocabulary does not hold."""
        vocab = self.embedding.num_embeddings
        bad = (ids < 0) | (ids >= vocab) | (ids != ids.round())
        if bool(bad.any()):
            raise NncliError(
                f"the inputs hold token id {float(ids[bad][0]):g}, but the model's embedding "
                f"takes whole ids 0..{vocab - 1} (0 is padding); map unknown tokens to an id "
                "it knows"
            )


class Recurrent(nn.Module):
    """rnn, lstm or gru over (N, T, F), layer by layer, batch first. Padding at the end of a
    sequence changes nothing: the forward direction is causal, the backward one runs on
    each sequence reversed within its length; outputs at padded steps are zero. `last`:
    the output at the last real step (bidirectional: the forward direction's there and the
    backward direction's at the first step, as torch's h_n of a packed sequence)."""

    def __init__(
        self,
        kind: str,
        size: int,
        hidden: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
        last: bool,
    ) -> None:
        super().__init__()
        cell = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        width = hidden * (2 if bidirectional else 1)
        sizes = [size] + [width] * (layers - 1)
        self.forwards = nn.ModuleList(cell(s, hidden, batch_first=True) for s in sizes)
        directions = sizes if bidirectional else []
        self.backwards = nn.ModuleList(cell(s, hidden, batch_first=True) for s in directions)
        self.dropout = nn.Dropout(dropout)
        self.hidden = hidden
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths, keep = within(x)
        keep_f = keep.unsqueeze(-1).to(x.dtype)
        # forwards only, returning the last real step: no output up to it saw a later
        # (padded) step, so padding needs no zeroing (a mask product less each way)
        masked = not self.last or len(self.backwards) > 0
        h = x
        for i, forwards in enumerate(self.forwards):
            if i > 0:
                h = self.dropout(h)
            out, _ = forwards(h)
            if len(self.backwards):
                back, _ = self.backwards[i](reverse_within(h, lengths))
                out = torch.cat([out, reverse_within(back, lengths)], dim=-1)
            h = out * keep_f if masked else out
        if not self.last:
            return h
        at = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, self.hidden)
        final: torch.Tensor = h[..., : self.hidden].gather(1, at).squeeze(1)
        if len(self.backwards):
            final = torch.cat([final, h[:, 0, self.hidden :]], dim=-1)
        return final


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """The (length, dim) table of "Attention is all you need": sin at even features, cos at
    odd ones, wavelengths from 2 pi to 10000 * 2 pi."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)[:, : dim // 2]
    return table


class PositionalEncoding(nn.Module):
    """x + the position's vector (sinusoidal, or learned), at real steps only."""

    def __init__(self, length: int, dim: int, learned: bool) -> None:
        super().__init__()
        if learned:
            self.table = nn.Parameter(torch.randn(length, dim) * 0.02)
        else:
            self.register_buffer("table", sinusoids(length, dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table: torch.Tensor = self.table
        keep = steps(x).unsqueeze(-1).to(x.dtype)
        return x + table[: x.shape[1]] * keep


class SelfAttention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's weights (in_proj: q, k, v
    stacked; out_proj), written out so that padded keys are skipped without NaN (a masked
    score is the dtype's lowest, not -inf) and torch.export and ONNX take it whole."""

    def __init__(self, dim: int, heads: int, dropout: float, causal: bool) -> None:
        super().__init__()
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.heads = heads
        self.size = dim // heads  # of a head (plain ints: a trace keeps no tensor sizes)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = steps(x)
        return self.attend(x, keep) * keep.unsqueeze(-1).to(x.dtype)

    def attend(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[1]
        q, k, v = (
            part.reshape(n, t, self.heads, self.size).transpose(1, 2)
            for part in self.in_proj(x).chunk(3, dim=-1)
        )
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.size)
        allowed = keep[:, None, None, :]
        if self.causal:
            order = torch.arange(t, device=x.device)
            allowed = allowed & (order.unsqueeze(1) >= order.unsqueeze(0))
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        weights = self.dropout(torch.softmax(scores, dim=-1))
        joined = (weights @ v).transpose(1, 2).reshape(n, t, self.heads * self.size)
        out: torch.Tensor = self.out_proj(joined)
        return out


class EncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer's computation (and parameter names) on SelfAttention."""

    def __init__(
        self, dim: int, heads: int, feedforward: int, dropout: float, causal: bool, **how: Any
    ) -> None:
        super().__init__()
        self.self_attn = SelfAttention(dim, heads, dropout, causal)
        self.linear1 = nn.Linear(dim, feedforward)
        self.linear2 = nn.Linear(feedforward, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.GELU() if how["activation"] == "gelu" else nn.ReLU()
        self.norm_first: bool = how["norm_first"]

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        def attend(h: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.dropout1(self.self_attn.attend(h, keep))
            return out

        def feed(h: torch.Tensor) -> torch.Tensor:
            hidden = self.dropout(self.activation(self.linear1(h)))
            out: torch.Tensor = self.dropout2(self.linear2(hidden))
            return out

        if self.norm_first:
            x = x + attend(self.norm1(x))
            return x + feed(self.norm2(x))
        x = self.norm1(x + attend(x))
        out: torch.Tensor = self.norm2(x + feed(x))
        return out


class TransformerEncoder(nn.Module):
    """Encoder layers over (N, T, D); the padding mask is read once at the input and the
    outputs at padded steps are zero."""

    def __init__(self, layers: list[EncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = steps(x)
        for layer in self.layers:
            x = layer(x, keep)
        return x * keep.unsqueeze(-1).to(x.dtype)


class Transpose(nn.Module):
    """(time, features) <-> (channels, length): swaps the two dimensions of a sample."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)
