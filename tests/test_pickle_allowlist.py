"""The generated ``safe:`` section of rules/pickle_globals.yaml: every entry imports to an exact class, callable
or by-name constant (never a module), no entry is covered by the deny lists of the same file, and the file is
what ``python scripts/gen_pickle_allowlist.py`` writes."""
from __future__ import annotations

import atexit
import difflib
import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import types
import warnings
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / "mlguard" / "rules" / "pickle_globals.yaml"
SCRIPT = ROOT / "scripts" / "gen_pickle_allowlist.py"
HEADER = re.compile(r"^  # --- (\w+) \((.*)\) ---$")
ENTRY = re.compile(r"^  ([^\s#:][^\s:]*):")
REQUIRED = ("torch", "numpy", "scipy", "sklearn", "pandas", "joblib")  # what the script cannot run without


def blocks(text: str) -> dict[str, tuple[str, list[str]]]:
    """family -> (versions line, entry names), from the family headers of the safe section."""
    out: dict[str, tuple[str, list[str]]] = {}
    family = None
    in_safe = False
    for line in text.splitlines():
        if not line.startswith(" ") and line.strip():
            in_safe = line == "safe:"
            continue
        if not in_safe:
            continue
        m = HEADER.match(line)
        if m:
            family = m.group(1)
            out[family] = (m.group(2), [])
        elif ENTRY.match(line):
            assert family is not None, f"entry before any family header: {line}"
            out[family][1].append(ENTRY.match(line).group(1))
    return out


TEXT = YAML_PATH.read_text(encoding="utf-8")
DATA = yaml.safe_load(TEXT)
BLOCKS = blocks(TEXT)


def _start_generator():
    """Run the generator (about 15 s, mostly imports) in the background from collection time on, so that
    it overlaps the other tests; test_file_is_what_the_script_generates waits for it."""
    if any(importlib.util.find_spec(lib) is None for lib in REQUIRED):
        return None
    out = Path(tempfile.mkdtemp(prefix="mlguard-allowlist-")) / "pickle_globals.yaml"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--output", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop():
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        shutil.rmtree(out.parent, ignore_errors=True)

    atexit.register(stop)
    return proc, out


GENERATOR = _start_generator()


def importable(name: str) -> bool:
    if name == "stdlib":
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(name)
        return True
    except Exception:
        return False


def resolutions(full: str) -> list[tuple[str, object, list]]:
    """Each (module, object, objects walked through) that find_class can reach for ``full``: import the
    module, walk the rest of the dotted name."""
    parts = full.split(".")
    found = []
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = importlib.import_module(module)
                path = [obj]
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
                    path.append(obj)
        except Exception:
            continue
        found.append((module, obj, path))
    return found


def under(module: str, modules) -> bool:
    head, dot, rest = module.partition(".")
    parts = (DATA["module_aliases"].get(head, head) + dot + rest).split(".")
    return any(".".join(parts[:i]) in modules for i in range(1, len(parts) + 1))


def by_name_constant(obj) -> bool:
    """Objects pickled by name rather than by value: torch dtypes/layouts/..., pandas.NA."""
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if isinstance(obj, (torch.dtype, torch.layout, torch.memory_format, torch.qscheme)):
            return True
    try:
        return isinstance(obj.__reduce_ex__(4), str)
    except Exception:
        return False


def test_safe_section_is_split_into_family_blocks():
    listed = [name for _, names in BLOCKS.values() for name in names]
    assert sorted(listed) == sorted(DATA["safe"]), "every safe entry sits in exactly one family block"
    assert len(listed) == len(set(listed)), "duplicate safe entries"
    assert set(REQUIRED) <= set(BLOCKS)
    for family, (_, names) in BLOCKS.items():
        assert names == sorted(names), f"{family} block is not sorted"
        assert all(DATA["safe"][n] and isinstance(DATA["safe"][n], str) for n in names), "every entry has a reason"


@pytest.mark.parametrize("family", sorted(BLOCKS))
def test_entries_resolve_to_classes_callables_or_constants(family):
    if not importable(family):
        pytest.skip(f"{family} is not installed")
    dangerous_modules = set(DATA["dangerous_modules"])
    problems = []
    for name in BLOCKS[family][1]:
        found = resolutions(name)
        if not found:
            problems.append(f"{name}: does not import")
            continue
        objs = {id(obj) for _, obj, _ in found}
        obj = found[0][1]
        walked = {step.__name__ for _, _, path in found for step in path if isinstance(step, types.ModuleType)}
        owner = getattr(obj, "__module__", None)
        if any(under(m, dangerous_modules) for m in walked) or (
                isinstance(owner, str) and under(owner, dangerous_modules)):
            problems.append(f"{name}: reaches a dangerous module ({sorted(walked)}, defined in {owner})")
        if len(objs) > 1:
            problems.append(f"{name}: splits {[m for m, _, _ in found]} import different objects")
        elif isinstance(obj, types.ModuleType):
            problems.append(f"{name}: is a module object")
        elif not (isinstance(obj, type) or callable(obj) or by_name_constant(obj)):
            problems.append(f"{name}: is a {type(obj).__name__}, not a class, callable or by-name constant")
    assert problems == []


def test_no_safe_entry_is_denied():
    dangerous = set(DATA["dangerous"])
    dangerous_modules = set(DATA["dangerous_modules"])
    problems = []
    for name in DATA["safe"]:
        parts = name.split(".")
        if name in dangerous:
            problems.append(f"{name}: listed in dangerous")
        if any(".".join(parts[:i]) in dangerous_modules for i in range(1, len(parts) + 1)):
            problems.append(f"{name}: inside dangerous_modules")
        # ('a', 'b.os.system') walks to os.system, and an exact dangerous name wins over safe
        if any(".".join(parts[i:]) in dangerous for i in range(1, len(parts) - 1)):
            problems.append(f"{name}: reaches a dangerous name by a dotted walk")
    assert problems == []


def test_safe_entries_are_safe_for_the_scanner():
    from mlguard.scanners.pickle import GlobalPolicy

    policy = GlobalPolicy.default()
    wrong = [name for name in DATA["safe"] if policy.verdict(*name.rsplit(".", 1)) != "safe"]
    assert wrong == []


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gen_pickle_allowlist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_refuses_denied_and_non_exact_names(script):
    rules = script.Rules(DATA)
    assert script.check("os.system", rules)
    assert script.check("subprocess.Popen", rules)
    assert script.check("builtins.eval", rules)
    assert script.check("functools.partial", rules)
    assert script.check("builtins.getattr", rules)
    assert "walks through the module os" in script.check("pathlib.os.system", rules)
    assert "module" in script.check("collections.abc", rules)
    assert script.check("collections.NoSuchThing", rules) == "does not import"
    assert script.check("collections.OrderedDict", rules) is None


def test_file_is_what_the_script_generates():
    missing = [lib for lib in REQUIRED if not importable(lib)]
    if missing or GENERATOR is None:
        pytest.skip(f"the generator needs {', '.join(missing or REQUIRED)}")
    proc, out = GENERATOR
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    generated = out.read_text(encoding="utf-8")
    if generated == TEXT:
        return
    drift = {f: (BLOCKS[f][0], v) for f, (v, _) in blocks(generated).items() if f in BLOCKS and BLOCKS[f][0] != v}
    if drift:
        pytest.skip("installed library versions differ from those the allowlist was generated from "
                    f"({drift}); rerun python scripts/gen_pickle_allowlist.py")
    diff = "".join(difflib.unified_diff(TEXT.splitlines(True), generated.splitlines(True), "committed", "generated",
                                        n=0))
    pytest.fail(f"pickle_globals.yaml is out of date; run python scripts/gen_pickle_allowlist.py\n{diff[:4000]}")
