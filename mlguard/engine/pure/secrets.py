"""Secret rules on bytes with :mod:`re`: the reference twin of ``mlguard_rs/src/secrets.rs``.

The semantics (keyword hits, windows and their merging, matches, the limit) are defined in the
module docstring of ``secrets.rs`` and in :func:`mlguard.engine.secret_matches`; this module
implements them identically. Keyword hits come from ``bytes.find`` of each distinct keyword in
lowercased chunks of the data (``re`` has no multi-literal search: an alternation of a hundred
keywords tries each at every offset).

:func:`check_pattern` admits only the regex syntax that Python ``re`` on bytes and Rust
``regex::bytes`` (Unicode off) read the same way. Use this module through :mod:`mlguard.engine`.
"""
from __future__ import annotations

import math
import re
import warnings
from collections import Counter

try:
    from re import _parser as _sre_parse     # Python >= 3.11
except ImportError:                          # pragma: no cover - Python 3.9, 3.10
    import sre_parse as _sre_parse

_ESCAPES = frozenset("afnrtvdDsSwW")    # letters both engines read alike, in and out of classes
_ASSERTIONS = frozenset("bBA")           # outside classes only
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_COUNTED = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")
_FLAGS = re.compile(r"\(\?([A-Za-z]*)(?:-([A-Za-z]*))?([:)])")


def _escape(pattern: str, i: int, in_class: bool) -> int:
    """Check the escape at ``pattern[i] == '\\'``; return the index after it."""
    e = pattern[i + 1:i + 2]
    if e == "x":
        if not _HEX2.match(pattern, i + 2):
            raise ValueError(f"\\x must be followed by exactly two hex digits (offset {i})")
        return i + 4
    if e.isdigit():
        raise ValueError(f"backreferences and octal escapes are not supported (offset {i})")
    if e in ("<", ">"):
        raise ValueError(f"\\{e} is a word-boundary assertion in Rust, a literal in Python (offset {i})")
    allowed = _ESCAPES if in_class else _ESCAPES | _ASSERTIONS
    if not e or (e.isalpha() and e not in allowed):
        raise ValueError(f"unsupported escape \\{e} (offset {i})")
    return i + 2


def _class_end(pattern: str, i: int) -> int:
    """Check the character class opening at ``pattern[i] == '['``; return the index after it."""
    j = i + 1
    if pattern.startswith("^", j):
        j += 1
    if pattern.startswith("]", j):    # a leading `]` is a literal in both engines
        j += 1
    while j < len(pattern):
        c = pattern[j]
        if c == "]":
            return j + 1
        if c == "\\":
            j = _escape(pattern, j, in_class=True)
            continue
        if c == "[" or pattern.startswith(("&&", "--", "~~"), j):
            raise ValueError(f"nested classes and class set operations are not supported; escape "
                             f"`[`, `&`, `-`, `~` in a class (offset {j})")
        j += 1
    raise ValueError(f"unterminated character class (offset {i})")


def check_pattern(pattern: str) -> None:
    """Raise ValueError unless ``pattern`` uses only syntax both engines read the same way.

    Allowed: ASCII literals (other bytes as ``\\xHH``), ``.``, classes without nesting or set
    operations, the escapes ``\\a \\f \\n \\r \\t \\v \\d \\D \\s \\S \\w \\W \\xHH`` and escaped
    punctuation (not ``\\<``/``\\>``), ``\\b \\B \\A`` and ``^``, ``$`` only under a global
    ``(?m)`` (Python's plain ``$`` also matches before a final newline), groups ``(...)``,
    ``(?:...)``, ``(?P<name>...)``, flags ``i m s`` as ``(?ims)`` at the start or
    ``(?ims-ims:...)``, alternation, and the quantifiers ``* + ? {n} {n,} {n,m}``, each
    optionally lazy (``?``). Literal ``{`` must be escaped. The ``secret`` group (and any group
    around it) may be optional but not repeated: the engines disagree on which iteration a
    repeated group reports; for the same reason (checked by :func:`validate_pattern`) nothing
    repeated more than once may match the empty string. Not allowed: lookaround, backreferences,
    atomic groups, possessive or stacked quantifiers, conditionals, comments, verbose mode,
    Unicode classes. Python ``re`` may backtrack: write quantifiers with bounds and never nest
    them (``(\\w+)+``), so that the work per window stays small.
    """
    if not pattern.isascii():
        raise ValueError("non-ASCII character in the pattern (write such bytes as \\xHH)")
    i, multiline, quantified, repeatable = 0, False, 0, True   # quantified: 1 after one, 2 lazy
    groups = []     # per open group: whether it holds the `secret` group
    while i < len(pattern):
        c, now, closed = pattern[i], 0, False
        if c == "\\":
            i = _escape(pattern, i, in_class=False)
        elif c == "[":
            i = _class_end(pattern, i)
        elif pattern.startswith("(?", i):
            flags = _FLAGS.match(pattern, i)
            if pattern.startswith("(?P<", i):
                groups.append(pattern.startswith("(?P<secret>", i))
                i += 4
            elif flags is None:
                raise ValueError(f"unsupported group {pattern[i:i + 4]!r}: no lookaround, "
                                 f"backreference, atomic group, conditional or comment (offset {i})")
            else:
                on, off, end = flags.group(1), flags.group(2) or "", flags.group(3)
                if set(on + off) - set("ims"):
                    raise ValueError(f"unsupported flags {flags.group(0)!r}: only i, m, s (offset {i})")
                if end == ":":
                    groups.append(False)
                else:
                    multiline = ("m" in on or multiline) and "m" not in off
                i = flags.end()
        elif c == "(":
            groups.append(False)
            i += 1
        elif c == ")":
            closed = bool(groups) and groups.pop()
            if closed and groups:
                groups[-1] = True
            i += 1
        elif c == "{":
            counted = _COUNTED.match(pattern, i)
            if counted is None:
                raise ValueError(f"a literal {{ must be escaped as \\{{ (offset {i})")
            if quantified or not repeatable:
                raise ValueError(f"stacked quantifier, or the `secret` group repeated (offset {i})")
            i, now = counted.end(), 1
        elif c in "*+?":
            if quantified == 2 or (quantified == 1 and c != "?"):
                raise ValueError(f"possessive or stacked quantifier (offset {i})")
            if not repeatable and c != "?":
                raise ValueError(f"the `secret` group may be optional (`?`), not repeated (offset {i})")
            i, now = i + 1, 2 if quantified else 1
        elif c == "$" and not multiline:
            raise ValueError(f"`$` needs a global (?m) flag (offset {i})")
        else:
            i += 1
        quantified, repeatable = now, not closed


def validate_pattern(pattern: str) -> None:
    """ValueError unless :func:`check_pattern` admits ``pattern``, ``re`` parses it for bytes
    without warnings and it has a group named ``secret``. (Parsing finds every error ``re`` can
    raise for the subset; the compiled form is built on first use, see :class:`Compiled`.)"""
    check_pattern(pattern)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")     # FutureWarning: syntax whose meaning may change
            parsed = _sre_parse.parse(pattern.encode("ascii"))
    except (re.error, Warning) as exc:
        raise ValueError(f"Python re: {exc}") from None
    if "secret" not in parsed.state.groupdict:
        raise ValueError("the pattern has no group named `secret`")
    if _repeats_empty(parsed):
        raise ValueError("a group repeated more than once can match the empty string (the engines "
                         "treat its empty iterations differently)")


def _repeats_empty(parsed) -> bool:
    """Whether a parsed pattern (``re``'s parse tree) repeats, up to more than once, something
    that can match the empty string: ``(?:a|)*``, ``(?:\\b|a){1,3}``, ``(a*)+``."""
    for op, av in parsed:
        if (op in (_sre_parse.MAX_REPEAT, _sre_parse.MIN_REPEAT) and av[1] > 1
                and av[2].getwidth()[0] == 0):
            return True
        for part in av if isinstance(av, (tuple, list)) else ():
            for sub in part if isinstance(part, list) else [part]:
                if isinstance(sub, _sre_parse.SubPattern) and _repeats_empty(sub):
                    return True
    return False


class Compiled:
    """The pure engine's form of a rule set: the rules' regexes, windows and entropies, and the
    distinct keywords with the rules each one serves."""

    def __init__(self, rules) -> None:
        """``rules``: (keywords, pattern, window, min_entropy) per rule, keywords non-empty ASCII.
        Raises ``ValueError(rule index, message)`` for a pattern :func:`validate_pattern` refuses.
        Each regex is compiled when a window first needs it (most rule sets run on the native engine)."""
        self.regexes: list = [None] * len(rules)
        self.windows = [window for _, _, window, _ in rules]
        self.min_entropy = [min_entropy for _, _, _, min_entropy in rules]
        for i, (_, pattern, _, _) in enumerate(rules):
            try:
                validate_pattern(pattern)
            except ValueError as exc:
                raise ValueError(i, str(exc)) from None
        self.patterns = [pattern.encode("ascii") for _, pattern, _, _ in rules]
        # distinct lowercased keywords, longest first; per keyword: (rule, the rule's longest keyword
        # that is a prefix of it)
        self.keywords = sorted({k.lower().encode("ascii") for keywords, _, _, _ in rules for k in keywords},
                               key=lambda k: (-len(k), k))
        self.owners = []
        for k in self.keywords:
            owners = []
            for r, (keywords, _, _, _) in enumerate(rules):
                lengths = [len(kw) for kw in keywords if k.startswith(kw.lower().encode("ascii"))]
                if lengths:
                    owners.append((r, max(lengths)))
            self.owners.append(owners)


def entropy(secret) -> float:
    """Shannon entropy in bits per byte, computed as ``secrets.rs`` does (same float operations)."""
    n = len(secret)
    h = 0.0
    for _, count in sorted(Counter(secret).items()):
        p = count / n
        h -= p * math.log2(p)
    return h


def find(data, compiled: Compiled, max_matches: int) -> list:
    """The matches of every rule in ``data`` (C-contiguous bytes-like), as ``secrets.rs``."""
    if max_matches <= 0 or not compiled.keywords:
        return []
    found = []
    with memoryview(data) as raw, raw.cast("B") as view:
        n = len(view)
        pending = [None] * len(compiled.regexes)
        for s, keyword in _hits(view, compiled.keywords):
            for r, length in compiled.owners[keyword]:
                window = compiled.windows[r]
                a, b = max(0, s - window), min(n, s + length + window)
                if pending[r] is not None and a <= pending[r][1]:
                    pending[r] = (pending[r][0], max(pending[r][1], b))
                else:
                    if pending[r] is not None:
                        _search(view, compiled, r, *pending[r], found, max_matches)
                    pending[r] = (a, b)
        for r, span in enumerate(pending):
            if span is not None:
                _search(view, compiled, r, *span, found, max_matches)
    _trim(found, max_matches)
    return [{"rule": r, "start": start, "end": end, "secret_start": ss, "secret_end": se, "entropy": h}
            for start, r, end, ss, se, h in found]


_CHUNK = 1 << 20


def _hits(view, keywords: list):
    """(offset, index of the longest keyword starting there) for every offset where one of
    ``keywords`` (lowercase, longest first) starts, ASCII case-insensitively, by increasing offset.
    The data is lowercased a chunk at a time (plus the longest keyword's length), so memory stays
    bounded by the chunk, whatever the data's size or number of hits."""
    n, longest = len(view), len(keywords[0])
    for c0 in range(0, n, _CHUNK):
        limit = min(n - c0, _CHUNK)
        text = bytes(view[c0:c0 + limit + longest - 1]).lower()
        first = {}
        for i, keyword in enumerate(keywords):
            p = text.find(keyword)
            while 0 <= p < limit:
                first.setdefault(p, i)
                p = text.find(keyword, p + 1)
        for p in sorted(first):
            yield c0 + p, first[p]


def _search(view, compiled: Compiled, r: int, ws: int, we: int, found: list, max_matches: int) -> None:
    """Search rule ``r``'s regex in the window ``[ws, we)``; append what it reports to ``found``."""
    regex, min_entropy = compiled.regexes[r], compiled.min_entropy[r]
    if regex is None:   # validated at construction; compiling twice in a race is harmless
        regex = compiled.regexes[r] = re.compile(compiled.patterns[r])
    pos = ws
    while pos < we and (m := regex.search(view, pos, we)) is not None:
        start, end = m.span()
        if start == end:
            pos = end + 1
            continue
        pos = end
        ss, se = m.span("secret")
        if ss < 0:
            continue
        h = entropy(view[ss:se])
        if h >= min_entropy:
            found.append((start, r, end, ss, se, round(h, 4)))
            if len(found) >= 2 * max_matches:
                _trim(found, max_matches)


def _trim(found: list, max_matches: int) -> None:
    """Keep the first ``max_matches`` in (start, rule) order."""
    found.sort(key=lambda f: (f[0], f[1]))
    del found[max_matches:]
