from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nncli.losses import CLASSIFY, LossInfo, losses

Pair = tuple[torch.Tensor, torch.Tensor]  # (model output, target)
Reference = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ROWS, CLASSES = 16, 5


def _values(g: torch.Generator) -> Pair:
    return 2 * torch.randn(ROWS, 3, generator=g), 2 * torch.randn(ROWS, 3, generator=g)


def _probabilities(g: torch.Generator) -> Pair:
    probs = torch.sigmoid(2 * torch.randn(ROWS, 1, generator=g))
    return probs, torch.randint(0, 2, (ROWS, 1), generator=g).float()


def _logits(g: torch.Generator) -> Pair:
    return 2 * torch.randn(ROWS, 1, generator=g), torch.randint(
        0, 2, (ROWS, 1), generator=g
    ).float()


def _steps(g: torch.Generator) -> Pair:
    """0/1 outputs of a step and 0/1 targets: every combination of right and wrong."""
    return torch.randint(0, 2, (ROWS, 1), generator=g).float(), torch.randint(
        0, 2, (ROWS, 1), generator=g
    ).float()


def _class_logits(g: torch.Generator) -> Pair:
    return 2 * torch.randn(ROWS, CLASSES, generator=g), torch.randint(
        0, CLASSES, (ROWS,), generator=g
    )


def _class_log_probabilities(g: torch.Generator) -> Pair:
    logits, labels = _class_logits(g)
    return F.log_softmax(logits, dim=1), labels


def _picked(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log_probs[i, labels[i]] for every row i."""
    return log_probs[torch.arange(len(labels)), labels]


def _huber(delta: float) -> Reference:
    def reference(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        d = (y - t).abs()
        return torch.where(d <= delta, 0.5 * d**2, delta * (d - 0.5 * delta)).mean()

    return reference


def _bce_with_logits(pos_weight: float) -> Reference:
    def reference(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -(pos_weight * t * F.logsigmoid(z) + (1 - t) * F.logsigmoid(-z)).mean()

    return reference


def _smoothed_cross_entropy(eps: float) -> Reference:
    def reference(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_probs = z - torch.logsumexp(z, dim=1, keepdim=True)
        nll = -_picked(log_probs, y)
        uniform = -log_probs.mean(dim=1)
        return ((1 - eps) * nll + eps * uniform).mean()

    return reference


@dataclass(frozen=True)
class Case:
    params: dict[str, Any]
    data: Callable[[torch.Generator], Pair]
    references: tuple[Reference, ...]  # each must equal the built loss
    label: str = ""


CASES: dict[str, tuple[Case, ...]] = {
    "mse": (
        Case(
            {},
            _values,
            (lambda y, t: ((y - t) ** 2).mean(), F.mse_loss),
        ),
    ),
    "mae": (
        Case(
            {},
            _values,
            (lambda y, t: (y - t).abs().mean(), F.l1_loss),
        ),
    ),
    "huber": (
        Case(
            {"delta": 0.5},
            _values,
            (_huber(0.5), lambda y, t: F.huber_loss(y, t, delta=0.5)),
            label="delta 0.5",
        ),
        Case({}, _values, (_huber(1.0), F.huber_loss), label="default"),
    ),
    "bce": (
        Case(
            {},
            _probabilities,
            (
                lambda p, t: -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean(),
                F.binary_cross_entropy,
            ),
        ),
    ),
    "bce_with_logits": (
        Case(
            {},
            _logits,
            (
                _bce_with_logits(1.0),
                lambda z, t: F.binary_cross_entropy(torch.sigmoid(z), t),
                F.binary_cross_entropy_with_logits,
            ),
        ),
        Case(
            {"pos_weight": 2.5},
            _logits,
            (
                _bce_with_logits(2.5),
                lambda z, t: F.binary_cross_entropy_with_logits(z, t, pos_weight=torch.tensor(2.5)),
            ),
            label="pos_weight",
        ),
    ),
    "cross_entropy": (
        Case(
            {},
            _class_logits,
            (
                lambda z, y: -_picked(torch.log(F.softmax(z, dim=1)), y).mean(),
                F.cross_entropy,
            ),
            label="no smoothing",
        ),
        Case(
            {"label_smoothing": 0.1},
            _class_logits,
            (
                lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1),
                _smoothed_cross_entropy(0.1),
            ),
            label="label smoothing",
        ),
    ),
    "nll": (
        Case(
            {},
            _class_log_probabilities,
            (lambda lp, y: -_picked(lp, y).mean(), F.nll_loss),
        ),
    ),
    # on 0/1 outputs: the fraction misclassified, with gradient (y - t) / n
    "perceptron": (
        Case(
            {},
            _steps,
            (
                lambda y, t: (y - t).abs().mean(),
                F.l1_loss,
            ),
        ),
    ),
}

# What each loss declares of its targets and of the model's output (see LossInfo).
INFO: dict[str, tuple[str, str]] = {
    "mse": ("value", "values"),
    "mae": ("value", "values"),
    "huber": ("value", "values"),
    "bce": ("binary", "probabilities"),
    "bce_with_logits": ("binary", "logits"),
    "cross_entropy": ("index", "logits"),
    "nll": ("index", "log_probabilities"),
    "perceptron": ("binary", "probabilities"),
}

LOSS_NAMES = [entry.name for entry in losses]


def _prefixed(prefix: str) -> Callable[[str], str]:
    def message(default: str) -> str:
        return f"{prefix}: {default}"

    return message


def _build(name: str, params: dict[str, Any]) -> nn.Module:
    entry = losses.get(name)
    module = entry.build(entry.params.model_validate(params))
    assert isinstance(module, nn.Module)
    return module


def _inputs(case: Case, seed: int) -> Pair:
    output, target = case.data(torch.Generator().manual_seed(seed))
    return output.requires_grad_(), target


def test_every_loss_has_cases() -> None:
    assert set(CASES) == set(LOSS_NAMES)


def test_every_loss_has_its_info_checked() -> None:
    assert set(INFO) == set(LOSS_NAMES)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_matches_torch(name: str) -> None:
    assert name in CASES, f"loss '{name}' has no case in CASES: add one"
    for i, case in enumerate(CASES[name]):
        loss_fn = _build(name, case.params)
        output, target = _inputs(case, seed=i)
        got = loss_fn(output, target)
        assert got.shape == ()
        (got_grad,) = torch.autograd.grad(got, output)
        for j, reference in enumerate(case.references):
            where = f"{name} ({case.label or i}) reference {j}"
            expected = reference(output, target)
            torch.testing.assert_close(got, expected, msg=_prefixed(where))
            (expected_grad,) = torch.autograd.grad(expected, output)
            torch.testing.assert_close(got_grad, expected_grad, msg=f"{where}: gradients differ")


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_info(name: str) -> None:
    assert name in INFO, f"loss '{name}' has no expected info in INFO: add one"
    info = losses.get(name).info
    assert isinstance(info, LossInfo)
    assert (info.target, info.output) == INFO[name]


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_classification_losses_are_the_index_and_binary_ones(name: str) -> None:
    info = losses.get(name).info
    assert isinstance(info, LossInfo)
    assert (info.target in CLASSIFY) == (INFO[name][0] != "value")


def test_huber_case_reaches_both_branches() -> None:
    """The delta 0.5 data has errors on both sides of delta, so both pieces are checked."""
    output, target = _values(torch.Generator().manual_seed(0))
    d = (output - target).abs()
    assert bool((d < 0.5).any())
    assert bool((d > 0.5).any())


def test_huber_delta_changes_the_loss() -> None:
    output, target = _values(torch.Generator().manual_seed(0))
    small = _build("huber", {"delta": 0.5})(output, target)
    large = _build("huber", {"delta": 2.0})(output, target)
    assert not torch.isclose(small, large)
    torch.testing.assert_close(large, _huber(2.0)(output, target))


def test_pos_weight_weights_the_positives_only() -> None:
    logits = torch.tensor([[0.3], [-1.2]])
    positive, negative = torch.ones(2, 1), torch.zeros(2, 1)
    plain = _build("bce_with_logits", {})
    weighted = _build("bce_with_logits", {"pos_weight": 3.0})
    torch.testing.assert_close(weighted(logits, positive), 3.0 * plain(logits, positive))
    torch.testing.assert_close(weighted(logits, negative), plain(logits, negative))


def test_label_smoothing_changes_cross_entropy() -> None:
    logits, labels = _class_logits(torch.Generator().manual_seed(3))
    plain = _build("cross_entropy", {})(logits, labels)
    smoothed = _build("cross_entropy", {"label_smoothing": 0.1})(logits, labels)
    assert not torch.isclose(plain, smoothed)


@pytest.mark.parametrize(("alias", "name"), [("l1", "mae"), ("l2", "mse"), ("ce", "cross_entropy")])
def test_aliases_build_the_same_loss(alias: str, name: str) -> None:
    entry = losses.get(alias)
    assert entry.name == name
    built = entry.build(entry.params())
    assert type(built) is type(_build(name, {}))


def test_perceptron_case_has_right_and_wrong_outputs() -> None:
    output, target = _steps(torch.Generator().manual_seed(0))
    assert {(int(y), int(t)) for y, t in zip(output, target, strict=True)} == {
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    }


def test_perceptron_loss_through_a_step_is_rosenblatts_rule() -> None:
    """One SGD step on one sample moves a step neuron by w += lr (t - y) x, b += lr (t - y)."""
    from nncli.modules import Step

    neuron = nn.Linear(2, 1)
    model = nn.Sequential(neuron, Step())
    loss_fn = _build("perceptron", {})
    lr = 0.5
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    samples = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    with torch.no_grad():  # a neuron that fires everywhere: wrong on the zeros of AND
        neuron.weight.copy_(torch.tensor([[0.3, -0.2]]))
        neuron.bias.fill_(0.1)
    moved = 0
    for x, t in zip(samples, torch.tensor([[1.0], [0.0], [0.0], [0.0]]), strict=True):
        w, b = neuron.weight.detach().clone(), neuron.bias.detach().clone()
        y = model(x[None])
        optimizer.zero_grad()
        loss_fn(y, t[None]).backward()
        optimizer.step()
        torch.testing.assert_close(neuron.weight.detach(), w + lr * (t - y.detach()) * x)
        torch.testing.assert_close(neuron.bias.detach(), b + lr * (t - y.detach()).reshape(1))
        moved += int(not torch.equal(neuron.weight.detach(), w))
    assert moved >= 1  # some sample was misclassified, so the rule was exercised


def test_class_weights_are_torchs() -> None:
    g = torch.Generator().manual_seed(5)
    logits, labels = _class_logits(g)
    weight = [0.5, 1.0, 2.0, 3.0, 0.25]
    ce = losses.get("cross_entropy")
    mine = ce.build(ce.params(weight=weight, label_smoothing=0.1))
    theirs = nn.CrossEntropyLoss(weight=torch.tensor(weight), label_smoothing=0.1)
    assert mine(logits, labels).item() == pytest.approx(theirs(logits, labels).item())
    assert mine(logits, labels).item() != pytest.approx(F.cross_entropy(logits, labels).item())

    out, t = _logits(g)
    bwl = losses.get("bce_with_logits")
    mine = bwl.build(bwl.params(weight=[3.0]))
    theirs = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0]))
    assert mine(out, t).item() == pytest.approx(theirs(out, t).item())
    # bce of probabilities: the same loss as bce_with_logits on their logits
    bce = losses.get("bce")
    mine = bce.build(bce.params(weight=[3.0]))
    assert mine(torch.sigmoid(out), t).item() == pytest.approx(theirs(out, t).item(), rel=1e-5)


def test_pos_weight_and_weight_together_are_refused() -> None:
    with pytest.raises(ValueError, match="give pos_weight or weight, not both"):
        losses.get("bce_with_logits").params(weight=[2.0], pos_weight=2.0)
