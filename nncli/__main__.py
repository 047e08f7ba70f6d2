"""`python -m nncli` runs the command-line interface."""

from __future__ import annotations

from nncli.cli.app import run

run()
