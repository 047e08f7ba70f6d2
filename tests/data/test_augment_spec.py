"""`data.augment` in the experiment file: entries written like layers, each error located
at its `data.augment.N` key with a fix, the checks `validate` makes without torch, and
kornia (the `augment` extra) never imported before training needs it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXPERIMENTS, ROOT, problems, train_refused
from typer.testing import CliRunner

from nncli.cli.app import app
from nncli.config import yamlio
from nncli.config.spec import resolved, schema, validate

DIGITS = """\
data:
  source: digits
  shape: [1, 8, 8]
  augment:
{augment}
model: {{layers: [flatten, dense: 10]}}
loss: {loss}
train: {{epochs: 1, device: cpu}}
"""


def digits(*augment: str, loss: str = "cross_entropy") -> str:
    return DIGITS.format(augment="\n".join(f"    - {a}" for a in augment), loss=loss)


def test_each_form_of_an_entry_reads_as_the_transform_it_names() -> None:
    text = digits(
        "random_crop: 2",
        "horizontal_flip",
        "{rotation: 15}",
        "affine: {degrees: 5, translate: [0.1, 0.2]}",
        "{type: random_erasing, p: 0.25}",
        "mixup: {share: [0.0, 0.4]}",
    )
    spec = validate(yamlio.loads(text, "exp.yaml"))
    written = resolved(spec)["data"]["augment"]
    assert written == [
        {"type": "random_crop", "padding": 2},
        {"type": "horizontal_flip", "p": 0.5},
        {"type": "rotation", "degrees": 15.0, "p": 1.0},
        {
            "type": "affine",
            "degrees": 5.0,
            "translate": [0.1, 0.2],
            "scale": None,
            "shear": None,
            "p": 1.0,
        },
        {
            "type": "random_erasing",
            "p": 0.25,
            "scale": [0.02, 0.33],
            "ratio": [0.3, 3.3],
            "value": 0.0,
        },
        {"type": "mixup", "share": [0.0, 0.4], "p": 1.0},
    ]


def test_no_augment_leaves_config_yaml_as_it_was() -> None:
    spec = validate(yamlio.loads(digits().replace("  augment:\n", ""), "exp.yaml"))
    assert "augment" not in resolved(spec)["data"]


def test_each_mistake_is_located_at_its_entry_with_a_fix() -> None:
    text = digits(
        "rotation: {degres: 3}",
        "rotaton: 4",
        "normalize: {mean: [0.5], std: [0.2]}",
        "color_jitter: {}",
        "affine: {scale: [1.2, 0.8]}",
        "horizontal_flip: 2",
    )
    assert problems(text) == [
        "exp.yaml:5:7  data.augment.0.rotation.degrees  required key is missing",
        "exp.yaml:5:18  data.augment.0.rotation.degres  unknown key 'degres'  "
        "(did you mean 'degrees'?)",
        "exp.yaml:6:7  data.augment.1  unknown transform 'rotaton'  (did you mean 'rotation'?)",
        "exp.yaml:7:7  data.augment.2  normalize is no augmentation: data.augment "
        "changes training batches only, so val, test, eval and predict would see inputs on "
        "another scale (use data.standardize: true, statistics of the train split applied "
        "everywhere, or data.scale)",
        "exp.yaml:8:7  data.augment.3.color_jitter  color_jitter changes nothing: give "
        "brightness, contrast, saturation or hue",
        "exp.yaml:9:7  data.augment.4.affine  scale is [low, high]: 1.2 is above 0.8",
        "exp.yaml:10:7  data.augment.5.horizontal_flip.p  Input should be less than "
        "or equal to 1, got 2",
    ]


def test_without_kornia_the_file_is_refused_naming_the_extra(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nncli.loggers import extras

    found = extras.installed
    monkeypatch.setattr(extras, "installed", lambda module: module != "kornia" and found(module))
    path = write(digits("horizontal_flip"))
    assert train_refused(runner, path, tmp_path).splitlines() == [
        f"error {path}:4:3  data.augment  data.augment needs kornia, which is not "
        "installed (pip install 'nncli[augment]')",
    ]
    # a file without augment does not need it
    assert (
        runner.invoke(app, ["validate", str(write(digits().replace("  augment:\n", "")))]).exit_code
        == 0
    )


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            digits("mixup: {share: [0.1, 0.3]}", loss="nll"),
            "5:7  data.augment.0",
            "mixup mixes the labels of two samples, which needs a classification loss that "
            "takes soft targets; loss 'nll' does not (use loss: cross_entropy, or remove it)",
        ),
        (
            digits("horizontal_flip", "cutmix", "mixup"),
            "7:7  data.augment.2",
            "one mix per batch: data.augment.1 (cutmix) already mixes the labels; keep one",
        ),
        (
            digits("rotation: 10").replace("[1, 8, 8]", "[64]"),
            "4:3  data.augment",
            "the transforms take images shaped (channels, height, width), but the inputs are "
            "vectors (give data.shape, e.g. [1, 8, 8], or use an image source)",
        ),
        (
            digits("color_jitter: {brightness: 0.2, hue: 0.1}"),
            "5:7  data.augment.0",
            "color_jitter's hue need(s) 3 channels (RGB), the inputs have 1 (grayscale); keep "
            "brightness and contrast only",
        ),
        (
            digits("color_jitter: {brightness: 0.2}").replace("[1, 8, 8]", "[4, 4, 4]"),
            "5:7  data.augment.0",
            "color_jitter takes 1 (grayscale) or 3 (RGB) channels; the inputs have 4 "
            "(data.shape) - remove color_jitter or change the channels",
        ),
    ],
)
def test_validate_and_train_refuse_what_the_inputs_or_loss_cannot_take(
    runner: CliRunner,
    write: Callable[..., Path],
    tmp_path: Path,
    text: str,
    where: str,
    message: str,
) -> None:
    path = write(text)
    checked = runner.invoke(app, ["validate", str(path)])
    assert checked.exit_code == 2, checked.output
    assert f"error {path}:{where}  {message}" in checked.stderr.splitlines()
    # prepare refuses the same, before any run folder
    assert f"{path}:{where}  {message}" in train_refused(runner, path, tmp_path)


def test_flat_inputs_that_only_loading_reveals_are_refused_by_train(
    runner: CliRunner, write: Callable[..., Path], tmp_path: Path
) -> None:
    path = write(digits("rotation: 10").replace("  shape: [1, 8, 8]\n", ""))
    # validate cannot tell: a source's own shape comes with loading
    assert runner.invoke(app, ["validate", str(path)]).exit_code == 0
    assert train_refused(runner, path, tmp_path).splitlines() == [
        f"error {path}:3:3  data.augment  the transforms take images shaped (channels, height, "
        "width), but the inputs are vectors (give data.shape, e.g. [1, 8, 8], or use an image "
        "source)",
    ]


def test_the_schema_covers_augment_entries(tmp_path: Path) -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(schema()))
    good = tmp_path / "good.yaml"
    good.write_text(digits("random_crop: 2", "horizontal_flip", "{cutmix: {beta: 1.0}}"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(digits("rotaton: 4"))
    run = [str(checker), "--schemafile", str(schema_file)]
    assert subprocess.run([*run, str(good)], capture_output=True, check=False).returncode == 0
    assert subprocess.run([*run, str(bad)], capture_output=True, check=False).returncode == 1


def test_help_and_validate_of_an_augmented_file_import_neither_torch_nor_kornia() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from nncli.cli.app import main
        example = {str(EXPERIMENTS / "digits_augment.yaml")!r}
        for argv in (["nncli", "--help"], ["nncli", "validate", example]):
            sys.argv = argv
            try:
                main()
            except SystemExit as exc:
                assert exc.code in (0, None), exc.code
        print(sorted(m for m in ("torch", "kornia") if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert f"ok {EXPERIMENTS / 'digits_augment.yaml'}" in out.stdout, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_a_transform_registered_after_import_is_valid_in_files_and_the_schema(
    write: Callable[..., Path],
) -> None:
    path = write(digits("invert", "invert: {p: 0.5}", "inverted"))
    code = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from nncli.data.augment import Flip, transforms
        from nncli.config.spec import load_spec, schema
        from nncli.errors import SpecError

        @transforms.register("invert", params=Flip)
        def invert(p, shape):
            \"\"\"1 - x.\"\"\"

        try:
            load_spec(Path({str(path)!r}))
        except SpecError as exc:
            # (the key is left out: after any late registration pydantic names the source
            # twice in it, data.digits..., for every registry: not augment's doing)
            print(*(f"{{p.where}} {{p.message}} ({{p.hint}})" for p in exc.problems), sep="\\n")
        print("invert" in json.dumps(schema()))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        f"{path}:7:7 unknown transform 'inverted' (did you mean 'invert'?)",
        "True",
    ]
