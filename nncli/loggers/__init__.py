"""Where a run's progress goes: the Logger interface and its implementations (the run
folder, the console, and the registered `loggers:` entries: tensorboard, mlflow)."""

# the registered loggers, torch-free at import: each imports its library when built
from nncli.loggers import mlflow, tensorboard  # noqa: F401
