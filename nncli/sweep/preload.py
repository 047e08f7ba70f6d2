"""What a sweep's fork server imports before it forks a trial (warm.py), as its one
preload module: everything a `nncli train` imports that takes time, frozen as train
freezes them (nncli.frozen). Importing this module does it."""

from __future__ import annotations

from nncli.frozen import import_frozen

# not the CLI's consoles, which find out where they print
MODULES = [
    "torch",
    "torch.optim",
    "torch._dynamo",  # imported by the first optimizer step: seconds
    "numpy",
    "pandas",
    "sklearn.datasets",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "nncli.engine.experiment",
    "nncli.figures.curves",
    "nncli.figures.predictions",
]

import_frozen(MODULES)
