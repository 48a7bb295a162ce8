"""Pickle streams: every import the stream makes, judged against ``rules/pickle_globals.yaml``."""
from __future__ import annotations

import _compat_pickle
import bisect
import functools
from typing import Iterable, Iterator

from .. import engine
from ..findings import Finding, Severity
from ..record import Record
from ..rules import load_data
from ..sniff import Format, sniff_bytes
from .interface import Artifact, Option, ScanContext

MAX_EMBED_DEPTH = 8
"""Payloads embedded in payloads are followed this deep (containers count too)."""
_PREVIEW = 120


class GlobalPolicy(Record):
    """The allow/deny lists of ``pickle_globals.yaml``, plus names the user allows."""

    aliases: dict
    safe: frozenset
    dangerous: frozenset
    dangerous_modules: frozenset
    suspicious_modules: frozenset
    deserializers: frozenset
    unimportable_modules: frozenset
    wrappers: dict

    @classmethod
    @functools.lru_cache(maxsize=None)
    def default(cls) -> "GlobalPolicy":
        data = load_data("pickle_globals.yaml")
        return cls(aliases=dict(data["module_aliases"]),
                   safe=frozenset(data["safe"]) | frozenset(data["safe_curated"]),
                   dangerous=frozenset(data["dangerous"]), dangerous_modules=frozenset(data["dangerous_modules"]),
                   suspicious_modules=frozenset(data["suspicious_modules"]),
                   deserializers=frozenset(data["deserializers"]),
                   unimportable_modules=frozenset(data["unimportable_modules"]), wrappers=dict(data["wrappers"]))

    def normalise(self, module: str, name: str) -> tuple[str, str]:
        """The module and name CPython resolves: Python 2 renames (``__builtin__``, ``cPickle``, ...) as
        ``_compat_pickle`` maps them, then the aliases of the data file (``posix``/``nt`` are ``os``)."""
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        head, dot, rest = module.partition(".")
        return self.aliases.get(head, head) + dot + rest, name

    @staticmethod
    def _in(module: str, modules: frozenset) -> bool:
        parts = module.split(".")
        return any(".".join(parts[:i]) in modules for i in range(1, len(parts) + 1))

    def verdict(self, module: str, name: str, allowed: frozenset = frozenset()) -> str:
        """``dangerous``, ``safe``, ``suspicious`` or ``unknown`` for a normalised global ``module.name``.

        A dotted ``name`` walks attributes: any module or callable reached on the way counts
        (``('logging', 'os.system')`` is ``os.system``). Precedence is documented in the data file.
        """
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
        if full in allowed or self._in(module, self.unimportable_modules):
            return "safe"
        if self._in(module, self.suspicious_modules):
            return "suspicious"
        return "unknown"

    def wrapped(self, full: str, call: dict, facts: dict, data) -> tuple[str, str] | None:
        """The global that a call of the wrapper ``full`` stands for, when the call has the wrapper's shape."""
        shape = self.wrappers.get(full)
        args = {a["index"]: a for a in call["args"]}
        target = args.get(0)
        if shape is None or target is None or target["kind"] != "global":
            return None
        g = facts["globals"][target["global"]]
        if g["module"] is None or g["name"] is None:
            return None
        module, name = self.normalise(g["module"], g["name"])
        if shape == "callable":
            return module, name
        attr = args.get(1)
        if attr is None or attr["kind"] != "str" or len(call["args"]) != 2:
            return None
        text = bytes(data[attr["offset"]:attr["offset"] + attr["length"]]).decode("utf-8", "replace")
        return module, f"{name}.{text}"

    def wraps_only_safe(self, full: str, calls: list[dict], facts: dict, data, allowed: frozenset) -> bool:
        """Whether ``full`` is a wrapper whose every construction wraps a safe global. BUILD calls are not
        constructions: a global smuggled in through the state is judged on its own like every global."""
        built = [c for c in calls if c["opcode"] != "BUILD"]
        if full not in self.wrappers or not built:
            return False
        for call in built:
            wrapped = self.wrapped(full, call, facts, data)
            if wrapped is None or self.verdict(*wrapped, allowed) != "safe":
                return False
        return True

    def is_deserializer(self, module: str, name: str) -> bool:
        attrs = name.split(".")
        return any(".".join([module, *attrs][i:]) in self.deserializers for i in range(len(attrs)))


_RULES = {
    "dangerous": ("pickle-dangerous-global", "known code-execution primitive"),
    "suspicious": ("pickle-suspicious-module", "module with network, file or process side effects"),
}
MAX_IMPORT_FINDINGS = 1000
"""Findings for distinct imports off the allowlist in one artifact; beyond it, one ``pickle-limit-exceeded``
counts the rest (a crafted stream of 10^6 distinct imports took 90 s and 5 GB to report one by one)."""


def _rule_of(name: str, e: dict) -> tuple[str, str]:
    """The rule and the reason for one distinct import off the allowlist."""
    if e["verdict"] in _RULES:
        return _RULES[e["verdict"]]
    if "." in name:
        return "pickle-dotted-global", "dotted name walking attributes, not on the allowlist"
    if e["calls"]:
        return "pickle-unknown-call", "not on the allowlist, and called"
    return "pickle-unknown-global", "not on the allowlist"


def _rank(ctx: ScanContext, rule_id: str) -> int:
    """Rank of a rule's severity under the policy (-1 when disabled)."""
    severity = ctx.policy.severity_of(ctx.catalog[rule_id])
    return -1 if severity is None else severity.rank


class PickleScanner:
    name = "pickle"
    formats = frozenset({Format.PICKLE})
    options = {
        "allow_globals": Option("str-list", (), "Extra exact globals (module.name) your own pickles may import."),
        "max_opcodes": Option("int", engine.DEFAULT_PICKLE_LIMITS.max_opcodes,
                              "Opcodes analysed per file; past it the rest is reported (pickle-limit-exceeded)."),
        "max_memo": Option("int", 4_000_000,
                           "Memo values kept per pickle, 8 bytes each while scanning (a 32 MB pickle of a list "
                           "of small dicts memoizes 1.9 M); past it only globals are kept and "
                           "the analysis goes on."),
        "max_facts": Option("int", engine.DEFAULT_PICKLE_LIMITS.max_facts,
                            "Facts kept per file (distinct imports, call groups, joblib arrays, ...; ~530 bytes "
                            "each); past it the rest is reported (pickle-limit-exceeded)."),
    }

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        opts = ctx.options(self)
        limits = _limits(opts["max_opcodes"], opts["max_memo"], opts["max_facts"])
        views = [self._facts(artifact, limits, follow_joblib=True)]
        if views[0]["raw_spans"]:
            # joblib.load skips the array bytes; pickle.load would run them as opcodes: check both readings
            views.append(self._facts(artifact, limits, follow_joblib=False))
        views = [self._facts(artifact, limits, follow_joblib=i == 0, compact=False) if _grouped_arguments(view)
                 else view for i, view in enumerate(views)]
        yield from self._globals(artifact, ctx, views, artifact.buffer(), frozenset(opts["allow_globals"]))
        yield from self._stream(artifact, ctx, views[0])

    @staticmethod
    def _facts(artifact: Artifact, limits, follow_joblib: bool, compact: bool = True) -> dict:
        """Facts, by default compact: the calls of each callable come as one group with its first call's arguments
        (an object column of a big DataFrame makes millions of calls)."""
        if artifact.fs_path is not None and artifact.member is None:  # a file: bounded memory, pages released
            return engine.pickle_facts_file(artifact.fs_path, limits=limits, follow_joblib=follow_joblib,
                                            compact=compact)
        return engine.pickle_facts(artifact.buffer(), limits=limits, follow_joblib=follow_joblib, compact=compact)

    def _globals(self, artifact: Artifact, ctx: ScanContext, views: list[dict], data,
                 allowed: frozenset) -> Iterable[Finding | None]:
        """One finding per distinct non-allowlisted global; embedded payloads of deserializer calls."""
        policy = GlobalPolicy.default()
        seen: dict[tuple[str, str], dict] = {}
        embedded: set[tuple[str, int]] = set()
        array_data = _array_data(views[0]) if len(views) > 1 else ([], [])  # (only a second view misreads)
        for view, facts in enumerate(views):
            calls_of: dict[int, list[dict]] = {}
            for call in facts["calls"]:
                if call["target"] is not None:
                    calls_of.setdefault(call["target"], []).append(call)
            for index, g in enumerate(facts["globals"]):
                misread = view > 0 and _within(array_data, g["offset"])
                if g["module"] is None or g["name"] is None:
                    yield ctx.finding(
                        artifact, "pickle-stack-global-opaque",
                        f"{g['opcode']} imports a name computed at load time; its target cannot be known"
                        + (_MISREAD if misread else ""),
                        offset=g["offset"], evidence={"opcode": g["opcode"], "resolution": g["resolution"],
                                                      "joblib_array_data": misread},
                        key=f"opaque@{g['offset']}", severity=Severity.LOW if misread else None)
                    continue
                module, name = policy.normalise(g["module"], g["name"])
                ctx.imports.add(f"{module}.{name}")
                verdict = policy.verdict(module, name, allowed)
                calls = calls_of.get(index, [])
                if calls and policy.is_deserializer(module, name):
                    for call in calls:
                        if (f"{module}.{name}", call["offset"]) not in embedded:
                            embedded.add((f"{module}.{name}", call["offset"]))
                            yield from self._embedded(artifact, ctx, data, f"{module}.{name}", call)
                if verdict == "safe" or policy.wraps_only_safe(f"{module}.{name}", calls, facts, data, allowed):
                    continue
                entry = seen.setdefault((module, name), {"offset": g["offset"], "opcode": g["opcode"], "count": 0,
                                                         "calls": [], "verdict": verdict, "misread": True,
                                                         "as": f"{g['module']}.{g['name']}"})
                entry["count"] += g["count"]
                entry["calls"] += calls
                entry["misread"] = entry["misread"] and misread
        judged = [(module, name, e, *_rule_of(name, e)) for (module, name), e in seen.items()]
        if len(judged) > MAX_IMPORT_FINDINGS:  # a crafted stream: report the most severe, count the rest
            rank = {rule: _rank(ctx, rule) for rule in {j[3] for j in judged}}
            judged.sort(key=lambda j: -rank[j[3]])
            unreported = len(judged) - MAX_IMPORT_FINDINGS
            del judged[MAX_IMPORT_FINDINGS:]
            yield ctx.finding(artifact, "pickle-limit-exceeded",
                              f"{unreported + MAX_IMPORT_FINDINGS:,} distinct imports off the allowlist; the "
                              f"{MAX_IMPORT_FINDINGS:,} most severe are reported, {unreported:,} more are not",
                              evidence={"limit": "findings", "unreported": unreported}, key="findings")
        for module, name, e, rule, why in judged:
            called = bool(e["calls"])
            times = f", {e['count']} references" if e["count"] > 1 else ""
            shown = f"{e['as']}({_preview(data, e['calls'][0])})" if called else e["as"]
            # only where pickle.load misreads joblib's array data: an unknown name there is most likely noise
            misread = e["misread"] and rule in _MISREAD_LOW
            yield ctx.finding(
                artifact, rule, f"{'calls' if called else 'imports'} {module}.{name} ({why}{times})"
                + (_MISREAD if misread else ""),
                offset=e["offset"], snippet=shown,
                evidence={"module": module, "name": name, "opcode": e["opcode"], "called": called,
                          "count": e["count"], "joblib_array_data": e["misread"]},
                key=f"{module}.{name}", severity=Severity.LOW if misread else None)

    def _embedded(self, artifact: Artifact, ctx: ScanContext, data, callee: str,
                  call: dict) -> Iterable[Finding | None]:
        """A deserializer called with bytes stored in the stream: report it, then scan those bytes."""
        for arg in call["args"]:
            if arg["kind"] == "global":
                continue
            offset, length = arg["offset"], arg["length"]
            payload = bytes(data[offset:offset + length])
            member = f"{artifact.member}!" if artifact.member else ""
            member += f"{callee}@0x{offset:x}"
            sniffed = sniff_bytes(payload, "")
            yield ctx.finding(artifact, "pickle-embedded-payload",
                              f"calls {callee} on {length} bytes stored in the stream ({sniffed.format.value}); "
                              "they are scanned as well", offset=call["offset"],
                              snippet=_clip(payload), evidence={"callee": callee, "offset": offset, "length": length,
                                                                "format": sniffed.format.value},
                              key=f"{callee}@{offset}")
            if artifact.depth < MAX_EMBED_DEPTH:
                child = Artifact(artifact.path, sniffed, length, data=payload, member=member,
                                 depth=artifact.depth + 1)
                yield from ctx.scan_nested(child)

    def _stream(self, artifact: Artifact, ctx: ScanContext, facts: dict) -> Iterable[Finding | None]:
        for ext in facts["ext"]:
            yield ctx.finding(artifact, "pickle-ext-opcode",
                              f"{ext['opcode']} imports extension code {ext['code']} from the copyreg registry",
                              offset=ext["offset"], evidence={"code": ext["code"]}, key=f"ext{ext['code']}")
        pickles = facts["pickles"]
        violations: dict[str, list[int]] = {}
        for p in pickles:
            for v in p["frame_violations"]:
                violations.setdefault(v["kind"], []).append(v["offset"])
            if p["status"] in ("error", "truncated"):
                yield ctx.finding(artifact, "pickle-parse-error",
                                  f"pickle #{p['index'] + 1} is malformed ({p['error']}) at offset {p['error_offset']}; "
                                  "opcodes before this point still run when loaded",
                                  offset=p["error_offset"], evidence={"pickle": p["index"], "error": p["error"]},
                                  key=f"{p['index']}")
        for kind, offsets in violations.items():
            times = f" ({len(offsets)} times)" if len(offsets) > 1 else ""
            yield ctx.finding(artifact, "pickle-frame-violation",
                              f"framing violation: {kind}{times}; loaders disagree on what this stream runs",
                              offset=offsets[0], evidence={"kind": kind, "count": len(offsets)}, key=kind)
        top_level = [p for p in pickles if p["parent"] is None]
        if len(top_level) > 1 and artifact.sniffed.flavour != "torch-legacy":
            yield ctx.finding(artifact, "pickle-multiple-streams",
                              f"{len(top_level)} pickles back to back; all were analysed",
                              offset=top_level[1]["start"], evidence={"pickles": len(top_level)})
        if facts["limit"]:
            # of the kernel's limits the opcode and fact budgets are user options
            hint = (f" (for a large file you trust, raise `pickle.max_{facts['limit']}` in .ml-guard.yml)"
                    if facts["limit"] in ("opcodes", "facts") else "")
            yield ctx.finding(artifact, "pickle-limit-exceeded",
                              f"analysis stopped at the {facts['limit']} limit; the rest was not checked{hint}",
                              evidence={"limit": facts["limit"]})


@functools.lru_cache(maxsize=16)
def _limits(max_opcodes: int, max_memo: int, max_facts: int) -> engine.PickleLimits:
    return engine.PickleLimits(max_opcodes=max_opcodes, max_memo=max_memo, max_facts=max_facts)


# The pickle.load reading of a joblib file runs the bytes joblib reads as array data (raw bytes, object arrays'
# nested pickles) as opcodes. In ordinary files that misreading meets unknown or computed names; those are
# reported low there. Denylisted names (and dotted traversal) keep their severity.
_MISREAD = " (where pickle.load reads joblib's array data as opcodes)"
_MISREAD_LOW = frozenset({"pickle-unknown-call", "pickle-unknown-global"})


def _array_data(facts: dict) -> tuple[list[int], list[int]]:
    """The byte ranges joblib reads as array data (raw array bytes, object arrays' nested pickles), which do
    not overlap: their starts in order, and their ends."""
    spans = [(s["offset"], s["offset"] + s["length"]) for s in facts["raw_spans"]]
    spans += [(p["start"], p["end"]) for p in facts["pickles"] if p["parent"] is not None and p["end"]]
    spans.sort()
    return [start for start, _ in spans], [end for _, end in spans]


def _within(ranges: tuple[list[int], list[int]], offset: int) -> bool:
    starts, ends = ranges
    i = bisect.bisect_right(starts, offset) - 1
    return i >= 0 and offset < ends[i]


def _grouped_arguments(facts: dict) -> bool:
    """Whether compact facts grouped several calls of a deserializer or a wrapper, whose every call's arguments
    the policy reads (then the pickle is analysed again with one fact per call)."""
    policy = GlobalPolicy.default()
    for call in facts["calls"]:
        if call["count"] > 1 and call["target"] is not None:
            g = facts["globals"][call["target"]]
            if g["module"] is not None and g["name"] is not None:
                module, name = policy.normalise(g["module"], g["name"])
                if f"{module}.{name}" in policy.wrappers or policy.is_deserializer(module, name):
                    return True
    return False


def _clip(raw: bytes) -> str:
    text = raw[:_PREVIEW].decode("utf-8", "backslashreplace")
    return repr(text + ("…" if len(raw) > _PREVIEW else ""))


def _preview(data, call: dict) -> str:
    """The call's literal arguments, shortened, for the snippet (``'echo pwned'``)."""
    return ", ".join(_clip(bytes(data[a["offset"]:a["offset"] + min(a["length"], _PREVIEW + 1)]))
                     for a in call["args"][:3] if a["kind"] != "global")


SCANNER = PickleScanner()
