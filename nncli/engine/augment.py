"""`data.augment` at training time: the transforms built once on the run's device, applied
to each training batch (never to val, test, eval or predict).

kornia draws each sample's own parameters from torch's global random state (saved in every
checkpoint), so a seeded run repeats and a resumed one continues exactly. A mix transform
(mixup, cutmix) turns the batch's class labels into soft targets: each row the shares of
the two classes whose images it holds, which cross_entropy takes as probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nncli.data.augment import TransformSpec, check, info, transforms
from nncli.errors import NncliError


class Augment:
    """The transforms of data.augment, in the file's order: `(x, y) -> (x, target)`, where
    target is y itself, or soft targets (batch, classes) after a mix."""

    def __init__(self, steps: Sequence[tuple[nn.Module, bool]], n_classes: int) -> None:
        self.steps = list(steps)  # (kornia module, whether it mixes the labels)
        self.n_classes = n_classes

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = y
        for module, mixes in self.steps:
            if not mixes:
                x = module(x)
                continue
            x, labels = module(x, y)
            target = self._soft(labels.reshape(-1, len(y), 3)[0], cut=labels.dim() == 3)
        return x, target

    def _soft(self, labels: torch.Tensor, cut: bool) -> torch.Tensor:
        """Soft targets from kornia's rows (label, paired label, lambda): mixup's lambda is
        the paired image's share, cutmix's (use_correct_lambda) the share kept."""
        own, paired, lam = labels[:, 0].long(), labels[:, 1].long(), labels[:, 2:]
        kept = lam if cut else 1 - lam
        eye = torch.eye(self.n_classes, device=labels.device, dtype=labels.dtype)
        return kept * eye[own] + (1 - kept) * eye[paired]


def build(
    augment: Sequence[TransformSpec],
    shape: tuple[int, ...],
    loss: str,
    n_classes: int,
    device: torch.device,
) -> Augment | None:
    """The transforms for samples of `shape` on `device` (None where there are none); what
    they cannot do with these inputs or this loss raises NncliError at its key."""
    if not augment:
        return None
    errors = check(augment, shape, loss)
    if errors:
        raise errors[0]
    steps = []
    for i, spec in enumerate(augment):
        try:
            module = transforms.get(spec.type).build(spec, shape)
        except ImportError as exc:  # installed when validated, broken since
            raise NncliError(
                f"data.augment.{i}: kornia cannot be imported ({exc}); "
                "pip install 'nncli[augment]'",
                key=f"data.augment.{i}",
            ) from None
        steps.append((module.to(device), info(spec.type).mix))
    return Augment(steps, n_classes)
