"""Sweeps: the search space (space), every trial checked up front (plan), the sweep folder
and its sweep.json (state), the trials run as processes (execute, bayes), their ranking (summary)."""
