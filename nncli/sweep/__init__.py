"""Sweeps: a search space over dotted keys, a plan of trials, their state on disk, and the
workers that run them."""
