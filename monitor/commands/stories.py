"""`monitor` sub-commands for the stories area."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    """Add this area's commands to the CLI (filled in as the area lands)."""
