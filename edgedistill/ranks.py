"""Which process of a torchrun job this is, read from the environment (no torch import, no process group)."""

from __future__ import annotations

import os


def is_first_rank() -> bool:
    """True outside torchrun and on its rank 0: the one process that writes the build folder and speaks."""
    return os.environ.get("RANK", "0") == "0"
