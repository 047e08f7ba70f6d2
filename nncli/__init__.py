"""nncli: a command-line experiment runner for neural networks, driven by YAML files."""

from __future__ import annotations

__version__ = "0.1.0"
