"""A finished run's model, loaded once: predict, eval, export, show and plot use it."""
