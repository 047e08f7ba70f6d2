"""Where a run's progress goes: the Logger interface and its implementations (the run
folder, the console)."""
