"""The secret-rules kernel (``mlguard.engine.secret_matches``): both engines on handcrafted edge
cases with known answers, on generated rules and data (hypothesis), and the rule checks.

The native engine must be built (a missing build is a failure).
"""
from __future__ import annotations

import array
import mmap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlguard.engine as engine
from mlguard.engine import SecretRule, SecretRuleSet, secret_matches
from differential import assert_engines_agree


def rules(*specs) -> SecretRuleSet:
    """A rule set from (keywords, pattern[, window[, min_entropy]]) tuples; ids r0, r1, ..."""
    return SecretRuleSet([SecretRule(f"r{i}", *spec) for i, spec in enumerate(specs)])


def found(data, ruleset, **kwargs) -> list:
    """The matches as (rule, start, end, secret_start, secret_end), after checking both engines agree."""
    got = assert_engines_agree("secret_matches", data, ruleset, **kwargs)
    return [(m["rule"], m["start"], m["end"], m["secret_start"], m["secret_end"]) for m in got]


def test_native_kernel_is_built():
    import mlguard_rs
    assert hasattr(mlguard_rs, "SecretRules"), "stale mlguard_rs build: rebuild with `pip install -e .`"
    assert rules((("k",), "(?P<secret>k)"))._native is not None


# ---------------------------------------------------------------------------- edge cases ----

def test_keyword_at_start_and_end():
    rs = rules((("key",), r"key=(?P<secret>\w+)", 8), (("key",), r"(?P<secret>\w+)=key", 8))
    assert found(b"key=abc", rs) == [(0, 0, 7, 4, 7)]
    assert found(b"abc=key", rs) == [(1, 0, 7, 0, 3)]
    assert found(b"key", rs) == []


def test_empty_data_no_keyword_no_rule():
    rs = rules((("token",), r"(?P<secret>\w+)"))
    assert found(b"", rs) == []
    assert found(b"no such word here " * 100, rs) == []
    assert found(b"token", SecretRuleSet([])) == []


def test_huge_data_without_keywords():
    rs = rules((("ghp_", "password"), r"(?P<secret>\w{8})", 64), (("AKIA",), r"(?P<secret>AKIA\w{16})", 32))
    data = b"def f(x):\n    return x + 1  # nothing to see\n" * 700_000    # ~31 MB
    assert found(data, rs) == []


def test_keywords_are_case_insensitive_patterns_are_not():
    rs = rules((("ToKeN",), r"(?P<secret>token)", 0), (("token",), r"(?i)(?P<secret>token)", 0))
    assert found(b"token TOKEN tOkEn", rs) == [(0, 0, 5, 0, 5), (1, 0, 5, 0, 5), (1, 6, 11, 6, 11),
                                               (1, 12, 17, 12, 17)]


def test_windows_cut_matches_and_merged_windows_do_not():
    rs = rules((("k",), r"(?P<secret>[a-z]+)", 2))
    assert found(b"aaaxxkyyaaa", rs) == [(0, 3, 8, 3, 8)]               # window [3, 8)
    assert found(b"zzkzzzzkzzzz", rs) == [(0, 0, 10, 0, 10)]            # [0,5) + [5,10) touch
    assert found(b"zzkzzzzzkzzzz", rs) == [(0, 0, 5, 0, 5), (0, 6, 11, 6, 11)]   # one byte apart
    # a match spanning three overlapping windows, longer than any of them
    rs = rules((("-",), r"(?P<secret>\w+(?:-\w+)+)", 3))
    assert found(b"aaa-bbb-ccc-ddd", rs) == [(0, 0, 15, 0, 15)]


def test_a_match_found_from_several_hits_is_reported_once():
    rs = rules((("a", "aa", "b"), r"(?P<secret>a+b)", 16))
    assert found(b"..aaaab..", rs) == [(0, 2, 7, 2, 7)]


def test_longest_keyword_of_each_rule_at_an_offset():
    rs = rules((("sk", "sk-ant-"), r"(?P<secret>sk-\w+)", 0), (("SK",), r"(?P<secret>sk)", 0))
    assert found(b"sk-ant-x", rs) == [(0, 0, 6, 0, 6), (1, 0, 2, 0, 2)]


def test_word_boundaries_see_before_the_window_not_after():
    rs = rules((("key",), r"\b(?P<secret>key\w*)\b", 0))
    assert found(b"monkey key keys", rs) == [(0, 7, 10, 7, 10), (0, 11, 14, 11, 14)]


def test_anchors():
    rs = rules((("k",), r"^(?P<secret>k)", 0), (("k",), r"(?m)^(?P<secret>k)$", 0))
    assert found(b"k\nk\nxk", rs) == [(0, 0, 1, 0, 1), (1, 0, 1, 0, 1), (1, 2, 3, 2, 3)]


def test_non_ascii_bytes_around_matches():
    rs = rules((("pass",), r"pass\w*\s*[:=]\s*(?P<secret>[^\s]{4,})", 32))
    data = "mot de passé: sécurité\npassword = Zürich1!\n".encode()
    assert found(data, rs) == [(0, 26, 46, 37, 46)]      # \w stops at the é bytes of "passé"
    rs = rules((("k",), r"k(?P<secret>.{2})", 4))
    assert found(b"\xffk\xe9\x80k\n\x80", rs) == [(0, 1, 4, 2, 4)]


def test_entropy_threshold_is_inclusive():
    for min_entropy, expected in ((0.0, 3), (1.0, 2), (1.0001, 1), (2.0, 1), (2.0001, 0)):
        rs = rules((("=",), r"=(?P<secret>\w+)", 8, min_entropy))
        got = assert_engines_agree("secret_matches", b"a=aaaa b=abab c=abcd", rs)
        assert len(got) == expected, min_entropy
    rs = rules((("=",), r"=(?P<secret>\w+)", 8))
    assert [m["entropy"] for m in secret_matches(b"a=aaaa b=abab c=abc", rs)] == [0.0, 1.0, 1.585]


def test_secret_group_must_participate_and_empty_matches_are_skipped():
    rs = rules((("a",), r"a*(?P<secret>b)?", 4))
    assert found(b"aabca", rs) == [(0, 0, 3, 2, 3)]
    rs = rules((("x",), r"(?P<secret>y*)", 3))      # only empty matches, or a run of y
    assert found(b"xx yyx", rs) == [(0, 3, 5, 3, 5)]


def test_max_matches_keeps_the_first_in_order():
    rs = rules((("x",), r"(?P<secret>x)", 0), (("x",), r"(?P<secret>x\.)", 2))
    data = b"x." * 5000
    everything = found(data, rs)
    assert len(everything) == 10_000
    assert everything == sorted(everything, key=lambda m: (m[1], m[0]))
    for limit in (0, 1, 2, 3, 999, 9_999, 10_000, 20_000):
        assert found(data, rs, max_matches=limit) == everything[:limit]
    with pytest.raises(ValueError, match="max_matches"):
        secret_matches(data, rs, max_matches=-1)


def test_bytes_like_inputs(tmp_path):
    rs = rules((("api_key",), r"api_key\s*=\s*\"(?P<secret>[^\"]{8,64})\"", 64, 3.0))
    data = b'x = 1\napi_key = "Zx81-aQ9v-77Lm"\n\xff\xfe'
    expected = secret_matches(data, rs, engine="python")
    assert len(expected) == 1
    for view in (bytearray(data), memoryview(data), memoryview(data)[::1], array.array("B", data)):
        assert assert_engines_agree("secret_matches", view, rs) == expected
    assert assert_engines_agree("secret_matches", memoryview(b"." + data)[1:], rs) == expected
    spaced = bytearray(2 * len(data))
    spaced[::2] = data
    assert assert_engines_agree("secret_matches", memoryview(spaced)[::2], rs) == expected
    path = tmp_path / "f"
    path.write_bytes(data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert assert_engines_agree("secret_matches", mapped, rs) == expected
    with pytest.raises(TypeError):
        secret_matches("text", rs)


# ---------------------------------------------------------------------------- rule checks ----

@pytest.mark.parametrize("pattern, why", [
    (r"(?<=key=)(?P<secret>\w+)", "lookaround"),
    (r"key(?=x)(?P<secret>\w+)", "lookaround"),
    (r"(?!a)(?P<secret>\w+)", "lookaround"),
    (r"(a)\1(?P<secret>b)", "backreference"),
    (r"(?P<q>a)(?P=q)(?P<secret>b)", "backreference"),
    (r"(?>a+)(?P<secret>b)", "atomic"),
    (r"(?P<secret>a++)", "possessive"),
    (r"(?P<secret>a{2}+)", "possessive"),
    (r"(a)", "secret"),
    (r"(?P<token>a)", "secret"),
    (r"(?P<secret>a)(?P<secret>b)", "redefinition|duplicate capture group name"),
    (r"(?P<secret>a)$", r"\$"),
    (r"\<(?P<secret>a)", "word-boundary"),
    (r"(?P<secret>a{ 2})", "escaped"),
    (r"(?P<secret>[a[b]])", "nested"),
    (r"(?P<secret>[a-z&&b])", "nested"),
    (r"(?x)(?P<secret>[a b])", "flags"),
    (r"(?P<secret>\p{L})", "escape"),
    (r"(?P<secret>é)", "non-ASCII"),
    (r"(?P<secret>a", "missing|unclosed group"),
    ("(?:" * 300 + "(?P<secret>a)" + ")" * 300, "native engine"),
    (r"(?P<secret>(?:\w{1000}){1000})", "native engine"),
    ("(?P<secret>[" + "".join(f"\\x{b:02x}" for b in range(0, 256, 2)) + "]{1000})", "native engine"),
    (r"(?P<secret>a)+", "repeated"),
    (r"(?:x(?P<secret>a)){2}", "repeated"),
    (r"(?P<secret>(?:\b|a){1,3})\B", "empty string"),
    (r"(?P<secret>(?:a|)*b)", "empty string"),
])
@pytest.mark.parametrize("forced", ["", "python"])
def test_unportable_patterns_are_refused_naming_the_rule(pattern, why, forced, monkeypatch):
    """Refused when the rule set is made, whichever engine runs (Rust's parser or Python's words the reason)."""
    monkeypatch.setenv("MLGUARD_ENGINE", forced)
    with pytest.raises(ValueError, match=f"(?s)secret rule 'bad-rule'.*({why})"):
        SecretRuleSet([SecretRule("good", ("a",), r"(?P<secret>a)"), SecretRule("bad-rule", ("a",), pattern)])


def test_regexes_compile_on_first_use_and_the_pure_engine_checks_with_re():
    """A rule set checks every pattern up front but compiles none; the pure engine is made (and re-checks the
    patterns with ``re``) only when first used."""
    ruleset = rules((("k",), r"k(?P<secret>\w+)"), (("q",), r"q(?P<secret>\d+)"))
    assert ruleset._pure is None
    assert engine.secret_matches(b"k abc", ruleset, engine="native") == []
    assert [m["rule"] for m in engine.secret_matches(b"kabc q12", ruleset, engine="python")] == [0, 1]
    assert ruleset._pure is not None


@pytest.mark.parametrize("fields", [
    dict(keywords=()), dict(keywords=("",)), dict(keywords=("clé",)), dict(window=-1),
    dict(window=engine.MAX_SECRET_WINDOW + 1), dict(window=1.5), dict(min_entropy=-0.1),
    dict(min_entropy=9), dict(min_entropy=True), dict(pattern=b"(?P<secret>a)"),
])
def test_bad_rule_fields(fields):
    spec = dict(id="bad-rule", keywords=("a",), pattern=r"(?P<secret>a)") | fields
    with pytest.raises(ValueError, match="bad-rule"):
        SecretRule(**spec)


def test_rule_normalisation():
    rule = SecretRule("r", ["a", "b"], r"(?P<secret>a)", 0, 3)
    assert rule.keywords == ("a", "b") and rule.min_entropy == 3.0 and isinstance(rule.min_entropy, float)
    assert SecretRule("r", "key", r"(?P<secret>a)").keywords == ("key",)
    with pytest.raises(TypeError):
        SecretRuleSet([("a",)])


# ---------------------------------------------------------------------------- generated ----

_ATOMS = ["a", "b", "k", "1", "_", " ", "-", ".", r"\d", r"\w", r"\s", r"\W", r"\S", "[ab]", "[^a]",
          "[a-c1]", r"\x80", r"[\x80-\xff]", r"\b", r"\B", r"\n", "(?i:k)", "(?s:.)", "^", "$"]
_QUANTIFIERS = ["*", "+", "?", "{2}", "{1,3}", "{0,}", "*?", "+?", "??", "{1,2}?"]


def _regex(max_leaves: int):
    def extend(inner):
        return st.one_of(
            st.tuples(inner, inner).map("".join),
            st.tuples(inner, inner).map(lambda t: f"(?:{t[0]}|{t[1]})"),
            st.tuples(inner, st.sampled_from(_QUANTIFIERS)).map(lambda t: f"(?:{t[0]}){t[1]}"),
            inner.map(lambda x: f"({x})"),
        )
    return st.recursive(st.sampled_from(_ATOMS), extend, max_leaves=max_leaves)


@st.composite
def _rule_specs(draw):
    around = st.one_of(st.just(""), _regex(2))
    pattern = (draw(st.sampled_from(["", "(?i)", "(?m)", "(?s)"])) + draw(around)
               + "(?P<secret>" + draw(_regex(4)) + ")" + draw(st.sampled_from(["", "?"])) + draw(around))
    keywords = tuple(draw(st.lists(st.sampled_from(["a", "k", "key", "ab", "B", "-", "\n"]),
                                   min_size=1, max_size=3, unique=True)))
    return keywords, pattern, draw(st.integers(0, 12)), draw(st.sampled_from([0.0, 0.0, 0.9, 1.5]))


_DATA = st.lists(st.sampled_from([b"a", b"b", b"k", b"K", b"ey", b"1", b"_", b" ", b"-", b"\n", b"\x80",
                                  b"\xff", b"\xe9"]), min_size=8, max_size=160).map(b"".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(_rule_specs(), min_size=1, max_size=4), _DATA, st.integers(0, 6))
def test_engines_agree_on_generated_rules(specs, data, limit):
    try:
        ruleset = rules(*specs)
    except ValueError:    # e.g. a quantified assertion: refused, by both engines alike
        return
    assert_engines_agree("secret_matches", data, ruleset)
    assert_engines_agree("secret_matches", data, ruleset, max_matches=limit)


_REALISTIC = rules(
    (("token", "secret", "password"), r"(?i)(?:token|secret|password)[\w.\-]{0,20}[\"']?\s*[:=]\s*"
                                      r"[\"']?(?P<secret>[A-Za-z0-9_\-+/=]{8,64})", 64, 2.5),
    (("ghp_", "gho_"), r"\b(?P<secret>gh[po]_[A-Za-z0-9]{36})\b", 48, 3.0),
    (("AKIA",), r"\b(?P<secret>AKIA[A-Z2-7]{16})\b", 24),
    (("-----BEGIN",), r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----(?P<secret>[A-Za-z0-9+/=\s]{16,2000}?)"
                      r"-----END", 2048),
    (("://",), r"(?i)\b[a-z][a-z0-9+.\-]{1,20}://[^:@/\s\"']{1,64}:(?P<secret>[^@/\s\"']{3,128})@", 96),
)

_PIECES = [b"token = 'abcDEF123456xyz'\n", b"password: hunter2hunter2\n", b"SECRET=", b"ghp_",
           b"ghp_" + b"A1b2C3d4" * 4 + b"E5f6\n",
           b"AKIAABCDEFGHIJKLMNOP ", b"-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf\n",
           b"-----END RSA PRIVATE KEY-----\n", b"postgres://user:pa55word@db:5432/x\n", b"://", b"\xff\xfe",
           b"0123456789abcdef" * 3, b" ", b"\n", b"=", b"'", b"x" * 40]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_PIECES), st.binary(max_size=12)), max_size=40).map(b"".join),
       st.integers(0, 8))
def test_engines_agree_on_generated_data(data, limit):
    assert_engines_agree("secret_matches", data, _REALISTIC)
    assert_engines_agree("secret_matches", data, _REALISTIC, max_matches=limit)


def test_engines_agree_on_a_larger_mixed_input():
    import random
    rng = random.Random(7)
    data = b"".join(rng.choice(_PIECES) if rng.random() < 0.3 else rng.randbytes(rng.randrange(64))
                    for _ in range(20_000))
    got = assert_engines_agree("secret_matches", data, _REALISTIC)
    assert {m["rule"] for m in got} == {0, 1, 2, 3, 4}
    for m in got:      # every match lies inside the data and its secret inside the match
        assert 0 <= m["start"] <= m["secret_start"] <= m["secret_end"] <= m["end"] <= len(data)
