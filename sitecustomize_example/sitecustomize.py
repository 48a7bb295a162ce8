"""Example ``sitecustomize``: Python imports it at start-up, and it turns the ML Guard runtime guard on.

Put this folder on PYTHONPATH, or copy the file into site-packages (see README.md). MLGUARD_MODE and
MLGUARD_CONFIG configure the guard; MLGUARD_DISABLE (non-empty, not "0") skips it. Whatever goes wrong,
Python still starts: the reason is printed as one line on stderr.
"""
import os
import sys

if os.environ.get("MLGUARD_DISABLE", "") in ("", "0"):
    try:
        from mlguard.runtime import protect

        protect()  # no arguments: the environment decides; protect(mode="warn") would pin the mode here
    except Exception as exc:  # noqa: BLE001 - never stop Python from starting
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"ml-guard: runtime guard not active: {reason}. Fix the cause, or set MLGUARD_DISABLE=1 to start "
              "without the guard.", file=sys.stderr)
