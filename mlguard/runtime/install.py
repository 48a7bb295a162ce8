"""Install or remove the ``.pth`` file that turns the runtime guard on for every interpreter of an environment.

At start-up ``site`` executes each ``import ...`` line of the ``*.pth`` files in site-packages; ours imports
:mod:`mlguard.runtime.autoprotect`, which calls ``protect()``.
"""
from __future__ import annotations

import os
import sysconfig
import tempfile
from pathlib import Path

# ``site`` processes .pth files in sorted order, and mlguard has to be importable when ours runs. An editable
# install puts mlguard on sys.path with ``__editable__.ml_guard-*.pth`` (setuptools) or ``ml_guard.pth``
# (maturin); a name starting with a lowercase letter after "ml_" sorts after both ('_' < 'g' < lowercase).
PTH_NAME = "mlguard_autoprotect.pth"
PTH_LINE = "import mlguard.runtime.autoprotect\n"


class RuntimeInstallError(Exception):
    """The ``.pth`` file could not be written or removed; the message names the path and what to do."""


def site_dir() -> Path:
    """The site-packages folder of the running Python environment."""
    return Path(sysconfig.get_paths()["purelib"])


def _pth_path(directory: str | os.PathLike | None) -> Path:
    return Path(directory if directory is not None else site_dir()) / PTH_NAME


def _error(action: str, path: Path, exc: OSError) -> RuntimeInstallError:
    advice = ("run the command with the python of the virtual environment you mean to protect "
              "(`/path/to/venv/bin/python -m mlguard runtime ...`), or pass --site-dir with a site-packages "
              "folder you may write to"
              if isinstance(exc, PermissionError) else "pass --site-dir with an existing site-packages folder")
    return RuntimeInstallError(f"cannot {action} {path}: {exc.strerror or exc}; {advice}")


def installed(site_dir: str | os.PathLike | None = None) -> Path | None:
    """The installed ``.pth`` file in ``site_dir`` (default: :func:`site_dir`), or None."""
    path = _pth_path(site_dir)
    return path if path.is_file() else None


def install(site_dir: str | os.PathLike | None = None) -> Path:
    """Write the ``.pth`` file into ``site_dir`` (default: :func:`site_dir`) and return its path.

    Idempotent; the file appears whole or not at all, so a Python starting meanwhile never reads half of it.
    """
    path = _pth_path(site_dir)
    try:
        if path.is_file() and path.read_text(encoding="ascii", errors="replace") == PTH_LINE:
            return path
        # The temporary name does not end in .pth, so ``site`` ignores it.
        fd, tmp = tempfile.mkstemp(prefix=f".{PTH_NAME}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(PTH_LINE)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; every user of the environment must read it
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise _error("write", path, exc) from exc
    return path


def uninstall(site_dir: str | os.PathLike | None = None) -> bool:
    """Remove the ``.pth`` file from ``site_dir`` (default: :func:`site_dir`); True when there was one."""
    path = _pth_path(site_dir)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _error("remove", path, exc) from exc
    return True
