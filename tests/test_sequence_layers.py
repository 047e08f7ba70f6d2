"""Sequence layers (embedding, rnn/lstm/gru, positional_encoding, attention,
transformer_encoder, transpose, the global pools over time): the same computation as
torch (outputs and gradients, on the same weights), padding that changes nothing, located
errors, the schema, and runs on generated token ids that train, export and resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import assert_exports_agree, interrupted_run
from torch import nn
from typer.testing import CliRunner

from nncli import sequence
from nncli.cli.app import app
from nncli.config import yamlio
from nncli.config.spec import validate
from nncli.engine.model import ShapeError, build_model
from nncli.layers import layers
from nncli.modules import Recurrent

T, FEATURES = 6, 4


def built(text: str, shape: tuple[int, ...] = (T, FEATURES)) -> nn.Sequential:
    """The model of `layers: [text]` for samples of `shape`, in eval mode."""
    spec = validate(yamlio.loads(f"data: circles\nmodel:\n  layers: [{text}]\nloss: mse\n", "f"))
    torch.manual_seed(0)
    ids = len(shape) == 1  # token ids into an embedding
    sample = torch.randint(0, 5, (2, *shape)).float() if ids else torch.randn(2, *shape)
    model, _ = build_model(spec.model, sample)
    return model.eval()


def padded(n: int = 3, lengths: tuple[int, ...] = (6, 4, 2)) -> torch.Tensor:
    """Sequences (n, T, FEATURES), nonzero up to each length, zero (padding) after."""
    x = torch.randn(n, T, FEATURES, generator=torch.Generator().manual_seed(1)) + 3.0
    for i, length in enumerate(lengths):
        x[i, length:] = 0
    return x


Pairs = list[tuple[torch.Tensor, torch.Tensor]]


def agree(model: nn.Module, by_hand: Any, x: torch.Tensor, pairs: Pairs | None = None) -> None:
    """Outputs agree, and so do the gradients of the input and of every weight: each of
    ours and its copy in the reference (`pairs`; by default by_hand uses our weights)."""
    pairs = [(p, p) for p in model.parameters()] if pairs is None else pairs
    assert len(pairs) == len(list(model.parameters()))
    x = x.clone().requires_grad_(True)
    got = model(x)
    want = by_hand(x)
    up = torch.randn_like(got)
    g_got = torch.autograd.grad(got, [x, *(a for a, _ in pairs)], up)
    g_want = torch.autograd.grad(want, [x, *(b for _, b in pairs)], up)
    torch.testing.assert_close(got, want)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b)


# --- the same computation as torch ---------------------------------------------------------


def test_every_sequence_layer_is_tested_here() -> None:
    names = {e.name for e in layers if e.build.__module__ == sequence.__name__}
    assert names == {
        "embedding",
        "rnn",
        "lstm",
        "gru",
        "positional_encoding",
        "attention",
        "transformer_encoder",
        "transpose",
    }


def test_embedding_looks_up_rows_and_gives_zeros_for_padding() -> None:
    model = built("embedding: {dim: 3, vocab: 5}", (T,))
    ids = torch.tensor([[1.0, 4, 2, 0, 0, 0], [3, 3, 0, 0, 0, 0]])
    table = model[0].embedding.weight
    want = F.embedding(ids.long(), table) * (ids != 0).unsqueeze(-1)
    torch.testing.assert_close(model(ids), want)
    assert model(ids)[0, 3:].abs().sum() == 0
    model(ids).sum().backward()
    assert table.grad is not None and table.grad[0].abs().sum() == 0  # padding never learns


def copy_into(torch_rnn: nn.RNNBase, ours: Recurrent) -> Pairs:
    """torch's weights of layer l (and its reverse) into our layer-by-layer modules; each
    of ours with torch's."""
    pairs = []
    with torch.no_grad():
        for name, value in torch_rnn.named_parameters():
            base, layer = name.rsplit("_l", 1)
            reverse = layer.endswith("_reverse")
            i = int(layer.removesuffix("_reverse"))
            target = getattr((ours.backwards if reverse else ours.forwards)[i], f"{base}_l0")
            target.copy_(value)
            pairs.append((target, value))
    return pairs


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_layers_compute_torchs_packed_sequence(kind: str, bidirectional: bool) -> None:
    """Against torch's own layer (2 layers) run on packed sequences: every step's output,
    and `last` equals h_n (both directions' final states)."""
    direction = "true" if bidirectional else "false"
    seq = built(f"{kind}: {{hidden: 5, layers: 2, bidirectional: {direction}, return: sequence}}")
    last = built(f"{kind}: {{hidden: 5, layers: 2, bidirectional: {direction}}}")
    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
    reference = cls(FEATURES, 5, num_layers=2, bidirectional=bidirectional, batch_first=True)
    pairs = copy_into(reference, seq[0])
    pairs_last = copy_into(reference, last[0])
    lengths = torch.tensor([6, 4, 2])

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
        out, state = reference(packed)
        h = state[0] if kind == "lstm" else state
        final = torch.cat([h[-2], h[-1]], dim=-1) if bidirectional else h[-1]
        full, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
        return full, final

    agree(seq, lambda x: run(x)[0], padded(), pairs)
    agree(last, lambda x: run(x)[1], padded(), pairs_last)


def test_sinusoidal_and_learned_positions_are_added_at_real_steps() -> None:
    x = padded()
    keep = (x != 0).any(-1, keepdim=True).float()
    pos = torch.arange(T).float().unsqueeze(1)
    i = torch.arange(0, FEATURES, 2).float()
    table = torch.zeros(T, FEATURES)
    table[:, 0::2] = torch.sin(pos / 10000 ** (i / FEATURES))
    table[:, 1::2] = torch.cos(pos / 10000 ** (i / FEATURES))
    agree(built("positional_encoding"), lambda h: h + table * keep, x)
    learned = built("positional_encoding: learned")
    agree(learned, lambda h: h + learned[0].table * keep, x)


def mha(model: nn.Module, heads: int) -> nn.MultiheadAttention:
    reference = nn.MultiheadAttention(FEATURES, heads, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(model.in_proj.weight)
        reference.in_proj_bias.copy_(model.in_proj.bias)
        reference.out_proj.weight.copy_(model.out_proj.weight)
        reference.out_proj.bias.copy_(model.out_proj.bias)
    return reference


@pytest.mark.parametrize("causal", [False, True])
def test_attention_is_torchs_multihead_attention_with_a_padding_mask(causal: bool) -> None:
    model = built(f"attention: {{heads: 2, causal: {str(causal).lower()}}}")
    reference = mha(model[0], 2)
    future = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None

    def by_hand(x: torch.Tensor) -> torch.Tensor:
        keep = (x != 0).any(-1)
        out, _ = reference(x, x, x, key_padding_mask=~keep, attn_mask=future, need_weights=False)
        return out * keep.unsqueeze(-1)

    ours = model[0]
    pairs = [
        (ours.in_proj.weight, reference.in_proj_weight),
        (ours.in_proj.bias, reference.in_proj_bias),
        (ours.out_proj.weight, reference.out_proj.weight),
        (ours.out_proj.bias, reference.out_proj.bias),
    ]
    agree(model, by_hand, padded(), pairs)


@pytest.mark.parametrize("how", ["", ", norm_first: true, activation: gelu, causal: true"])
def test_transformer_encoder_is_torchs_encoder_layers(how: str) -> None:
    model = built(f"transformer_encoder: {{heads: 2, layers: 2, dropout: 0.0{how}}}")
    ours = model[0].layers
    references = []
    for layer in ours:
        reference = nn.TransformerEncoderLayer(
            FEATURES,
            2,
            4 * FEATURES,
            dropout=0.0,
            activation="gelu" if "gelu" in how else "relu",
            batch_first=True,
            norm_first="norm_first" in how,
        )
        state = {
            k.replace("self_attn.in_proj.", "self_attn.in_proj_"): v
            for k, v in layer.state_dict().items()
        }
        reference.load_state_dict(state)
        references.append(reference)
    future = torch.ones(T, T, dtype=torch.bool).triu(1) if "causal" in how else None

    def by_hand(x: torch.Tensor) -> torch.Tensor:
        keep = (x != 0).any(-1)
        for reference in references:
            x = reference(x, src_mask=future, src_key_padding_mask=~keep)
        return x * keep.unsqueeze(-1)

    pairs = [
        (p, dict(r.named_parameters())[name.replace("self_attn.in_proj.", "self_attn.in_proj_")])
        for layer, r in zip(ours, references, strict=True)
        for name, p in layer.named_parameters()
    ]
    agree(model, by_hand, padded(), pairs)


@pytest.mark.parametrize("pool", ["global_avg_pool", "global_max_pool"])
def test_global_pools_over_time_skip_padded_steps(pool: str) -> None:
    x = padded()
    lengths = [6, 4, 2]

    def by_hand(h: torch.Tensor) -> torch.Tensor:
        rows = [
            h[i, :n].mean(0) if "avg" in pool else h[i, :n].amax(0) for i, n in enumerate(lengths)
        ]
        return torch.stack(rows)

    agree(built(f"{pool}: {{over: time}}"), by_hand, x)
    # over channels as before: (C, L) each channel over its length
    agree(built(pool), lambda h: h.mean(2) if "avg" in pool else h.amax(2), x)


def test_transpose_turns_conv1d_channels_into_steps_for_an_lstm() -> None:
    model = built("transpose, conv1d: {out_channels: 3, padding: same}, transpose, lstm: 2")
    x = padded()
    conv, lstm = model[1], model[3]
    h = F.conv1d(x.transpose(1, 2), conv.weight, conv.bias, padding="same").transpose(1, 2)
    torch.testing.assert_close(model(x), lstm(h))
    assert model(x).shape == (3, 2)


# --- padding changes nothing --------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [
        "lstm: {hidden: 5, bidirectional: true}",
        "gru: {hidden: 5, return: sequence}, global_max_pool: {over: time}",
        "attention: 2, global_avg_pool: {over: time}",
        "transformer_encoder: {heads: 2, causal: true}, global_avg_pool: {over: time}",
        "positional_encoding, transformer_encoder: 2, lstm: 3",
    ],
)
def test_padding_at_the_end_does_not_change_the_output(layer: str) -> None:
    """Token ids padded with zeros to 6 steps give what the same ids give unpadded."""
    model = built(f"embedding: {{dim: {FEATURES}, vocab: 9}}, {layer}", (T,))
    ids = torch.tensor([[3.0, 1, 7, 0, 0, 0], [8, 2, 5, 4, 0, 0]])
    for i, length in enumerate((3, 4)):
        alone = model(ids[i : i + 1, :length])
        torch.testing.assert_close(model(ids)[i : i + 1], alone)


# --- errors at their place in the file ------------------------------------------------------


def shape_error(text: str, shape: tuple[int, ...]) -> str:
    spec = validate(yamlio.loads(f"data: circles\nmodel:\n  layers:\n{text}loss: mse\n", "f.yaml"))
    with pytest.raises(ShapeError) as caught:
        build_model(spec.model, torch.ones(2, *shape))
    return str(caught.value)


def test_a_sequence_layer_on_vectors_is_named_at_its_line() -> None:
    assert shape_error("    - dense: 4\n    - lstm: 3\n", (2,)) == (
        "f.yaml:5:7  model.layers.1  lstm(hidden=3, layers=1, bidirectional=False, "
        "dropout=0.0, return=last): lstm needs an input of 2 dimension(s) per sample, got "
        "(4,); samples must be (time, features); after conv1d add a `transpose` layer"
    )


def test_heads_that_do_not_divide_the_model_size_are_refused() -> None:
    assert shape_error("    - attention: 3\n", (T, FEATURES)) == (
        "f.yaml:4:7  model.layers.0  attention(heads=3, dropout=0.0, causal=False): "
        "attention: 3 heads must divide the model size, the 4 features of each step; use a "
        "number of heads that divides 4"
    )


def test_an_embedding_past_the_first_layer_needs_its_vocab() -> None:
    message = shape_error("    - residual: [embedding: 4]\n", (T,))
    assert message.endswith(
        "embedding: its vocabulary is not known here (it is inferred from the data only "
        "for the first layer of model.layers); set vocab: N for ids 0..N-1"
    )
    assert message.startswith("f.yaml:4:18  model.layers.0.residual.layers.0  ")


def test_return_takes_last_or_sequence() -> None:
    text = "data: circles\nmodel:\n  layers: [lstm: {hidden: 4, return: first}]\nloss: mse\n"
    with pytest.raises(Exception) as caught:
        validate(yamlio.loads(text, "f.yaml"))
    assert str(caught.value) == (
        "f.yaml:3:30  model.layers.0.lstm.return  Input should be 'last' or 'sequence', got 'first'"
    )


# --- runs on token ids: train, vocab in config.yaml, errors, export, resume ----------------

SPEC = """\
data: {{source: npz, path: {path}}}
model:
  layers:
    - embedding: {embedding}
{layers}
    - dense: 2
loss: cross_entropy
train: {{epochs: 3, batch_size: 16}}
"""
LSTM = "    - lstm: {hidden: 6, bidirectional: true}"
TRANSFORMER = (
    "    - positional_encoding\n    - transformer_encoder: {heads: 2, dropout: 0.0}\n"
    "    - global_avg_pool: {over: time}"
)


def token_ids(folder: Path, ids: np.ndarray | None = None) -> Path:
    """64 sequences of ids 1..8 padded with 0 to 6 steps; the class: whether a 3 occurs."""
    rng = np.random.default_rng(0)
    if ids is None:
        lengths = rng.integers(2, T + 1, 64)
        ids = rng.integers(1, 9, (64, T))
        ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
    np.savez(folder / "ids.npz", x=ids, y=(ids == 3).any(axis=1).astype(int))
    return folder / "ids.npz"


def experiment(folder: Path, layers: str = LSTM, embedding: str = "8", **data: Any) -> Path:
    path = folder / "seq.yaml"
    text = SPEC.format(path=token_ids(folder, **data), embedding=embedding, layers=layers)
    path.write_text(text)
    return path


def train(runner: CliRunner, spec: Path, runs: Path) -> Path:
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(runs), "-q"])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def test_the_vocabulary_is_inferred_and_written_into_config_yaml(
    runner: CliRunner, tmp_path: Path
) -> None:
    run = train(runner, experiment(tmp_path), tmp_path / "runs")
    layers_ = yaml.safe_load((run / "config.yaml").read_text())["model"]["layers"]
    assert layers_[0] == {"type": "embedding", "dim": 8, "vocab": 9}  # ids 0..8
    assert (run / "report.html").is_file()  # show's shapes of an nn.LSTM's (output, state)
    shown = runner.invoke(app, ["show", str(run)])
    assert shown.exit_code == 0, shown.output
    assert "│ 1 │ lstm " in shown.stdout
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "ids.npz")])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1 + 64
    ids = np.load(tmp_path / "ids.npz")["x"]
    ids[3, 0] = 9  # beyond the vocabulary the run learned
    np.savez(tmp_path / "new.npz", x=ids, y=np.zeros(64, int))
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "new.npz")])
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == (
        "error the inputs hold token id 9, but the model's embedding takes whole ids 0..8 "
        "(0 is padding); map unknown tokens to an id it knows"
    )


def test_training_batches_skip_the_id_check_that_prepare_made_of_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check costs a host sync a batch (~7% of an LSTM step): prepare checks every row
    of in-memory data once, so only evaluation (new rows at eval and predict) checks."""
    from nncli.config.spec import load_spec
    from nncli.engine.fit import fit
    from nncli.engine.prepare import prepare
    from nncli.loggers.base import Loggers
    from nncli.modules import Embedding

    checked: list[bool] = []
    original = Embedding._check
    monkeypatch.setattr(
        Embedding, "_check", lambda self, ids: (checked.append(self.training), original(self, ids))
    )
    p = prepare(load_spec(experiment(tmp_path)))
    assert isinstance(p.model[0], Embedding) and p.model[0].data_checked
    checked.clear()  # building the model ran it on two samples
    fit(p, Loggers([]))
    # 3 epochs of 4 train batches, none checked; the test split, evaluated each epoch, is
    assert checked == [False] * 3


def test_ids_that_are_no_whole_numbers_are_refused(runner: CliRunner, tmp_path: Path) -> None:
    ids = np.ones((8, T))
    ids[:4, 0] = 3  # two classes
    ids[5, 2] = 2.5
    spec = experiment(tmp_path, ids=ids)
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == (
        f"error {spec}:4:7 model.layers.0 embedding takes token ids, whole numbers 0 and up "
        "(0 is padding), but the inputs hold 2.5; give the data as integer ids (N, T)"
    )
    assert not (tmp_path / "r").exists()


def test_a_vocab_too_small_for_the_ids_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    spec = experiment(tmp_path, embedding="{dim: 8, vocab: 5}")
    result = runner.invoke(app, ["train", str(spec), "--runs-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    said = " ".join(result.stderr.split())
    assert f"{spec}:4:7 model.layers.0 embedding: vocab 5 takes ids 0..4, but the inputs " in said
    assert "hold id 8; set vocab: 9 or more, or leave vocab out to infer it" in said
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("layers_", [LSTM, TRANSFORMER], ids=["lstm", "transformer"])
def test_onnx_and_torch_export_give_the_models_outputs(
    runner: CliRunner, tmp_path: Path, layers_: str
) -> None:
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    run = train(runner, experiment(tmp_path, layers_), tmp_path / "runs")
    x = torch.tensor(np.load(tmp_path / "ids.npz")["x"][:9], dtype=torch.float32)
    assert_exports_agree(runner, run, x, tmp_path)


def test_resume_is_exact(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequence_ = TRANSFORMER.replace("    - global_avg_pool: {over: time}", LSTM)
    spec = experiment(tmp_path, sequence_.replace("dropout: 0.0", "dropout: 0.2"))
    whole = train(runner, spec, tmp_path / "whole")
    folder = interrupted_run(runner, spec, tmp_path / "cut", monkeypatch, at=1)
    result = runner.invoke(app, ["resume", str(folder)])
    assert result.exit_code == 0, result.output

    def rows(run: Path) -> list[list[str]]:  # every column but the epoch's duration
        return [line.split(",")[:-1] for line in (run / "metrics.csv").read_text().splitlines()]

    assert rows(folder) == rows(whole)
    assert len(rows(whole)) == 4


# --- registry, schema, list -------------------------------------------------------------------


def test_the_schema_takes_sequence_layers_and_refuses_their_mistakes(tmp_path: Path) -> None:
    from nncli.config.spec import schema

    checker = Path(sys.executable).with_name("check-jsonschema")
    if not checker.is_file():
        pytest.skip("check-jsonschema is not installed")
    (tmp_path / "schema.json").write_text(json.dumps(schema()))
    good = experiment(tmp_path, f"{TRANSFORMER}\n    - dense: 3")
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("heads: 2", "heads: 2, return: last"))

    def check(path: Path) -> int:
        args = [str(checker), "--schemafile", str(tmp_path / "schema.json"), str(path)]
        return subprocess.run(args, capture_output=True, check=False).returncode

    assert check(good) == 0
    assert check(bad) == 1
    lstm = tmp_path / "lstm.yaml"
    lstm.write_text(good.read_text().replace("embedding: 8", "lstm: {hidden: 2, return: first}"))
    assert check(lstm) == 1
