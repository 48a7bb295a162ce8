"""The guard's state and its one decision: may this load go ahead?"""
from __future__ import annotations

import contextvars
import logging
import functools
import os
import re
import threading
import warnings
from collections import OrderedDict

from ..findings import ScanResult
from ..policy import MODES, Policy
from ..record import Record
from . import events
from .errors import UnsafeModelError, UnsafeModelWarning
from .source import Source, SourceChanged

_CACHE_SIZE = 1024
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class Settings(Record):
    """What ``protect()`` resolved from its arguments, the environment and the configuration file."""

    policy: Policy
    mode: str
    strict: bool
    allowed: frozenset
    """``pickle.allow_globals`` of the policy."""
    config: str | None
    """The configuration file read, if any."""
    event_log: str | None = None
    """``MLGUARD_EVENT_LOG``: a file that receives one JSON line per decision."""

    @classmethod
    def resolve(cls, policy=None, mode: str | None = None, strict: bool | None = None) -> "Settings":
        """Arguments first, then ``MLGUARD_MODE``/``MLGUARD_STRICT``, then the ``runtime:`` section of the
        file named by ``policy`` (a path) or ``MLGUARD_CONFIG``."""
        source = None
        if policy is None or isinstance(policy, (str, os.PathLike)):
            source = os.fspath(policy) if policy is not None else os.environ.get("MLGUARD_CONFIG") or None
            if source:
                from ..config import Config  # only with a file: protect() at interpreter start-up stays cheap
                policy = Config.load(source).policy
            else:
                policy = Policy()
        elif not isinstance(policy, Policy):
            from ..config import Config
            if not isinstance(policy, Config):
                raise TypeError("policy must be a Policy, a Config or a path to .ml-guard.yml, "
                                f"not {type(policy).__name__}")
            source, policy = policy.source, policy.policy
        mode = mode or os.environ.get("MLGUARD_MODE") or policy.mode
        if mode not in MODES:
            raise ValueError(f"runtime mode must be one of {', '.join(MODES)}, not {mode!r} (check MLGUARD_MODE)")
        if strict is None:
            env = os.environ.get("MLGUARD_STRICT", "")
            strict = env.lower() in ("1", "true", "yes", "on") if env else policy.strict
        allowed = frozenset(policy.scanner_options.get("pickle", {}).get("allow_globals", ()))
        return cls(policy=policy, mode=mode, strict=bool(strict), allowed=allowed, config=source,
                   event_log=os.environ.get("MLGUARD_EVENT_LOG") or None)


class Verdict(Record):
    """The scan of one source, kept in the cache."""

    refused: bool
    """Breaks policy (findings at or above ``fail_on``, or the scan could not be done)."""
    result: ScanResult | None
    """None when the fast path found nothing to look at closer."""
    accepted: frozenset = frozenset()
    """Pickle globals the load may import beyond the allowlist: those the scan met."""
    reason: str | None = None


class Load(Record):
    """A guarded load in progress (per thread / task)."""

    entry: str
    label: str
    accepted: frozenset


_lock = threading.RLock()
_settings: Settings | None = None
_cache: OrderedDict = OrderedDict()
_loading: contextvars.ContextVar[Load | None] = contextvars.ContextVar("mlguard_loading", default=None)


def current() -> Settings | None:
    """The active settings; None when the guard is off."""
    return _settings


def activate(settings: Settings | None) -> None:
    global _settings
    with _lock:
        _settings = settings
        _cache.clear()


def guarded(entry: str, value, call, *, one_pickle: bool = False, reopen: bool = False, bytes_only: bool = False):
    """Scan what ``value`` names, decide, then return ``call(x)`` with ``x`` what the loader must read: the
    same bytes, the same open file or stream (a copy for streams that cannot be mapped), or with ``reopen``
    (loaders that need the path itself) the path, once checked to still be the file that was scanned.

    ``one_pickle``: the loader reads a single pickle from where the source starts (``pickle.load``).
    Inside another guarded load, a pickle-reading call is covered by that load's scan and by the
    ``find_class`` check, so it is not scanned again.
    """
    settings = _settings
    if settings is None or (one_pickle and _loading.get() is not None):
        return call(value)
    if bytes_only and not isinstance(value, (bytes, bytearray, memoryview)):
        return call(value)  # the loader raises its own TypeError
    if isinstance(value, str) and _REMOTE.match(value):
        _decide(entry, value, Verdict(True, None, reason="remote sources are not scanned; download the file and "
                                                         "load it from disk"), settings)
        return call(value)
    try:
        source = Source.of(value)
    except OSError:
        raise  # the loader would fail the same way
    except Exception as exc:  # fail closed: what cannot be read cannot be vouched for
        _decide(entry, f"<{type(value).__name__}>", Verdict(True, None, reason=f"cannot read it to scan: {exc}"),
                settings)
        return call(value)
    with source:
        verdict, cached = _verdict(source, one_pickle, settings)
        _decide(entry, source, verdict, settings, cached=cached)
        token = _loading.set(Load(entry, source.label, verdict.accepted))
        try:
            if source.kind == "bytes":
                return call(value)
            if reopen and source.kind == "path":
                source.release_view()
                try:
                    source.verify_path(value)
                except (SourceChanged, OSError) as exc:
                    _decide(entry, source.label, Verdict(True, verdict.result, reason=str(exc)), settings)
                return call(value)
            result = call(source.file())
            source.finish()
            return result
        finally:
            _loading.reset(token)


def _verdict(source: Source, one_pickle: bool, settings: Settings) -> tuple[Verdict, bool]:
    key = None if source.identity is None else (*source.identity, one_pickle)
    if key is not None:
        with _lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key], True
    try:
        verdict = _scan(source, one_pickle, settings)
    except Exception as exc:  # fail closed
        verdict = Verdict(True, None, reason=f"scan failed: {type(exc).__name__}: {exc}")
    if key is not None:
        with _lock:
            _cache[key] = verdict
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return verdict, False


class _Kernels:
    """What the scan path needs, imported on first use (protect() at start-up stays cheap) and then kept."""

    def __init__(self) -> None:
        from .. import engine
        from ..scan import scan_buffer
        from ..scanners.pickle import GlobalPolicy

        self.scan_buffer = scan_buffer
        self.policy = GlobalPolicy.default()
        self.one_pickle = functools.partial(engine.pickle_facts, limits=engine.PickleLimits(max_pickles=1),
                                            compact=True)


@functools.lru_cache(maxsize=None)
def _kernels() -> _Kernels:
    return _Kernels()


def _scan(source: Source, one_pickle: bool, settings: Settings) -> Verdict:
    kernels = _kernels()
    if one_pickle:
        facts = kernels.one_pickle(source.view)
        first = facts["pickles"][0]
        if first["status"] == "stop":
            source.cut(first["end"])
            if _plain(facts, kernels.policy, settings.allowed):
                return Verdict(False, None)
    result, imports = kernels.scan_buffer(source.view, source.label, settings.policy)
    return Verdict(result.fails(settings.policy.fail_on), result, imports)


def _plain(facts: dict, policy, allowed: frozenset) -> bool:
    """One well-formed pickle importing only allowlisted globals: nothing the full scan would report."""
    if facts["ext"] or facts["raw_spans"] or facts["pickles"][0]["frame_violations"]:
        return False
    if facts["limit"] not in (None, "pickles"):  # "pickles": a second pickle follows, not read by this load
        return False
    return all(g["module"] is not None and g["name"] is not None
               and policy.verdict(*policy.normalise(g["module"], g["name"]), allowed) == "safe"
               for g in facts["globals"])


def _decide(entry: str, label: str | Source, verdict: Verdict, settings: Settings, **details) -> None:
    """Record the decision; raise in enforce mode, warn in warn mode. A Source is named (possibly hashed)
    only when an event is actually recorded."""
    if not verdict.refused:
        if settings.event_log or events.logger.isEnabledFor(logging.INFO):
            events.emit(settings.event_log, entry, _name(label), "allowed", verdict.result, **details)
        return
    label = _name(label)
    reason = verdict.reason or _worst(verdict.result, settings)
    outcome = {"enforce": "refused", "warn": "warned", "audit": "audited"}[settings.mode]
    events.emit(settings.event_log, entry, label, outcome, verdict.result, reason=reason, **details)
    message = f"ml-guard {outcome} {entry} of {label}: {reason}. {_ADVICE}"
    if outcome == "refused":
        raise UnsafeModelError(message, entry=entry, source=label, result=verdict.result)
    if outcome == "warned":
        filename, lineno = events.caller_frame()
        warnings.warn_explicit(message, UnsafeModelWarning, filename, lineno)


def _name(label: str | Source) -> str:
    return label if isinstance(label, str) else label.event_label()


_ADVICE = ("If you reviewed the file and trust it, allow its globals with pickle.allow_globals in the "
           ".ml-guard.yml named by MLGUARD_CONFIG, or set MLGUARD_MODE=warn to load it and log; "
           "`ml-guard scan FILE` shows every finding")


def _worst(result: ScanResult | None, settings: Settings) -> str:
    bad = sorted((f for f in result.findings if f.severity >= settings.policy.fail_on),
                 key=lambda f: -f.severity.rank) if result else []
    if not bad:
        return "breaks policy"
    f = bad[0]
    where = f" in {f.location.member}" if f.location.member else ""
    more = f" (and {len(bad) - 1} more at or above {settings.policy.fail_on.value})" if len(bad) > 1 else ""
    return f"{f.severity.value} {f.rule_id}: {f.message}{where}{more}"


def check_global(module: str, name: str) -> None:
    """Judge one ``find_class(module, name)`` about to import. Inside a guarded load, only allowlisted
    globals and those the load's scan met pass; elsewhere denylisted globals (in strict mode, every
    non-allowlisted one) are refused."""
    settings = _settings
    if settings is None:
        return
    policy = _kernels().policy
    module, name = policy.normalise(module, name)
    verdict = policy.verdict(module, name, settings.allowed)
    if verdict == "safe":
        return
    full = f"{module}.{name}"
    load = _loading.get()
    if load is not None:
        if full in load.accepted:
            return
        reason = f"find_class({module!r}, {name!r}): not among the globals the scan of this file met"
        entry, label = load.entry, load.label
    elif settings.strict or (verdict == "dangerous" and full not in policy.wrappers):
        what = "denylisted" if verdict == "dangerous" else "not on the allowlist (strict mode)"
        reason = f"find_class({module!r}, {name!r}): {what}"
        entry, label = "pickle.find_class", "<unpickling>"
    else:
        return
    _decide(entry, label, Verdict(True, None, reason=reason), settings, **{"global": full})
