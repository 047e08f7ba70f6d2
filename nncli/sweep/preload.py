"""What a sweep's fork server imports before it forks a trial (warm.py), whatever the
experiment: what every `nncli train` imports that takes time, frozen as train freezes them
(nncli.frozen), and matplotlib, which draws the best trial's figures. Importing this module
does it. What only some experiments use (scikit-learn's data sets, MLflow, kornia) the server
imports where the sweep's file names it (warm.trial_imports)."""

from __future__ import annotations

from nncli.frozen import import_frozen

# not the CLI's consoles, which find out where they print
MODULES = [
    "torch",
    "torch.optim",
    "torch._dynamo",  # imported by the first optimizer step: seconds
    "numpy",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "nncli.engine.experiment",
    "nncli.figures.curves",
    "nncli.figures.predictions",
]

import_frozen(MODULES)
