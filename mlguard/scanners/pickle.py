"""Pickle streams: every import the stream makes, judged against ``rules/pickle_globals.yaml``."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Iterator

from .. import engine
from ..findings import Finding
from ..rules import load_data
from ..sniff import Format
from .interface import Artifact, Option, ScanContext

_LIMIT_RULE = "pickle-limit-exceeded"


@dataclass(frozen=True)
class GlobalPolicy:
    """The allow/deny lists of ``pickle_globals.yaml``, plus names the user allows."""

    aliases: dict
    safe: frozenset
    dangerous: frozenset
    dangerous_modules: frozenset
    suspicious_modules: frozenset
    deserializers: frozenset

    @classmethod
    @functools.lru_cache(maxsize=None)
    def default(cls) -> "GlobalPolicy":
        data = load_data("pickle_globals.yaml")
        return cls(aliases=dict(data["module_aliases"]), safe=frozenset(data["safe"]),
                   dangerous=frozenset(data["dangerous"]), dangerous_modules=frozenset(data["dangerous_modules"]),
                   suspicious_modules=frozenset(data["suspicious_modules"]),
                   deserializers=frozenset(data["deserializers"]))

    def normalise(self, module: str) -> str:
        """The module CPython imports for ``module`` (``__builtin__`` -> ``builtins``, ``posix`` -> ``os``)."""
        head, dot, rest = module.partition(".")
        return self.aliases.get(head, head) + dot + rest

    def _in(self, module: str, modules: frozenset) -> bool:
        parts = module.split(".")
        return any(".".join(parts[:i]) in modules for i in range(1, len(parts) + 1))

    def verdict(self, module: str, name: str, allowed: frozenset = frozenset()) -> str:
        """``dangerous``, ``safe``, ``suspicious`` or ``unknown`` for the global ``module``.``name``.

        A dotted ``name`` walks attributes: any module or callable reached on the way counts
        (``('logging', 'os.system')`` is ``os.system``).
        """
        module = self.normalise(module)
        full = f"{module}.{name}"
        attrs = name.split(".")
        walked = [".".join(attrs[i:]) for i in range(len(attrs) - 1)]  # ('logging', 'os.system') -> os.system
        if full in self.dangerous or any(chain in self.dangerous for chain in walked):
            return "dangerous"
        if full in self.safe:
            return "safe"
        if self._in(module, self.dangerous_modules) or any(
                self._in(chain.rsplit(".", 1)[0], self.dangerous_modules) for chain in walked):
            return "dangerous"
        if full in allowed:
            return "safe"
        if self._in(module, self.suspicious_modules):
            return "suspicious"
        return "unknown"


class PickleScanner:
    name = "pickle"
    formats = frozenset({Format.PICKLE})
    options = {
        "allow_globals": Option("str-list", (), "Extra exact globals (module.name) your own pickles may import."),
        "max_opcodes": Option("int", engine.DEFAULT_PICKLE_LIMITS.max_opcodes, "Opcodes analysed per file."),
    }

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        opts = ctx.options(self)
        limits = engine.PickleLimits(max_opcodes=opts["max_opcodes"])
        facts = engine.pickle_facts(artifact.buffer(), limits=limits)
        yield from self._globals(artifact, ctx, facts, frozenset(opts["allow_globals"]))
        yield from self._stream(artifact, ctx, facts)

    def _globals(self, artifact: Artifact, ctx: ScanContext, facts: dict,
                 allowed: frozenset) -> Iterable[Finding | None]:
        policy = GlobalPolicy.default()
        called = {c["target"] for c in facts["calls"] if c["target"] is not None}
        seen: dict[tuple[str, str], dict] = {}
        for index, g in enumerate(facts["globals"]):
            if g["module"] is None or g["name"] is None:
                yield ctx.finding(artifact, "pickle-stack-global-opaque",
                                  f"{g['opcode']} imports a name computed at load time; its target cannot be known",
                                  offset=g["offset"], evidence={"opcode": g["opcode"], "resolution": g["resolution"]},
                                  key=f"opaque@{g['offset']}")
                continue
            module, name = policy.normalise(g["module"]), g["name"]
            verdict = policy.verdict(module, name, allowed)
            if verdict == "safe":
                continue
            entry = seen.setdefault((module, name), {"offset": g["offset"], "opcode": g["opcode"], "count": 0,
                                                     "called": False, "verdict": verdict, "as": g["module"]})
            entry["count"] += 1
            entry["called"] |= index in called
        for (module, name), e in seen.items():
            rule, why = {
                "dangerous": ("pickle-dangerous-global", "known code-execution primitive"),
                "suspicious": ("pickle-suspicious-module", "module with network, file or process side effects"),
                "unknown": ("pickle-unknown-call", "not on the allowlist, and called") if e["called"]
                else ("pickle-unknown-global", "not on the allowlist"),
            }[e["verdict"]]
            times = f", {e['count']} references" if e["count"] > 1 else ""
            yield ctx.finding(
                artifact, rule, f"{'calls' if e['called'] else 'imports'} {module}.{name} ({why}{times})",
                offset=e["offset"], snippet=f"{e['as']}.{name}",
                evidence={"module": module, "name": name, "opcode": e["opcode"], "called": e["called"],
                          "count": e["count"]}, key=f"{module}.{name}")

    def _stream(self, artifact: Artifact, ctx: ScanContext, facts: dict) -> Iterable[Finding | None]:
        for ext in facts["ext"]:
            yield ctx.finding(artifact, "pickle-ext-opcode",
                              f"{ext['opcode']} imports extension code {ext['code']} from the copyreg registry",
                              offset=ext["offset"], evidence={"code": ext["code"]}, key=f"ext{ext['code']}")
        for p in facts["pickles"]:
            if p["status"] in ("error", "truncated"):
                yield ctx.finding(artifact, "pickle-parse-error",
                                  f"pickle #{p['index'] + 1} is malformed ({p['error']}) at offset {p['error_offset']}; "
                                  "opcodes before this point still run when loaded",
                                  offset=p["error_offset"], evidence={"pickle": p["index"], "error": p["error"]},
                                  key=f"{p['index']}")
        if facts["limit"]:
            yield ctx.finding(artifact, _LIMIT_RULE, f"analysis stopped at the {facts['limit']} limit; the rest was not checked",
                              evidence={"limit": facts["limit"]})


SCANNER = PickleScanner()
