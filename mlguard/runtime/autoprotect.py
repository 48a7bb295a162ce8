"""Turns the runtime guard on at interpreter start-up; imported by the ``.pth`` line ``ml-guard runtime install``
writes. ``protect()`` reads MLGUARD_MODE and MLGUARD_CONFIG; MLGUARD_DISABLE (non-empty, not "0") skips it.

Never raises: a failure is one line on stderr and Python starts unguarded.
"""
import os
import sys


def _activate() -> None:
    if os.environ.get("MLGUARD_DISABLE", "") not in ("", "0"):
        return
    try:
        from . import protect

        protect()
    except Exception as exc:  # noqa: BLE001 - a broken guard must not stop Python from starting
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"ml-guard: runtime guard not active: {reason}. Fix the cause, set MLGUARD_DISABLE=1 to start "
              "without the guard, or remove it with `ml-guard runtime uninstall`.", file=sys.stderr)


_activate()
