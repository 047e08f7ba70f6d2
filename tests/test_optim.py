from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from nncli.optim import optimizers
from nncli.registry import Params

STEPS = 3


@dataclass(frozen=True)
class Case:
    params: dict[str, Any]  # as written in the experiment file
    cls: type[torch.optim.Optimizer]
    torch_kwargs: dict[str, Any]  # the same settings, as torch spells them


CASES: dict[str, tuple[Case, ...]] = {
    "sgd": (
        Case(
            {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
            torch.optim.SGD,
            {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        ),
        Case(
            {"lr": 0.05, "momentum": 0.5, "dampening": 0.3},
            torch.optim.SGD,
            {"lr": 0.05, "momentum": 0.5, "dampening": 0.3},
        ),
    ),
    "adam": (
        Case(
            {"lr": 0.05, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.01, "amsgrad": True},
            torch.optim.Adam,
            {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01, "amsgrad": True},
        ),
    ),
    "adamw": (
        Case(
            {"lr": 0.05, "betas": [0.85, 0.995], "weight_decay": 0.1},
            torch.optim.AdamW,
            {"lr": 0.05, "betas": (0.85, 0.995), "weight_decay": 0.1},
        ),
    ),
    "rmsprop": (
        Case(
            {"lr": 0.02, "alpha": 0.9, "momentum": 0.5, "eps": 1e-6, "weight_decay": 0.01},
            torch.optim.RMSprop,
            {"lr": 0.02, "alpha": 0.9, "momentum": 0.5, "eps": 1e-6, "weight_decay": 0.01},
        ),
    ),
    "adagrad": (
        Case(
            {"lr": 0.1, "eps": 1e-8, "weight_decay": 0.01},
            torch.optim.Adagrad,
            {"lr": 0.1, "eps": 1e-8, "weight_decay": 0.01},
        ),
    ),
}

OPTIMIZER_NAMES = [entry.name for entry in optimizers]


def _params(name: str, values: dict[str, Any]) -> Params:
    return optimizers.get(name).params.model_validate(values)


def _build(name: str, p: Params, parameters: Any) -> torch.optim.Optimizer:
    optimizer = optimizers.get(name).build(p, parameters)
    assert isinstance(optimizer, torch.optim.Optimizer)
    return optimizer


def _hyper(p: Params) -> dict[str, Any]:
    return {k: v for k, v in p.model_dump().items() if k != "name"}


def _model() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def _loss(model: nn.Module) -> torch.Tensor:
    """A quadratic in the model's parameters, with a different gradient for each."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, generator=generator)
    y = torch.randn(8, 2, generator=generator)
    out: torch.Tensor = model(x)
    return ((out - y) ** 2).mean()


def _run(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[list[torch.Tensor]]:
    """The parameters after each of STEPS steps."""
    trail = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        torch.autograd.backward(_loss(model))
        optimizer.step()
        trail.append([p.detach().clone() for p in model.parameters()])
    return trail


def test_every_optimizer_has_cases() -> None:
    assert set(CASES) == set(OPTIMIZER_NAMES)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_optimizer_class_and_hyper_parameters(name: str) -> None:
    assert name in CASES, f"optimizer '{name}' has no case in CASES: add one"
    for case in CASES[name]:
        p = _params(name, case.params)
        optimizer = _build(name, p, _model().parameters())
        assert type(optimizer) is case.cls
        [group] = optimizer.param_groups
        assert len(group["params"]) == 2
        for key, value in case.torch_kwargs.items():
            assert group[key] == value, key
        for key, value in _hyper(p).items():
            assert group[key] == value, key


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_defaults_reach_the_optimizer(name: str) -> None:
    p = optimizers.get(name).params()
    optimizer = _build(name, p, _model().parameters())
    [group] = optimizer.param_groups
    hyper = _hyper(p)
    assert hyper, "an optimizer without hyper-parameters?"
    for key, value in hyper.items():
        assert group[key] == value, key


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_steps_match_torch(name: str) -> None:
    assert name in CASES, f"optimizer '{name}' has no case in CASES: add one"
    for case in CASES[name]:
        ours = _model()
        theirs = copy.deepcopy(ours)
        got = _run(_build(name, _params(name, case.params), ours.parameters()), ours)
        expected = _run(case.cls(theirs.parameters(), **case.torch_kwargs), theirs)
        start = [p.detach() for p in _model().parameters()]
        assert not torch.equal(got[0][0], start[0]), "the step did not move the parameters"
        for step, (a, b) in enumerate(zip(got, expected, strict=True)):
            for x, y in zip(a, b, strict=True):
                torch.testing.assert_close(x, y, msg=f"{name} {case.params} step {step + 1}")


@pytest.mark.parametrize(
    ("name", "params"),
    [("sgd", {"lr": 0.05, "momentum": 0.9}), ("adam", {"lr": 0.1})],
)
def test_minimises_a_quadratic(name: str, params: dict[str, Any]) -> None:
    w = torch.zeros(4, requires_grad=True)
    optimizer = _build(name, _params(name, params), [w])
    for _ in range(500):
        optimizer.zero_grad()
        loss = ((w - 3.0) ** 2).sum()
        torch.autograd.backward(loss)
        optimizer.step()
    assert float((w.detach() - 3.0).abs().max()) < 1e-2


def test_adamw_defaults_to_decoupled_weight_decay() -> None:
    p = optimizers.get("adamw").params()
    optimizer = _build("adamw", p, _model().parameters())
    assert type(optimizer) is torch.optim.AdamW
    assert optimizer.param_groups[0]["weight_decay"] > 0
