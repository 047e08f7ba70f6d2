"""What a sweep's fork server imports before it forks a trial (warm.py), whatever the
experiment: what every `nncli train` imports that takes time, frozen as train freezes them
(nncli.frozen), and matplotlib, which draws the best trial's figures. Importing this module
does it. What only some experiments use (scikit-learn's data sets, MLflow, kornia) the server
imports where the sweep's trials name it (warm.server_imports). Only the server imports
this module: it first lets go of the sweep's stdout and stderr (warm.detach_server)."""

from __future__ import annotations

from contextlib import suppress
from importlib import import_module

from nncli.frozen import import_frozen
from nncli.sweep.warm import detach_server, server_imports

detach_server()

# everything a trial of circles imports: the command line too, whose consoles (made as it
# is imported) find no terminal here, as a trial, writing to its log, finds none
MODULES = [
    "torch",
    "torch.optim",
    "torch._dynamo",  # imported by the first optimizer step: seconds
    "torch.utils.serialization",  # by torch.save
    "numpy",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "nncli.cli.app",
    "nncli.config.lint",
    "nncli.engine.experiment",
    "nncli.figures.curves",
    "nncli.figures.predictions",
    "nncli.loggers.console",
    "nncli.report.run",
    "nncli.trained.show",
]

# Nothing here may end the server: multiprocessing passes over an ImportError alone, and
# with stderr on /dev/null no one would read why; the sweep would see its first trial fail
# to start ("Aborted!"). A module that fails here (not installed, a broken install) fails
# again in each trial, which says why in its log and the sweep names it.
with suppress(Exception):
    import_frozen(MODULES)
    import_module("nncli.cli.app").command()  # built (imported only now: after detach_server)
extra: list[str] = []
with suppress(Exception):
    extra = server_imports()
for name in extra:
    with suppress(Exception):
        import_frozen([name])
