"""`data.augment`: the transforms applied to training batches, one registry entry each,
built from kornia.augmentation (the `augment` extra) on the run's device.

Torch-free at import: the parameter models and the checks are what `validate` needs; the
builders import kornia in their bodies. engine/augment.py applies the built transforms."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from nncli.config.entries import entry_annotation
from nncli.errors import NncliError
from nncli.registry import Params, Registry

if TYPE_CHECKING:
    from torch import nn

EXTRA = "augment"  # nncli's extra that installs kornia
KORNIA = ("kornia.augmentation",)  # what a run with any transform imports
Probability = Annotated[float, Field(ge=0.0, le=1.0, description="chance a sample is changed")]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]


@dataclass(frozen=True)
class TransformInfo:
    """A transform's traits: `mix` transforms combine samples and their labels (mixup,
    cutmix), so they need class labels and a loss that takes soft targets."""

    mix: bool = False


transforms: Registry[Callable[..., Any]] = Registry("transform")


def _pair(name: str, values: Sequence[float]) -> None:
    if values[0] > values[1]:
        raise ValueError(f"{name} is [low, high]: {values[0]:g} is above {values[1]:g}")


class RandomCrop(Params):
    padding: int = Field(
        default=4, ge=0, description="zeros added on each side before a crop of the image's size"
    )


class Flip(Params):
    p: Probability = 0.5


class Rotation(Params):
    degrees: float = Field(gt=0, le=180, description="turned by up to ± this many degrees")
    p: Probability = 1.0


class Affine(Params):
    degrees: float = Field(default=0.0, ge=0, le=180, description="rotation up to ± degrees")
    translate: list[Fraction] | None = Field(
        default=None, min_length=2, max_length=2, description="[x, y]: up to this share of the side"
    )
    scale: list[Positive] | None = Field(
        default=None, min_length=2, max_length=2, description="[low, high] zoom factors"
    )
    shear: float | None = Field(default=None, ge=0, lt=90, description="up to ± degrees")
    p: Probability = 1.0

    @model_validator(mode="after")
    def _moves(self) -> Affine:
        if self.scale is not None:
            _pair("scale", self.scale)
        if not (self.degrees or self.translate or self.scale or self.shear):
            raise ValueError("affine changes nothing: give degrees, translate, scale or shear")
        return self


class ColorJitter(Params):
    brightness: float = Field(default=0.0, ge=0, description="up to ± this share")
    contrast: float = Field(default=0.0, ge=0)
    saturation: float = Field(default=0.0, ge=0, description="3 channels (RGB) only")
    hue: float = Field(default=0.0, ge=0, le=0.5, description="3 channels (RGB) only")
    p: Probability = 1.0

    @model_validator(mode="after")
    def _changes(self) -> ColorJitter:
        if not (self.brightness or self.contrast or self.saturation or self.hue):
            raise ValueError(
                "color_jitter changes nothing: give brightness, contrast, saturation or hue"
            )
        return self


class RandomErasing(Params):
    p: Probability = 0.5
    scale: list[Fraction] = Field(
        default=[0.02, 0.33],
        min_length=2,
        max_length=2,
        description="[low, high] share of the area",
    )
    ratio: list[Positive] = Field(
        default=[0.3, 3.3], min_length=2, max_length=2, description="[low, high] height/width"
    )
    value: float = Field(default=0.0, description="what the erased rectangle is filled with")

    @model_validator(mode="after")
    def _pairs(self) -> RandomErasing:
        _pair("scale", self.scale)
        _pair("ratio", self.ratio)
        return self


class MixUp(Params):
    share: list[Fraction] = Field(
        default=[0.0, 1.0],
        min_length=2,
        max_length=2,
        description="[low, high]: the paired sample's share, drawn uniformly (kornia's lambda_val)",
    )
    p: Probability = Field(default=1.0, description="chance a batch is mixed")

    @model_validator(mode="after")
    def _ordered(self) -> MixUp:
        _pair("share", self.share)
        return self


class CutMix(Params):
    beta: float = Field(
        default=1.0, gt=0, description="the kept share is drawn from Beta(beta, beta)"
    )
    p: Probability = Field(default=1.0, description="chance a batch is mixed")


# builders: (params, one sample's shape (C, H, W)) -> a kornia module taking (B, C, H, W)


@transforms.register("random_crop", params=RandomCrop, positional="padding", imports=KORNIA)
def random_crop(p: RandomCrop, shape: tuple[int, ...]) -> nn.Module:
    """Pads the image, then cuts a crop of its own size at a random place."""
    from kornia import augmentation as K

    made: nn.Module = K.RandomCrop((shape[1], shape[2]), padding=p.padding, p=1.0)
    return made


@transforms.register("horizontal_flip", params=Flip, positional="p", imports=KORNIA)
def horizontal_flip(p: Flip, shape: tuple[int, ...]) -> nn.Module:
    """Mirrors the image left to right."""
    from kornia import augmentation as K

    made: nn.Module = K.RandomHorizontalFlip(p=p.p)
    return made


@transforms.register("vertical_flip", params=Flip, positional="p", imports=KORNIA)
def vertical_flip(p: Flip, shape: tuple[int, ...]) -> nn.Module:
    """Mirrors the image top to bottom."""
    from kornia import augmentation as K

    made: nn.Module = K.RandomVerticalFlip(p=p.p)
    return made


@transforms.register("rotation", params=Rotation, positional="degrees", imports=KORNIA)
def rotation(p: Rotation, shape: tuple[int, ...]) -> nn.Module:
    """Turns the image about its centre."""
    from kornia import augmentation as K

    made: nn.Module = K.RandomRotation(p.degrees, p=p.p)
    return made


@transforms.register("affine", params=Affine, imports=KORNIA)
def affine(p: Affine, shape: tuple[int, ...]) -> nn.Module:
    """Rotates, shifts, zooms and shears the image."""
    from kornia import augmentation as K

    made: nn.Module = K.RandomAffine(
        p.degrees,
        translate=None if p.translate is None else tuple(p.translate),
        scale=None if p.scale is None else tuple(p.scale),
        shear=p.shear,
        p=p.p,
    )
    return made


@transforms.register("color_jitter", params=ColorJitter, imports=KORNIA)
def color_jitter(p: ColorJitter, shape: tuple[int, ...]) -> nn.Module:
    """Changes brightness, contrast, saturation and hue."""
    from kornia import augmentation as K

    made: nn.Module = K.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue, p=p.p)
    return made


@transforms.register("random_erasing", params=RandomErasing, positional="p", imports=KORNIA)
def random_erasing(p: RandomErasing, shape: tuple[int, ...]) -> nn.Module:
    """Fills a random rectangle of the image with `value`."""
    from kornia import augmentation as K

    scale = (p.scale[0], p.scale[1])
    ratio = (p.ratio[0], p.ratio[1])
    made: nn.Module = K.RandomErasing(scale=scale, ratio=ratio, value=p.value, p=p.p)
    return made


@transforms.register("mixup", params=MixUp, info=TransformInfo(mix=True), imports=KORNIA)
def mixup(p: MixUp, shape: tuple[int, ...]) -> nn.Module:
    """Blends each image with another of the batch, and their labels alike."""
    from kornia import augmentation as K

    share = (p.share[0], p.share[1])
    made: nn.Module = K.RandomMixUpV2(lambda_val=share, p=p.p, data_keys=["input", "class"])
    return made


@transforms.register("cutmix", params=CutMix, info=TransformInfo(mix=True), imports=KORNIA)
def cutmix(p: CutMix, shape: tuple[int, ...]) -> nn.Module:
    """Pastes a rectangle of another image of the batch; labels mixed by area."""
    from kornia import augmentation as K

    # use_correct_lambda: lambda is the share of the image kept, as in the CutMix paper
    made: nn.Module = K.RandomCutMixV2(
        beta=p.beta, p=p.p, data_keys=["input", "class"], use_correct_lambda=True
    )
    return made


def info(name: str) -> TransformInfo:
    found: TransformInfo | None = transforms.get(name).info
    return found or TransformInfo()


# --- the field and its checks -----------------------------------------------------------

_NORMALIZE = ("normalize", "normalise")


def _no_normalize(value: Any) -> Any:
    """Normalising only the training batches would feed val, test, eval and predict inputs
    on another scale: it is refused here, with the options that apply to every split."""
    name = value if isinstance(value, str) else None
    if isinstance(value, dict):
        name = value.get("type") if "type" in value else next(iter(value), None)
    if isinstance(name, str) and name.lower() in _NORMALIZE:
        raise PydanticCustomError(
            "train_only",
            "normalize is no augmentation: data.augment changes training batches only, so "
            "val, test, eval and predict would see inputs on another scale (use "
            "data.standardize: true, statistics of the train split applied everywhere, "
            "or data.scale)",
        )
    return value


def _kornia_installed(value: list[Any]) -> list[Any]:
    from nncli.loggers.extras import installed

    if value and not installed("kornia"):
        raise PydanticCustomError(
            "missing_extra",
            "data.augment needs kornia, which is not installed (pip install 'nncli[{extra}]')",
            {"extra": EXTRA},
        )
    return value


def _annotation() -> Any:
    item: Any = Annotated[entry_annotation(transforms), BeforeValidator(_no_normalize)]
    return Annotated[list[item], AfterValidator(_kornia_installed)]


if TYPE_CHECKING:

    class TransformSpec(Params):
        type: str

    Augment = list[TransformSpec]
else:
    TransformSpec = Params  # each entry is its own model, tagged by `type`
    Augment = _annotation()


def rebind_augment(models: Sequence[type[Params]]) -> None:
    """Give the `augment` field of `models` (every source's) the transforms registered by
    now: one registered after import (a plugin's) is then valid in files and the schema."""
    augment = _annotation()
    for model in models:
        model.model_fields["augment"].annotation = augment
        model.model_rebuild(force=True)


def augment_field() -> Any:
    return Field(
        default_factory=list,
        description="transforms of training batches, on the device (val/test/predict never): "
        "random_crop, horizontal_flip, vertical_flip, rotation, affine, color_jitter, "
        "random_erasing, mixup, cutmix (pip install 'nncli[augment]')",
        exclude_if=lambda augment: not augment,  # runs from before augment stay as they were
    )


def check(
    augment: Sequence[TransformSpec], shape: tuple[int, ...] | None, loss: str | None
) -> list[NncliError]:
    """What the transforms cannot do with these inputs (`shape`, one sample's; None where
    unknown) or this loss (None where unknown), each at its `data.augment.N` key."""
    if augment and shape is not None and len(shape) != 3:
        what = "vectors" if len(shape) <= 1 else f"samples shaped {list(shape)}"
        return [
            NncliError(
                f"data.augment: the transforms take images shaped (channels, height, width), "
                f"but the inputs are {what} (give data.shape, e.g. [1, 8, 8], or use an image "
                "source)",
                key="data.augment",
            )
        ]
    errors: list[NncliError] = []
    mixes = [i for i, t in enumerate(augment) if info(t.type).mix]
    for i, t in enumerate(augment):
        key = f"data.augment.{i}"
        if t.type == "color_jitter" and shape is not None and shape[0] not in (1, 3):
            errors.append(
                NncliError(
                    f"{key}: color_jitter takes 1 (grayscale) or 3 (RGB) channels; the inputs "
                    f"have {shape[0]} (data.shape) - remove color_jitter or change the channels",
                    key=key,
                )
            )
        if t.type == "color_jitter" and shape is not None and shape[0] == 1:
            given = [k for k in ("saturation", "hue") if getattr(t, k)]
            if given:
                errors.append(
                    NncliError(
                        f"{key}: color_jitter's {' and '.join(given)} need(s) 3 channels (RGB), "
                        "the inputs have 1 (grayscale); keep brightness and contrast only",
                        key=key,
                    )
                )
        if i in mixes and loss is not None and loss != "cross_entropy":
            # cross_entropy is the loss that takes soft targets (class probabilities)
            errors.append(
                NncliError(
                    f"{key}: {t.type} mixes the labels of two samples, which needs a "
                    f"classification loss that takes soft targets; loss '{loss}' does not "
                    "(use loss: cross_entropy, or remove it)",
                    key=key,
                )
            )
        if i in mixes[1:]:
            errors.append(
                NncliError(
                    f"{key}: one mix per batch: data.augment.{mixes[0]} "
                    f"({augment[mixes[0]].type}) already mixes the labels; keep one",
                    key=key,
                )
            )
    return errors


def known_shape(p: Any) -> tuple[int, ...] | None:
    """One sample's shape as the data section gives it without loading (data.shape, or an
    image source's channels and size); None where only loading tells."""
    shape = getattr(p, "shape", None)
    if shape:
        return tuple(shape)
    size, channels = getattr(p, "size", None), getattr(p, "channels", None)
    if isinstance(size, list) and isinstance(channels, int):
        return (channels, *size)
    return None
