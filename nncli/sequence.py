"""Sequence layers: `embedding`, `rnn`, `lstm`, `gru`, `positional_encoding`, `attention`,
`transformer_encoder` and `transpose`. Torch-free at import, like layers.py.

A sequence sample is (time, features), batch first; token ids are (time,) whole numbers
into `embedding`, 0 being padding. A time step whose features are all zero is padding:
`embedding` outputs zeros for id 0 and every layer here outputs zeros at padded steps, so
the mask travels inside the tensor through the layer list (nncli.modules.steps)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field

from nncli.layers import LayerInfo, LayerShapeError, Shape, layers
from nncli.registry import NoParams, Params

if TYPE_CHECKING:
    from torch import nn

SEQUENCE = "samples must be (time, features); after conv1d add a `transpose` layer"


def _sequence(kind: str, shape: Shape) -> None:
    if len(shape) != 2:
        raise LayerShapeError(
            f"{kind} needs an input of 2 dimension(s) per sample, got {shape}; {SEQUENCE}"
        )


class Embedding(Params):
    dim: int = Field(gt=0, description="size of each token's vector")
    vocab: int | None = Field(
        default=None,
        ge=2,
        description="ids 0..vocab-1 (0 is padding); default: the data's largest id + 1, "
        "then written into the run's config.yaml",
    )


@layers.register("embedding", params=Embedding, positional="dim", info=LayerInfo())
def embedding(p: Embedding, shape: Shape) -> nn.Module:
    """Token ids (time,) -> vectors (time, dim); id 0 is padding (a zero vector)."""
    from nncli.modules import Embedding as Module

    if len(shape) != 1:
        raise LayerShapeError(
            f"embedding takes token ids shaped (time,) per sample, got {shape}; it is the "
            "first layer, on integer ids (N, T)"
        )
    if p.vocab is None:
        raise LayerShapeError(
            "embedding: its vocabulary is not known here (it is inferred from the data "
            "only for the first layer of model.layers); set vocab: N for ids 0..N-1"
        )
    return Module(p.vocab, p.dim)


class Recurrent(Params):
    model_config = ConfigDict(**Params.model_config, serialize_by_alias=True)

    hidden: int = Field(gt=0, description="features of the state, per direction")
    layers: int = Field(default=1, ge=1, description="stacked layers")
    bidirectional: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="between stacked layers")
    returns: Literal["last", "sequence"] = Field(
        default="last",
        alias="return",
        description="last: the output at the last real step (both directions' final states "
        "when bidirectional); sequence: every step's (time, hidden)",
    )


def _recurrent(kind: str, p: Recurrent, shape: Shape) -> nn.Module:
    from nncli.modules import Recurrent as Module

    _sequence(kind, shape)
    last = p.returns == "last"
    return Module(kind, shape[1], p.hidden, p.layers, p.bidirectional, p.dropout, last)


@layers.register("rnn", params=Recurrent, positional="hidden", info=LayerInfo())
def rnn(p: Recurrent, shape: Shape) -> nn.Module:
    """Elman recurrent layer (tanh) over (time, features); padding is skipped."""
    return _recurrent("rnn", p, shape)


@layers.register("lstm", params=Recurrent, positional="hidden", info=LayerInfo())
def lstm(p: Recurrent, shape: Shape) -> nn.Module:
    """Long short-term memory over (time, features); padding is skipped."""
    return _recurrent("lstm", p, shape)


@layers.register("gru", params=Recurrent, positional="hidden", info=LayerInfo())
def gru(p: Recurrent, shape: Shape) -> nn.Module:
    """Gated recurrent unit over (time, features); padding is skipped."""
    return _recurrent("gru", p, shape)


class Positional(Params):
    kind: Literal["sinusoidal", "learned"] = "sinusoidal"


@layers.register("positional_encoding", params=Positional, positional="kind", info=LayerInfo())
def positional_encoding(p: Positional, shape: Shape) -> nn.Module:
    """Adds each step's position vector (sinusoidal, or learned) to (time, features)."""
    from nncli.modules import PositionalEncoding

    _sequence("positional_encoding", shape)
    return PositionalEncoding(shape[0], shape[1], p.kind == "learned")


def _heads(kind: str, heads: int, shape: Shape) -> None:
    _sequence(kind, shape)
    if shape[1] % heads:
        raise LayerShapeError(
            f"{kind}: {heads} heads must divide the model size, the {shape[1]} features of "
            f"each step; use a number of heads that divides {shape[1]}"
        )


class Attention(Params):
    heads: int = Field(default=1, gt=0, description="must divide the features of a step")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="on attention weights")
    causal: bool = Field(default=False, description="each step sees only itself and earlier")


@layers.register("attention", params=Attention, positional="heads", info=LayerInfo())
def attention(p: Attention, shape: Shape) -> nn.Module:
    """Multi-head self-attention over (time, features); padded steps are not attended."""
    from nncli.modules import SelfAttention

    _heads("attention", p.heads, shape)
    return SelfAttention(shape[1], p.heads, p.dropout, p.causal)


class Transformer(Params):
    heads: int = Field(default=1, gt=0, description="must divide the features of a step")
    feedforward: int | None = Field(
        default=None, gt=0, description="hidden size of the feed-forward part; default 4 x model"
    )
    layers: int = Field(default=1, ge=1, description="stacked encoder layers")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    causal: bool = Field(default=False, description="each step sees only itself and earlier")
    activation: Literal["relu", "gelu"] = "relu"
    norm_first: bool = Field(default=False, description="layer norm before each part (pre-LN)")


@layers.register("transformer_encoder", params=Transformer, positional="heads", info=LayerInfo())
def transformer_encoder(p: Transformer, shape: Shape) -> nn.Module:
    """Transformer encoder layers (self-attention, feed-forward) over (time, features); the
    model size is the features of a step; padded steps are not attended."""
    from nncli.modules import EncoderLayer, TransformerEncoder

    _heads("transformer_encoder", p.heads, shape)
    ff = p.feedforward or 4 * shape[1]
    how = {"activation": p.activation, "norm_first": p.norm_first}
    return TransformerEncoder(
        [EncoderLayer(shape[1], p.heads, ff, p.dropout, p.causal, **how) for _ in range(p.layers)]
    )


@layers.register("transpose", info=LayerInfo(keeps_linear=True, passes="values"))
def transpose(p: NoParams, shape: Shape) -> nn.Module:
    """Swaps (time, features) and (channels, length): between conv1d and rnn or attention."""
    from nncli.modules import Transpose

    if len(shape) != 2:
        raise LayerShapeError(f"transpose swaps the two dimensions of a sample, got {shape}")
    return Transpose()
