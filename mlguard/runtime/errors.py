"""What the runtime guard raises and warns."""
from __future__ import annotations

import pickle

from ..findings import ScanResult


class UnsafeModelError(pickle.UnpicklingError):
    """A load refused by the runtime guard. ``result`` holds the scan that refused it (None when the
    refusal came from a single global met during unpickling)."""

    def __init__(self, message: str, *, entry: str, source: str, result: ScanResult | None = None):
        super().__init__(message)
        self.entry = entry
        """Guarded entry point, e.g. ``torch.load``."""
        self.source = source
        """The path that was refused, or ``<bytes>``/``<stream>``."""
        self.result = result
        """The static scan behind the refusal."""


class UnsafeModelWarning(UserWarning):
    """A load that breaks policy, allowed because the guard runs in ``warn`` mode."""
