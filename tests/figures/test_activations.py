"""`nncli plot activations --only NAME[=VALUE] --range LOW:HIGH`: a subset of the gallery,
with a parameter set, over the inputs asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.figures import activations
from nncli.layers import layers


def test_only_and_range_pick_the_curves_and_their_parameters(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[list[activations.Curve]] = []
    real = activations.plot_activations

    def spy(curves: list[activations.Curve], out: Path) -> Path:
        drawn.append(list(curves))
        return real(curves, out)

    monkeypatch.setattr(activations, "plot_activations", spy)
    out = tmp_path / "a.png"
    args = ["plot", "activations", "--only", "leaky_relu=0.2", "--only", "elu=0.5"]
    result = runner.invoke(app, [*args, "--only", "relu", "--range", "-3:2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    (curves,) = drawn
    assert [c.name for c in curves] == [
        "leaky_relu (negative_slope=0.2)",
        "elu (alpha=0.5)",
        "relu",
    ]
    leaky = curves[0]
    assert (leaky.x[0], leaky.x[-1]) == (-3.0, 2.0)
    np.testing.assert_allclose(leaky.y, np.where(leaky.x > 0, leaky.x, 0.2 * leaky.x))
    elu = curves[1]
    np.testing.assert_allclose(elu.y, np.where(elu.x > 0, elu.x, 0.5 * np.expm1(elu.x)))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "dense"], "--only dense: dense is a layer, not an activation; activations: "),
        (["--only", "elu=-1"], "--only elu=-1: alpha should be greater than 0"),
        (["--only", "relu=2"], "--only relu=2: relu takes no parameter; write --only relu"),
        (["--only", "lrelu"], "unknown layer 'lrelu' (did you mean 'relu'?)"),
        (["--range", "3:1"], "--range 3:1: LOW must be below HIGH, both finite"),
        (["--range", "a"], "--range a: expected LOW:HIGH, e.g. --range -3:3"),
    ],
)
def test_bad_choices_are_refused(
    runner: CliRunner, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "a.png"
    result = runner.invoke(app, ["plot", "activations", *args, "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error {message}"), result.stderr
    assert not out.exists()


def test_every_activation_by_default_with_its_default_parameters() -> None:
    curves = activations.activation_curves()
    names = [e.name for e in layers.in_order() if e.info.activation]
    assert [c.name for c in curves] == names
