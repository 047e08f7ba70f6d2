"""Matplotlib figures: a run's own (curves, boundaries, matrices) and overlays of runs."""
