"""ML Guard: static scanning of ML artifacts, from the CLI or in-process before a load.

Public API::

    import mlguard
    result = mlguard.scan_file("model.pt")          # -> ScanResult
    result = mlguard.scan_tree("models/")            # honours models/.ml-guard.yml
    result = mlguard.scan_bytes(data, name="x.pkl")
"""
from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, ConfigError
from .findings import Finding, Location, ScanResult, Severity
from .policy import Policy
from .scan import scan_bytes, scan_file, scan_tree

__all__ = [
    "Config", "ConfigError", "Finding", "Location", "Policy", "ScanResult", "Severity",
    "scan_bytes", "scan_file", "scan_tree", "__version__",
]
