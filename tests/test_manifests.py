"""Dependency manifest parsers: realistic files written by the tests (or by pip itself), every syntax feature,
includes, malformed entries and hostile input."""
from __future__ import annotations

import base64
import hashlib
import json
import random
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlguard.advisories.manifests import PARSERS, Dependency, Manifest, Problem, parser_for
from mlguard.advisories.manifests import _entries, requirements
from mlguard.advisories.manifests.conda import conda_specifier
from mlguard.advisories.manifests.pyproject import poetry_specifier
from mlguard.advisories.manifests.requirements import MAX_DEPTH, MAX_INCLUDES, logical_lines

SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64


def tree_reader(root: Path):
    """The reader a scanner supplies: paths relative to the including file, confined to ``root``."""
    root = root.resolve()

    def read(including: str, relative: str):
        target = ((root / including).parent / relative).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
        return target.relative_to(root).as_posix(), target.read_text()

    return read


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def parse(root: Path, name: str) -> Manifest:
    """Parse ``root/name`` with the parser its name selects, following includes inside ``root``."""
    parser = parser_for(Path(name).name)
    assert parser is not None, name
    return parser.parse((root / name).read_text(), name, tree_reader(root))


def by_name(manifest: Manifest) -> dict[str, Dependency]:
    deps = {d.normalized: d for d in manifest.dependencies}
    assert len(deps) == len(manifest.dependencies), "duplicate entries"
    return deps


def lines_of(path: Path, needle: str) -> list[int]:
    return [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]


def line_starting(path: Path, prefix: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(prefix))


# ---------------------------------------------------------------- registry

@pytest.mark.parametrize("filename, parser", [
    ("requirements.txt", "requirements"), ("requirements-dev.txt", "requirements"),
    ("dev-requirements.txt", "requirements"), ("requirements_test.txt", "requirements"),
    ("constraints.txt", "requirements"), ("requirements.in", "requirements"), ("Requirements.TXT", "requirements"),
    ("pyproject.toml", "pyproject"), ("poetry.lock", "poetry.lock"), ("uv.lock", "uv.lock"),
    ("Pipfile.lock", "Pipfile.lock"), ("pylock.toml", "pylock"), ("pylock.dev.toml", "pylock"),
    ("environment.yml", "conda"), ("environment.yaml", "conda"), ("environment-gpu.yml", "conda"),
    ("dev-environment.yaml", "conda"),
    ("MANIFEST.in", None), ("setup.py", None), ("notes.txt", None), ("Pipfile", None), ("pylock.a.b.toml", None),
    ("environments.yml", None), ("package.lock", None), ("requirements.txt.bak", None),
])
def test_parser_for(filename, parser):
    found = parser_for(filename)
    assert (found.name if found else None) == parser


def test_parsers_are_distinct_and_complete():
    assert len({p.name for p in PARSERS}) == len(PARSERS) == 7
    for parser in PARSERS:
        assert callable(parser.matches) and callable(parser.parse)
        empty = parser.parse("", "x")
        assert empty.dependencies == () and len(empty.problems) == (parser.name == "Pipfile.lock")  # not JSON


# ---------------------------------------------------------------- requirements files

REQUIREMENTS = rf"""
# Production requirements
-i https://pypi.org/simple
--extra-index-url https://download.pytorch.org/whl/cu118
--find-links ./wheels
-f https://example.com/links
--trusted-host example.com
--pre
--prefer-binary
--no-binary :all:
--only-binary=numpy
--require-hashes
--use-feature=truststore

requests[socks,security]>=2.8.1,<3 ; python_version >= "3.8"  # HTTP
numpy==1.26.4 \
    --hash={SHA_A} \
    --hash={SHA_B}
Pillow == 10.0.* ;sys_platform=='linux'
legacy-thing===1.0-custom
scipy
torch @ https://download.pytorch.org/whl/cu118/torch-2.0.1%2Bcu118-cp311-cp311-linux_x86_64.whl
https://example.com/pkgs/foo_bar-1.0-py3-none-any.whl ; python_version < "3.12"
git+https://github.com/org/repo.git@v1.0#egg=mylib[extra]&subdirectory=src
git+ssh://git@github.com/org/other.git
./vendor/pkg[dev] ; sys_platform == "linux"
../sibling-1.2.tar.gz
-e .
--editable git+https://github.com/org/ed.git#egg=edpkg
-e ./plugins/thing[all]
black==24.1.0 --config-settings=key=value --global-option=x
transformers~=4.30
"""


def test_requirements_every_feature(tmp_path):
    path = write(tmp_path, "requirements.txt", REQUIREMENTS)
    manifest = parse(tmp_path, "requirements.txt")
    assert manifest.problems == ()
    deps = manifest.dependencies
    at = {(d.normalized, d.url): d for d in deps}

    requests = at["requests", None]
    assert requests.name == "requests" and requests.extras == ("security", "socks")
    assert requests.specifier == "<3,>=2.8.1" and requests.version is None
    assert requests.marker == 'python_version >= "3.8"'
    assert requests.line == lines_of(path, "requests[")[0] and requests.source == "requirements.txt"

    numpy = at["numpy", None]
    assert numpy.version == "1.26.4" and numpy.specifier == "==1.26.4"
    assert numpy.hashes == (SHA_A, SHA_B) and numpy.line == lines_of(path, "numpy==")[0]

    pillow = at["pillow", None]
    assert pillow.name == "Pillow" and pillow.specifier == "==10.0.*" and pillow.version is None
    assert pillow.marker == 'sys_platform == "linux"'

    assert at["legacy-thing", None].version == "1.0-custom"
    assert at["legacy-thing", None].specifier == "===1.0-custom"
    assert at["scipy", None].specifier == "" and at["scipy", None].version is None
    assert at["transformers", None].specifier == "~=4.30"
    assert at["black", None].version == "24.1.0" and at["black", None].hashes == ()

    torch = next(d for d in deps if d.normalized == "torch")
    assert torch.url.startswith("https://download.pytorch.org/") and torch.version == "2.0.1+cu118"
    assert torch.specifier == ""

    wheel = next(d for d in deps if d.normalized == "foo-bar")
    assert wheel.version == "1.0" and wheel.marker == 'python_version < "3.12"'
    assert wheel.url == "https://example.com/pkgs/foo_bar-1.0-py3-none-any.whl"

    vcs = next(d for d in deps if d.normalized == "mylib")
    assert vcs.url.startswith("git+https://github.com/org/repo.git@v1.0") and vcs.extras == ("extra",)
    assert vcs.version is None

    unnamed = [d for d in deps if d.name == ""]
    assert {d.url for d in unnamed} == {"git+ssh://git@github.com/org/other.git", "./vendor/pkg", ".",
                                        "./plugins/thing"}
    vendor = next(d for d in unnamed if d.url == "./vendor/pkg")
    assert vendor.extras == ("dev",) and vendor.marker == 'sys_platform == "linux"'

    sdist = next(d for d in deps if d.normalized == "sibling")
    assert sdist.url == "../sibling-1.2.tar.gz" and sdist.version == "1.2"

    assert next(d for d in deps if d.normalized == "edpkg").url == "git+https://github.com/org/ed.git#egg=edpkg"
    plugin = next(d for d in deps if d.url == "./plugins/thing")
    assert plugin.extras == ("all",) and plugin.name == ""
    assert not any(d.constraint for d in deps)
    assert len(deps) == 16


def test_requirements_logical_lines():
    text = "a \\\n  b\n# whole comment \\\nc # trailing \\\nd\n\n  \ne==1 \\"
    assert list(logical_lines(enumerate(text.splitlines(), 1))) == [(1, "a   b"), (4, "c"), (8, "e==1")]
    url = "git+https://x/y.git#egg=y"
    assert list(logical_lines([(3, url)])) == [(3, url)]  # '#' is a comment only after whitespace


def test_requirements_includes_and_constraints(tmp_path):
    write(tmp_path, "requirements.txt", """
        -r requirements/base.txt
        --requirement=requirements/dev.txt
        -c constraints.txt
        flask
    """)
    write(tmp_path, "requirements/base.txt", "numpy==1.26.4\n")
    write(tmp_path, "requirements/dev.txt", "# dev\n-r base.txt\n-r ../requirements/base.txt\npytest>=7\n")
    write(tmp_path, "constraints.txt", "urllib3<2\n-r nested-by-constraint.txt\n")
    write(tmp_path, "nested-by-constraint.txt", "idna==3.7\n")
    manifest = parse(tmp_path, "requirements.txt")
    assert manifest.problems == ()
    deps = by_name(manifest)  # base.txt, included twice, is read once
    assert deps["numpy"].source == "requirements/base.txt" and deps["numpy"].line == 1
    assert deps["pytest"].source == "requirements/dev.txt" and deps["pytest"].line == 4
    assert deps["flask"].source == "requirements.txt" and deps["flask"].line == 4
    assert deps["urllib3"].constraint and deps["urllib3"].specifier == "<2"
    assert deps["urllib3"].source == "constraints.txt"
    assert not deps["idna"].constraint  # pip: a -r inside a constraints file is a requirements file
    assert not deps["numpy"].constraint


def test_requirements_same_file_as_requirement_and_constraint(tmp_path):
    write(tmp_path, "requirements.txt", "-r pins.txt\n-c pins.txt\n")
    write(tmp_path, "pins.txt", "six==1.16.0\n")
    manifest = parse(tmp_path, "requirements.txt")
    assert manifest.problems == ()
    assert sorted(d.constraint for d in manifest.dependencies) == [False, True]


def test_requirements_include_cycles(tmp_path):
    write(tmp_path, "requirements.txt", "-r a.txt\nroot-pkg\n")
    write(tmp_path, "a.txt", "a-pkg\n-r b.txt\n")
    write(tmp_path, "b.txt", "b-pkg\n-r a.txt\n-r b.txt\n-r requirements.txt\n")
    manifest = parse(tmp_path, "requirements.txt")
    assert set(by_name(manifest)) == {"root-pkg", "a-pkg", "b-pkg"}
    assert [(p.source, p.line) for p in manifest.problems] == [("b.txt", 2), ("b.txt", 3), ("b.txt", 4)]
    assert all("include cycle" in p.message for p in manifest.problems)
    assert "requirements.txt -> a.txt -> b.txt -> a.txt" in manifest.problems[0].message


def test_requirements_unreadable_includes(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("stolen==1\n")
    root = tmp_path / "project"
    write(root, "requirements.txt", """
        -r missing.txt
        requests
        -c ../secret.txt
        -r
        -r dir-not-file
    """)
    (root / "dir-not-file").mkdir()
    manifest = parse(root, "requirements.txt")
    assert set(by_name(manifest)) == {"requests"}
    assert [p.line for p in manifest.problems] == [1, 3, 4, 5]
    assert "cannot read" in manifest.problems[0].message and "missing.txt" in manifest.problems[0].message
    assert "needs a value" in manifest.problems[2].message
    without_reader = parser_for("requirements.txt").parse("-r other.txt\nx\n", "requirements.txt")
    assert [d.name for d in without_reader.dependencies] == ["x"]
    assert "no reader" in without_reader.problems[0].message


def test_requirements_include_depth_is_bounded(tmp_path):
    for i in range(MAX_DEPTH + 5):
        write(tmp_path, f"r{i}-requirements.txt", f"pkg{i}\n-r r{i + 1}-requirements.txt\n")
    manifest = parse(tmp_path, "r0-requirements.txt")
    assert {d.name for d in manifest.dependencies} == {f"pkg{i}" for i in range(MAX_DEPTH + 1)}
    assert len(manifest.problems) == 1
    assert manifest.problems[0].source == f"r{MAX_DEPTH}-requirements.txt"
    assert "deep" in manifest.problems[0].message


def test_requirements_include_count_is_bounded(tmp_path):
    for i in range(MAX_INCLUDES + 10):
        write(tmp_path, f"part{i}.txt", f"pkg{i}\n")
    write(tmp_path, "requirements.txt", "".join(f"-r part{i}.txt\n" for i in range(MAX_INCLUDES + 10)))
    manifest = parse(tmp_path, "requirements.txt")
    assert len(manifest.dependencies) == MAX_INCLUDES
    assert len(manifest.problems) == 10 and all("more than" in p.message for p in manifest.problems)


def test_requirements_malformed_lines_keep_the_rest(tmp_path):
    write(tmp_path, "requirements.txt", """
        good-one==1.0
        foo==
        bar>=1,<
        --unknown-option
        -x
        baz==2.0 --hash "sha256:unterminated
        qux @
        marked; python_version <
        ./path/pkg; os_name ==
        git+https://github.com/o/r.git#egg=not a name
        -r a.txt stray-word
        good-two[extra]
    """)
    manifest = parse(tmp_path, "requirements.txt")
    assert [d.name for d in manifest.dependencies] == ["good-one", "good-two"]
    assert [p.line for p in manifest.problems] == list(range(2, 12))
    assert "cannot parse requirement 'foo=='" in manifest.problems[0].message
    assert "unknown option '--unknown-option'" in manifest.problems[2].message
    assert "unknown option '-x'" in manifest.problems[3].message
    assert "cannot split" in manifest.problems[4].message
    assert all(p.source == "requirements.txt" for p in manifest.problems)


def test_url_of_another_project_gives_no_version():
    manifest = parser_for("requirements.txt").parse(
        "foo @ https://example.com/bar-1.0-py3-none-any.whl\nbar @ https://example.com/bar-1.0-py3-none-any.whl\n",
        "requirements.txt")
    assert [(d.name, d.version) for d in manifest.dependencies] == [("foo", None), ("bar", "1.0")]


def test_requirements_from_real_pip_freeze():
    """``pip freeze`` of the test environment: every line is a pinned requirement or a URL."""
    try:
        text = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True,
                              timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("pip freeze is not available")
    manifest = parser_for("requirements.txt").parse(text, "requirements.txt")
    assert manifest.problems == ()
    assert len(manifest.dependencies) == len([line for line in text.splitlines() if line and line[0] != "#"])
    assert all(d.version or d.url for d in manifest.dependencies)
    assert "packaging" in by_name(manifest)


# ---------------------------------------------------------------- pyproject.toml

PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "demo"
version = "0.1.0"
keywords = ["numpy", "torch"]
description = "uses 'numpy' a lot"
dependencies = [
    "numpy",
    "torch>=2.0,<3; platform_system != \\"Darwin\\"",
    'requests[socks] >= 2.31',
    "mylib @ git+https://github.com/org/mylib.git@v1",
]

[project.optional-dependencies]
dev = ["pytest>=7", "numpy"]
docs = [
  "sphinx==7.2.6",
]

[dependency-groups]
test = ["pytest>=7", "coverage[toml]", {include-group = "lint"}]
lint = ["ruff==0.4.0"]
all = [{include-group = "Test"}, {include-group = "lint"}]
'''


def test_pyproject_pep621_and_dependency_groups(tmp_path):
    path = write(tmp_path, "pyproject.toml", PYPROJECT)
    manifest = parse(tmp_path, "pyproject.toml")
    assert manifest.problems == ()
    deps = manifest.dependencies
    assert [d.name for d in deps] == ["numpy", "torch", "requests", "mylib", "pytest", "numpy", "sphinx",
                                      "pytest", "coverage", "ruff"]
    line = {needle: lines_of(path, needle) for needle in ('"numpy"', '"pytest>=7"')}
    assert deps[0].line == line['"numpy"'][1]  # not the keywords line
    assert deps[5].line == line['"numpy"'][2]
    assert (deps[4].line, deps[7].line) == tuple(line['"pytest>=7"'])
    assert deps[1].specifier == "<3,>=2.0" and deps[1].marker == 'platform_system != "Darwin"'
    assert deps[1].line == lines_of(path, "torch>=2.0")[0]
    assert deps[2].extras == ("socks",) and deps[2].line == lines_of(path, "requests[socks]")[0]
    assert deps[3].url == "git+https://github.com/org/mylib.git@v1" and deps[3].specifier == ""
    assert deps[6].version == "7.2.6" and deps[6].line == lines_of(path, "sphinx")[0]
    assert deps[8].extras == ("toml",) and deps[9].line == lines_of(path, "ruff")[0]
    assert all(d.source == "pyproject.toml" for d in deps)


def test_pyproject_inline_and_dotted_tables(tmp_path):
    path = write(tmp_path, "pyproject.toml", """
        project.name = "x"
        project.dependencies = ["attrs>=23"]
        project.optional-dependencies = { gpu = ["cupy==13.0.0"], cpu = [
            "onnxruntime",
        ] }
    """)
    deps = by_name(parse(tmp_path, "pyproject.toml"))
    assert deps["attrs"].line == 2 and deps["cupy"].line == 3
    assert deps["onnxruntime"].line == lines_of(path, "onnxruntime")[0]


def test_pyproject_dependency_group_problems(tmp_path):
    write(tmp_path, "pyproject.toml", """
        [dependency-groups]
        a = ["one", {include-group = "b"}]
        b = ["two", {include-group = "c"}]
        c = [{include-group = "a"}, {include-group = "missing"}, {include-group = 3}, 42, "bad=="]
        d = "not-a-list"
    """)
    manifest = parse(tmp_path, "pyproject.toml")
    assert [d.name for d in manifest.dependencies] == ["one", "two"]
    messages = [p.message for p in manifest.problems]
    assert sum("which is not a group" in m for m in messages) == 2
    assert sum("42" in m and "not a requirement string" in m for m in messages) == 1
    assert sum("cannot parse requirement 'bad=='" in m for m in messages) == 1
    assert sum("is not an array" in m for m in messages) == 1
    assert [m for m in messages if "include each other" in m] == [
        "dependency groups include each other: a -> b -> c -> a"]
    assert {p.line for p in manifest.problems if "not a group" in p.message} == {4}


POETRY = '''
[tool.poetry]
name = "demo"
version = "0.1.0"

[tool.poetry.dependencies]
python = "^3.9"
requests = "^2.31.0"
numpy = "~1.26"
pandas = "2.1.*"
scipy = "*"
six = "1.16.0"
urllib3 = ">=1.26, <3"
"zope.interface" = ">= 5.0 < 7"
either = "^1.2 || ^2.0"
uvicorn = { version = "^0.23.2", extras = ["standard"] }
pywin32 = { version = "306", markers = "sys_platform == 'win32'" }
mylib = { git = "https://github.com/org/mylib.git", tag = "v1.0" }
wheelpkg = { url = "https://example.com/wheelpkg-2.0-py3-none-any.whl" }
localpkg = { path = "../localpkg", develop = true }
foo = [
    { version = "<=1.9", python = ">=3.6,<3.8" },
    { version = "^2.0", python = ">=3.8" },
]

[tool.poetry.dependencies.tableform]
version = "^0.2.3"

[tool.poetry.group.dev.dependencies]
pytest = "^8.0"
requests = "2.32.3"

[tool.poetry.dev-dependencies]
black = "^24.1"
'''


def test_pyproject_poetry(tmp_path):
    path = write(tmp_path, "pyproject.toml", POETRY)
    manifest = parse(tmp_path, "pyproject.toml")
    assert manifest.problems == ()
    deps = manifest.dependencies
    assert "python" not in {d.normalized for d in deps}
    spec = {(d.name, d.specifier) for d in deps}
    assert {("requests", "<3.0.0,>=2.31.0"), ("numpy", "<1.27,>=1.26"), ("pandas", "==2.1.*"), ("scipy", ""),
            ("six", "==1.16.0"), ("urllib3", "<3,>=1.26"), ("zope.interface", "<7,>=5.0"), ("either", ""),
            ("foo", "<=1.9"), ("foo", "<3.0,>=2.0"), ("tableform", "<0.3.0,>=0.2.3"),
            ("pytest", "<9.0,>=8.0"), ("requests", "==2.32.3"), ("black", "<25.0,>=24.1")} <= spec
    named = {(d.name, d.line): d for d in deps}

    def line(needle: str) -> int:
        return lines_of(path, needle)[0]

    assert named["six", line("six =")].version == "1.16.0"
    assert named["uvicorn", line("uvicorn")].extras == ("standard",)
    pywin32 = named["pywin32", line("pywin32")]
    assert pywin32.version == "306" and pywin32.marker == 'sys_platform == "win32"'
    assert named["mylib", line("mylib")].url == "https://github.com/org/mylib.git"
    wheel = named["wheelpkg", line("wheelpkg")]
    assert wheel.url.endswith("wheelpkg-2.0-py3-none-any.whl") and wheel.version == "2.0"
    assert named["localpkg", line("localpkg")].url == "../localpkg"
    assert named["zope.interface", line("zope.interface")].normalized == "zope-interface"
    assert [d.line for d in deps if d.name == "foo"] == [line("foo = [")] * 2
    assert named["tableform", line("dependencies.tableform")].specifier == "<0.3.0,>=0.2.3"
    assert [d.line for d in deps if d.name == "requests"] == lines_of(path, "requests =")
    assert named["black", line("black")].version is None


@pytest.mark.parametrize("constraint, specifier", [
    ("^1.2.3", "<2.0.0,>=1.2.3"), ("^0.2.3", "<0.3.0,>=0.2.3"), ("^0.0.3", "<0.0.4,>=0.0.3"),
    ("^0.0", "<0.1,>=0.0"), ("^0", "<1,>=0"), ("^1", "<2,>=1"), ("^1.2", "<2.0,>=1.2"),
    ("^0.0.0.4", "<0.0.1.0,>=0.0.0.4"), ("^1!2.0", "<1!3.0,>=1!2.0"),
    ("~1.2", "<1.3,>=1.2"), ("~1.2.3", "<1.3.0,>=1.2.3"), ("~1", "<2,>=1"),
    ("1.2.*", "==1.2.*"), ("*", ""), ("", ""), ("1.2.3", "==1.2.3"), ("=1.2.3", "==1.2.3"), ("==1.0", "==1.0"),
    (">=1.2,<2.0", "<2.0,>=1.2"), (">= 1.2 < 2", "<2,>=1.2"), ("!=1.5", "!=1.5"), ("~=1.4", "~=1.4"),
    ("^1.2 || ^2.0", ""), ("1.0|2.0", ""), ("===1.0-x", "===1.0-x"),
])
def test_poetry_specifier(constraint, specifier):
    assert poetry_specifier(constraint) == specifier


@pytest.mark.parametrize("constraint", ["^x", "~1.a.b", ">=", "^1.*", "1..2"])
def test_poetry_specifier_rejects(constraint):
    with pytest.raises(ValueError):
        poetry_specifier(constraint)


def test_pyproject_malformed(tmp_path):
    write(tmp_path, "pyproject.toml", """
        [project]
        dependencies = "requests"
        optional-dependencies = ["x"]

        [tool.poetry.dependencies]
        ok = "^1.0"
        bad = "^x"
        worse = 3
        table = { version = 4 }
        extras = { version = "1", extras = [1] }
        marker = { version = "1", markers = "os_name ==" }
        gitnum = { git = 5 }

        [tool.poetry.group.g]
        dependencies = []
    """)
    manifest = parse(tmp_path, "pyproject.toml")
    assert [d.name for d in manifest.dependencies] == ["ok"]
    problems = {p.message.split(":")[0]: p for p in manifest.problems}
    assert "project.dependencies is not an array" in problems
    assert "project.optional-dependencies is not a table" in problems
    assert "[tool.poetry.group.g.dependencies] is not a table" in problems
    for name, line in [("bad", 7), ("worse", 8), ("table", 9), ("extras", 10), ("marker", 11), ("gitnum", 12)]:
        assert problems[f"tool.poetry.dependencies.{name}"].line == line


def test_pyproject_not_toml(tmp_path):
    write(tmp_path, "pyproject.toml", '[project]\ndependencies = ["a",\nname = "x"\n')
    manifest = parse(tmp_path, "pyproject.toml")
    assert manifest.dependencies == ()
    assert len(manifest.problems) == 1 and manifest.problems[0].line == 3
    assert manifest.problems[0].message.startswith("not valid TOML")


# ---------------------------------------------------------------- poetry.lock

POETRY_LOCK = '''
# This file is automatically @generated by Poetry 1.8.3 and should not be changed by hand.

[[package]]
name = "certifi"
version = "2024.8.30"
description = "Python package for providing Mozilla's CA Bundle."
optional = false
python-versions = ">=3.6"
files = [
    {file = "certifi-2024.8.30-py3-none-any.whl", hash = "sha256:922820b53db7a7257ffbda3f597266d435245903d80737e34f8a45ff3e3230d8"},
    {file = "certifi-2024.8.30.tar.gz", hash = "sha256:bec941d2aa8195e248a60b31ff9f0558284cf01a52591ceda73ea9afffd69fd9"},
]

[[package]]
name = "colorama"
version = "0.4.6"
description = "Cross-platform colored terminal text."
optional = false
python-versions = "!=3.0.*,!=3.1.*,!=3.2.*,!=3.3.*,!=3.4.*,!=3.5.*,!=3.6.*,>=2.7"
files = []
markers = "sys_platform == \\"win32\\""

[[package]]
name = "mylib"
version = "0.3.0"
description = ""
optional = false
python-versions = "*"
files = []
develop = false

[package.source]
type = "git"
url = "https://github.com/org/mylib.git"
reference = "main"
resolved_reference = "4f9a2b1c"

[[package]]
name = "Private_Pkg"
version = "1.0"
description = ""
optional = false
python-versions = "*"
files = []
groups = ["main", "dev"]
markers = {main = "python_version < \\"3.10\\"", dev = "sys_platform == \\"linux\\""}

[package.source]
type = "legacy"
url = "https://pypi.internal.example/simple"
reference = "internal"

[[package]]
name = "requests"
version = "2.32.3"
description = "Python HTTP for Humans."
optional = false
python-versions = ">=3.8"
files = []

[package.dependencies]
certifi = ">=2017.4.17"

[package.extras]
socks = ["PySocks (>=1.5.6,!=1.5.7)"]

[[package]]
name = "localpkg"
version = "0.1.0"
description = ""
optional = false
python-versions = "*"
files = []
develop = true

[package.source]
type = "directory"
url = "../localpkg"

[metadata]
lock-version = "2.0"
python-versions = "^3.9"
content-hash = "0123456789abcdef"
'''


def test_poetry_lock(tmp_path):
    path = write(tmp_path, "poetry.lock", POETRY_LOCK)
    manifest = parse(tmp_path, "poetry.lock")
    assert manifest.problems == ()
    deps = by_name(manifest)
    assert list(deps) == ["certifi", "colorama", "mylib", "private-pkg", "requests", "localpkg"]
    for name, dep in deps.items():
        assert dep.line == lines_of(path, f'name = "{dep.name}"')[0] and dep.source == "poetry.lock"
    certifi = deps["certifi"]
    assert certifi.version == "2024.8.30" and certifi.specifier == "==2024.8.30" and certifi.url is None
    assert certifi.hashes == ("sha256:922820b53db7a7257ffbda3f597266d435245903d80737e34f8a45ff3e3230d8",
                              "sha256:bec941d2aa8195e248a60b31ff9f0558284cf01a52591ceda73ea9afffd69fd9")
    assert deps["colorama"].marker == 'sys_platform == "win32"'
    assert deps["mylib"].url == "https://github.com/org/mylib.git" and deps["mylib"].version == "0.3.0"
    assert deps["private-pkg"].url is None and deps["private-pkg"].name == "Private_Pkg"
    assert deps["private-pkg"].marker == '(python_version < "3.10") or (sys_platform == "linux")'
    assert deps["requests"].hashes == () and deps["requests"].marker is None
    assert deps["localpkg"].url == "../localpkg"


def test_poetry_lock_broken_section_loses_only_itself(tmp_path):
    broken = POETRY_LOCK.replace('name = "mylib"\nversion = "0.3.0"', 'name = "mylib"\nversion = 0.3.0')
    broken = broken.replace('name = "requests"', 'nom = "requests"')
    path = write(tmp_path, "poetry.lock", broken)
    manifest = parse(tmp_path, "poetry.lock")
    assert list(by_name(manifest)) == ["certifi", "colorama", "private-pkg", "localpkg"]
    assert [p.line for p in manifest.problems] == [lines_of(path, "version = 0.3.0")[0],
                                                   lines_of(path, 'nom = "requests"')[0] - 1]
    assert "not valid TOML" in manifest.problems[0].message and "no 'name'" in manifest.problems[1].message


# ---------------------------------------------------------------- uv.lock

UV_LOCK = '''
version = 1
revision = 1
requires-python = ">=3.9"
resolution-markers = [
    "python_full_version >= '3.10'",
    "python_full_version < '3.10'",
]

[manifest]
members = ["demo", "member"]

[[package]]
name = "certifi"
version = "2024.8.30"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.pythonhosted.org/packages/b0/ee/certifi-2024.8.30.tar.gz", hash = "sha256:bec941d2aa8195e248a60b31ff9f0558284cf01a52591ceda73ea9afffd69fd9", size = 168507 }
wheels = [
    { url = "https://files.pythonhosted.org/packages/12/90/certifi-2024.8.30-py3-none-any.whl", hash = "sha256:922820b53db7a7257ffbda3f597266d435245903d80737e34f8a45ff3e3230d8", size = 167321 },
]

[[package]]
name = "demo"
version = "0.1.0"
source = { editable = "." }
dependencies = [
    { name = "certifi" },
    { name = "numpy", version = "2.0.2", source = { registry = "https://pypi.org/simple" }, marker = "python_full_version < '3.10'" },
]

[package.metadata]
requires-dist = [{ name = "certifi", specifier = ">=2024" }, { name = "numpy" }]

[[package]]
name = "numpy"
version = "2.0.2"
source = { registry = "https://pypi.org/simple" }
resolution-markers = [
    "python_full_version < '3.10'",
]
sdist = { url = "https://files.pythonhosted.org/packages/a9/75/numpy-2.0.2.tar.gz", hash = "sha256:883c987dee1880e2a864ab0dc9892292582510604156762362d9326444636e78", size = 18902015 }

[[package]]
name = "requests"
version = "2.32.3"
source = { git = "https://github.com/psf/requests?tag=v2.32.3#0e322af87745eff34caffe4df68456ebc20d9068" }

[[package]]
name = "wheelpkg"
version = "1.0"
source = { url = "https://example.com/wheelpkg-1.0-py3-none-any.whl" }
wheels = [
    { url = "https://example.com/wheelpkg-1.0-py3-none-any.whl", hash = "sha256:aaaa" },
]

[[package]]
name = "member"
version = "0.2.0"
source = { editable = "packages/member" }

[[package]]
name = "vendored"
version = "3.0"
source = { path = "vendor/vendored-3.0.tar.gz" }

[[package]]
name = "dynamic"
source = { directory = "libs/dynamic" }

[[package]]
name = "scripts"
version = "0.0.0"
source = { virtual = "tools/scripts" }
'''


def test_uv_lock(tmp_path):
    path = write(tmp_path, "uv.lock", UV_LOCK)
    manifest = parse(tmp_path, "uv.lock")
    assert manifest.problems == ()
    deps = by_name(manifest)
    assert list(deps) == ["certifi", "numpy", "requests", "wheelpkg", "member", "vendored", "dynamic"]
    for dep in deps.values():
        assert dep.line == line_starting(path, f'name = "{dep.name}"')
    certifi = deps["certifi"]
    assert certifi.version == "2024.8.30" and certifi.url is None and certifi.marker is None
    assert certifi.hashes == ("sha256:bec941d2aa8195e248a60b31ff9f0558284cf01a52591ceda73ea9afffd69fd9",
                              "sha256:922820b53db7a7257ffbda3f597266d435245903d80737e34f8a45ff3e3230d8")
    assert deps["numpy"].marker == "python_full_version < '3.10'"
    assert deps["requests"].url.startswith("https://github.com/psf/requests?tag=v2.32.3#")
    assert deps["requests"].version == "2.32.3"
    assert deps["wheelpkg"].url == "https://example.com/wheelpkg-1.0-py3-none-any.whl"
    assert deps["member"].url == "packages/member"
    assert deps["vendored"].url == "vendor/vendored-3.0.tar.gz"
    assert deps["dynamic"].version is None and deps["dynamic"].specifier == ""


def test_uv_lock_malformed_entries(tmp_path):
    write(tmp_path, "uv.lock", """
        version = 1

        [[package]]
        name = "good"
        version = "1.0"
        source = { registry = "https://pypi.org/simple" }

        [[package]]
        name = "badsource"
        version = "1.0"
        source = "pypi"

        [[package]]
        name = "badgit"
        source = { git = 1 }

        [[package]]
        name = "badmarkers"
        version = "1.0"
        resolution-markers = "python_version < '3'"

        [[package]]
        name = "unclosed
    """)
    manifest = parse(tmp_path, "uv.lock")
    assert [d.name for d in manifest.dependencies] == ["good"]
    assert [p.line for p in manifest.problems] == [9, 14, 18, 23]


# ---------------------------------------------------------------- Pipfile.lock

PIPFILE_LOCK = {
    "_meta": {
        "hash": {"sha256": "0" * 64},
        "pipfile-spec": 6,
        "requires": {"python_version": "3.11"},
        "sources": [{"name": "pypi", "url": "https://pypi.org/simple", "verify_ssl": True}],
    },
    "default": {
        "certifi": {"hashes": [SHA_A, SHA_B], "index": "pypi", "markers": "python_version >= '3.6'",
                    "version": "==2024.8.30"},
        "requests": {"extras": ["socks"], "hashes": [SHA_A], "index": "pypi", "version": "==2.32.3"},
        "mylib": {"git": "https://github.com/org/mylib.git", "ref": "4f9a2b1c"},
        "localpkg": {"editable": True, "path": "./localpkg"},
        "wheelpkg": {"file": "https://example.com/wheelpkg-1.0-py3-none-any.whl"},
        "anything": {"version": "*"},
    },
    "develop": {
        "pytest": {"hashes": [SHA_B], "index": "pypi", "markers": "python_version >= '3.8'", "version": "==8.3.3"},
        "certifi": {"version": "==2024.8.30"},
    },
}


def test_pipfile_lock(tmp_path):
    path = tmp_path / "Pipfile.lock"
    path.write_text(json.dumps(PIPFILE_LOCK, indent=4, sort_keys=True) + "\n")  # as pipenv writes it
    manifest = parse(tmp_path, "Pipfile.lock")
    assert manifest.problems == ()
    deps = manifest.dependencies
    assert [d.name for d in deps] == ["anything", "certifi", "localpkg", "mylib", "requests", "wheelpkg",
                                      "certifi", "pytest"]
    certifi = deps[1]
    assert certifi.version == "2024.8.30" and certifi.hashes == (SHA_A, SHA_B)
    assert certifi.marker == "python_version >= '3.6'"
    assert [d.line for d in deps if d.name == "certifi"] == lines_of(path, '"certifi": {')
    assert deps[0].specifier == "" and deps[0].version is None
    assert deps[2].url == "./localpkg" and deps[3].url == "https://github.com/org/mylib.git"
    assert deps[4].extras == ("socks",) and deps[4].specifier == "==2.32.3"
    assert deps[5].version == "1.0" and deps[7].line == lines_of(path, '"pytest"')[0]


def test_pipfile_lock_malformed(tmp_path):
    (tmp_path / "Pipfile.lock").write_text(json.dumps({
        "default": {"good": {"version": "==1.0"}, "bad": {"version": "=>1.0"}, "worse": "1.0",
                    "hashes": {"hashes": "sha256:x"}, "extras": {"extras": [1]}},
        "develop": [],
    }, indent=4))
    manifest = parse(tmp_path, "Pipfile.lock")
    assert [d.name for d in manifest.dependencies] == ["good"]
    assert [p.line for p in manifest.problems] == [6, 9, 10, 13, None]
    assert "'develop' is not a table" in manifest.problems[-1].message
    (tmp_path / "Pipfile.lock").write_text('{\n  "default": {\n    "x": {\n}')
    manifest = parse(tmp_path, "Pipfile.lock")
    assert manifest.dependencies == () and manifest.problems[0].line == 4
    (tmp_path / "Pipfile.lock").write_text("[1, 2]")
    assert "the document is not a table" in parse(tmp_path, "Pipfile.lock").problems[0].message


# ---------------------------------------------------------------- pylock.toml

PYLOCK = '''
lock-version = "1.0"
environments = ["sys_platform == 'win32'", "sys_platform == 'linux'"]
requires-python = "==3.12"
created-by = "mousebender"

[[packages]]
name = "attrs"
version = "25.1.0"
requires-python = ">=3.8"
wheels = [
  {name = "attrs-25.1.0-py3-none-any.whl", upload-time = 2025-01-25T11:30:10.164985+00:00, url = "https://files.pythonhosted.org/packages/fc/30/attrs-25.1.0-py3-none-any.whl", size = 63152, hashes = {sha256 = "c75a69e28a550a7e93789579c22aa26b0f5b83b75dc4e08fe092980051e1090a"}},
]

[[packages]]
name = "numpy"
version = "2.2.3"
marker = "sys_platform == 'linux'"
requires-python = ">=3.10"
[packages.sdist]
name = "numpy-2.2.3.tar.gz"
url = "https://files.pythonhosted.org/packages/fb/90/numpy-2.2.3.tar.gz"
hashes = {sha256 = "dbdc15f0c81611925f382dfa97b3bd0bc2c1ce19d4fe50482cb0ddc12ba30020"}

[[packages.wheels]]
name = "numpy-2.2.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
url = "https://files.pythonhosted.org/packages/numpy-2.2.3-cp312-cp312-manylinux_2_17_x86_64.whl"
hashes = {sha256 = "2f2b2b1c", blake2b = "77aa"}

[[packages]]
name = "mylib"
[packages.vcs]
type = "git"
url = "https://github.com/org/mylib.git"
requested-revision = "main"
commit-id = "4f9a2b1c"

[[packages]]
name = "arch"
version = "1.0"
archive = {url = "https://example.com/arch-1.0.tar.gz", hashes = {sha256 = "abcd"}}

[[packages]]
name = "local"
directory = {path = "./local", editable = true}

[tool.mousebender]
note = "tools keep their own data here"
'''


def test_pylock(tmp_path):
    path = write(tmp_path, "pylock.toml", PYLOCK)
    manifest = parse(tmp_path, "pylock.toml")
    assert manifest.problems == ()
    deps = by_name(manifest)
    assert list(deps) == ["attrs", "numpy", "mylib", "arch", "local"]
    for dep in deps.values():
        assert dep.line == lines_of(path, f'name = "{dep.name}"')[0]
    assert deps["attrs"].version == "25.1.0" and deps["attrs"].url is None
    assert deps["attrs"].hashes == ("sha256:c75a69e28a550a7e93789579c22aa26b0f5b83b75dc4e08fe092980051e1090a",)
    numpy = deps["numpy"]
    assert numpy.marker == "sys_platform == 'linux'"
    assert numpy.hashes == ("sha256:dbdc15f0c81611925f382dfa97b3bd0bc2c1ce19d4fe50482cb0ddc12ba30020",
                            "sha256:2f2b2b1c", "blake2b:77aa")
    assert deps["mylib"].url == "https://github.com/org/mylib.git" and deps["mylib"].version is None
    assert deps["arch"].url == "https://example.com/arch-1.0.tar.gz" and deps["arch"].hashes == ("sha256:abcd",)
    assert deps["local"].url == "./local"


def wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel, written by hand."""
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": b"",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
             + b"".join(f"Requires-Dist: {r}\n".encode() for r in requires),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for p, d in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,", ""]).encode()
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for member, data in files.items():
            z.writestr(member, data)
    return path


def test_pylock_from_real_pip_lock(tmp_path):
    """``pip lock`` (pip >= 25.1) writes the file, offline, from two local wheels."""
    wheels = tmp_path / "wheels"
    made = [wheel(wheels, "tinydep", "1.2.3", ("otherdep>=2",)), wheel(wheels, "otherdep", "2.0")]
    try:
        subprocess.run([sys.executable, "-m", "pip", "lock", "-q", "--no-index", "--find-links", str(wheels),
                        "tinydep", "-o", str(tmp_path / "pylock.toml")], check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"this pip cannot lock: {e}")
    manifest = parse(tmp_path, "pylock.toml")
    assert manifest.problems == ()
    assert {(d.name, d.version, d.specifier) for d in manifest.dependencies} == {
        ("tinydep", "1.2.3", "==1.2.3"), ("otherdep", "2.0", "==2.0")}
    for dep in manifest.dependencies:
        path = next(p for p in made if p.name.startswith(dep.name))
        assert dep.hashes == (f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}",)
        assert dep.url is None and dep.line == line_starting(tmp_path / "pylock.toml", f'name = "{dep.name}"')


def test_pylock_broken_section(tmp_path):
    write(tmp_path, "pylock.dev.toml", """
        lock-version = "1.0"
        [[packages]]
        name = "ok"
        version = "1"
        [[packages]]
        name = "broken"
        version = "1" = 2
        [[packages]]
        version = "3"
        [[packages]]
        name = "weird version"
        version = "not a version"
    """)
    manifest = parse(tmp_path, "pylock.dev.toml")
    assert [(d.name, d.specifier, d.version) for d in manifest.dependencies] == [
        ("ok", "==1", "1"), ("weird version", "", "not a version")]
    assert [p.line for p in manifest.problems] == [7, 8]


# ---------------------------------------------------------------- conda environment.yml

ENVIRONMENT = '''
name: ml-env
channels:
  - pytorch
  - conda-forge
  - defaults
dependencies:
  - python=3.11
  - numpy=1.26
  - scipy==1.11.4
  - pandas>=2.0,<3
  - conda-forge::pytorch=2.1.0=py3.11_cuda11.8_cudnn8.7.0_0
  - pkgs/main/linux-64::openssl=3.0.12=h7f8727e_0
  - cudatoolkit 11.8.0 h6a678d5_0
  - scikit-learn 1.3.*
  - libgcc-ng=13.2.0|13.1.0
  - matplotlib[version='>=3.7,<4']
  - pip
  - pip:
    - requests==2.31.0 --hash=sha256:aaaa
    - --extra-index-url https://download.pytorch.org/whl/cu118
    - -r requirements-extra.txt
    - git+https://github.com/org/mylib.git#egg=mylib
    - -e ./src
'''


def test_conda_environment(tmp_path):
    path = write(tmp_path, "environment.yml", ENVIRONMENT)
    write(tmp_path, "requirements-extra.txt", "transformers>=4.30\n")
    manifest = parse(tmp_path, "environment.yml")
    assert manifest.problems == ()
    deps = {d.normalized: d for d in manifest.dependencies}
    expected = {
        "python": ("==3.11.*", None), "numpy": ("==1.26.*", None), "scipy": ("==1.11.4", "1.11.4"),
        "pandas": ("<3,>=2.0", None), "pytorch": ("==2.1.0", "2.1.0"), "openssl": ("==3.0.12", "3.0.12"),
        "cudatoolkit": ("==11.8.0", "11.8.0"), "scikit-learn": ("==1.3.*", None), "libgcc-ng": ("", None),
        "matplotlib": ("<4,>=3.7", None), "pip": ("", None), "requests": ("==2.31.0", "2.31.0"),
        "transformers": (">=4.30", None),
    }
    assert {name: (deps[name].specifier, deps[name].version) for name in expected} == expected
    for name in expected.keys() - {"transformers", "requests"}:
        assert deps[name].line == lines_of(path, f"::{name}" if name in ("pytorch", "openssl") else f"- {name}")[0]
        assert deps[name].source == "environment.yml"
    assert deps["requests"].line == lines_of(path, "requests==")[0] and deps["requests"].hashes == ("sha256:aaaa",)
    assert deps["transformers"].source == "requirements-extra.txt" and deps["transformers"].line == 1
    assert deps["mylib"].url == "git+https://github.com/org/mylib.git#egg=mylib"
    assert next(d for d in manifest.dependencies if d.url == "./src").name == ""
    assert len(manifest.dependencies) == 15


@pytest.mark.parametrize("rest, specifier", [
    ("", ""), ("=1.2", "==1.2.*"), ("=1.2.3", "==1.2.3.*"), ("=1.2=py_0", "==1.2"), ("==1.2.3", "==1.2.3"),
    ("==1.2.3=py_0", "==1.2.3"), (">=1.2", ">=1.2"), (">=1.2,<2", "<2,>=1.2"), ("1.2 py_0", "==1.2"),
    (" 1.2.*", "==1.2.*"), ("1.2*", "==1.2.*"), ("!=1.5*", "!=1.5.*"), ("=1.1.1w", ""), ("==1.1.1w", "===1.1.1w"),
    ("=1.0|1.1", ""), ("[version='>=1,<2', build=py_0]", "<2,>=1"), ("[build=py_0]", ""), ("=*=py_0", ""),
    (">=1.2 py_0", ">=1.2"), ("~=1.4", "~=1.4"),
])
def test_conda_specifier(rest, specifier):
    assert conda_specifier(rest) == specifier


def test_conda_malformed(tmp_path):
    write(tmp_path, "environment.yml", """
        dependencies:
          - numpy
          - =1.2
          -
          - {other: thing}
          - pip:
            - requests
            - [nested]
            - foo==
            - -r missing.txt
          - [a, b]
    """)
    manifest = parse(tmp_path, "environment.yml")
    assert [d.name for d in manifest.dependencies] == ["numpy", "requests"]
    assert sorted(p.line for p in manifest.problems) == [3, 4, 5, 8, 9, 10, 11]
    for text, line in [("dependencies:\n  - a\n  - [b\n", 4), ("dependencies: 3\n", 1), ("a: b\n---\nc: d\n", 2)]:
        (tmp_path / "environment.yml").write_text(text)
        manifest = parse(tmp_path, "environment.yml")
        assert [p.line for p in manifest.problems] == [line], text
    for text in ("name: not-conda\n", "", "- a\n- b\n", "just text"):
        (tmp_path / "environment.yml").write_text(text)
        assert parse(tmp_path, "environment.yml") == Manifest((), ())


def test_conda_aliases_do_not_multiply(tmp_path):
    """A billion-laughs style file: every alias of one list is read once."""
    pips = "\n".join(f"    - pkg{i}" for i in range(1000))
    refs = "\n".join("  - *p" for _ in range(5000))
    write(tmp_path, "environment.yml", f"dependencies:\n  - &p\n    pip:\n{pips}\n{refs}\n")
    manifest = parse(tmp_path, "environment.yml")
    assert len(manifest.dependencies) == 1000 and manifest.problems == ()


@pytest.mark.parametrize("text", ["dependencies:\n  - " + "[" * 100_000, "dependencies:\n  - " + "- " * 50_000 + "x\n",
                                  "dependencies:\n" + "".join(f"{' ' * i}- a:\n" for i in range(0, 400, 2))])
def test_conda_deep_nesting_is_refused(text):
    """Some PyYAML builds crash (C stack overflow) composing deep YAML: the depth is checked first."""
    manifest = parser_for("environment.yml").parse(text, "environment.yml")
    assert manifest.dependencies == () and "nest" in manifest.problems[0].message  # ours, or libyaml's own limit
    assert manifest.problems[0].line is not None


@pytest.mark.parametrize("name, text", [("requirements.txt", REQUIREMENTS), ("pyproject.toml", PYPROJECT + POETRY),
                                        ("poetry.lock", POETRY_LOCK), ("uv.lock", UV_LOCK), ("pylock.toml", PYLOCK),
                                        ("Pipfile.lock", json.dumps(PIPFILE_LOCK, indent=4)),
                                        ("environment.yml", ENVIRONMENT)])
def test_windows_line_endings_change_nothing(name, text):
    parser = parser_for(name)
    assert parser.parse(text.replace("\n", "\r\n"), name) == parser.parse(text, name)


# ---------------------------------------------------------------- hostile input, every parser

NAMES = {"requirements": "requirements.txt", "pyproject": "pyproject.toml", "poetry.lock": "poetry.lock",
         "uv.lock": "uv.lock", "Pipfile.lock": "Pipfile.lock", "pylock": "pylock.toml", "conda": "environment.yml"}
SAMPLES = {"requirements": REQUIREMENTS, "pyproject": PYPROJECT + POETRY,
           "poetry.lock": POETRY_LOCK, "uv.lock": UV_LOCK, "Pipfile.lock": json.dumps(PIPFILE_LOCK, indent=4),
           "pylock": PYLOCK, "conda": ENVIRONMENT}


def check(manifest: Manifest) -> None:
    assert isinstance(manifest, Manifest)
    assert all(isinstance(d, Dependency) for d in manifest.dependencies)
    assert all(isinstance(p, Problem) and isinstance(p.message, str) for p in manifest.problems)
    assert all(len(p.message) < 2000 for p in manifest.problems)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
def test_hostile_garbage_never_raises(parser, tmp_path):
    rng = random.Random(parser.name)
    blobs = [bytes(rng.randrange(256) for _ in range(4096)).decode("utf-8", "surrogateescape") for _ in range(5)]
    blobs += ["\x00" * 100, "\ufeff" + SAMPLES[parser.name], SAMPLES[parser.name][: len(SAMPLES[parser.name]) // 2]]
    blobs += [("[" * 100_000), ("{" * 100_000), ('a = ' + "[" * 100_000), ("- " * 50_000), ("x" * 1_000_000)]
    blobs += [SAMPLES[parser.name].replace("\n", "\r\n"), SAMPLES[parser.name].replace('"', "'")]
    read = tree_reader(tmp_path)
    for text in blobs:
        check(parser.parse(text, NAMES[parser.name], read))


@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")  # packaging reads marker strings
@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
def test_hostile_mutations_never_raise(parser, tmp_path):
    """Real files with random bytes flipped, cut or repeated."""
    rng = random.Random(parser.name)
    sample = SAMPLES[parser.name]
    for _ in range(150):
        chars = list(sample)
        for _ in range(rng.randrange(1, 8)):
            i = rng.randrange(len(chars))
            chars[i] = rng.choice(['"', "'", "[", "]", "{", "}", "=", ",", "\n", "\\", "#", ":", "-", " ", "\x00",
                                   "é", chr(rng.randrange(0x20, 0x7f))])
        check(parser.parse("".join(chars), NAMES[parser.name], tree_reader(tmp_path)))


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_hostile_text_never_raises(text):
    for parser in PARSERS:
        check(parser.parse(text, NAMES[parser.name]))


def test_hostile_long_lines_are_fast(tmp_path):
    long_name = "a" * 1_000_000
    text = f"{long_name}==\n{' ' * 1_000_000}# comment\nok==1\n{'b[' + 'c,' * 100_000}]\n"
    manifest = parser_for("requirements.txt").parse(text, "requirements.txt")
    assert [d.name for d in manifest.dependencies] == ["ok"]
    assert [p.line for p in manifest.problems] == [1, 4]
    assert all(len(p.message) < 300 for p in manifest.problems)
    many = "".join(f'"pkg{i}==1.0",\n' for i in range(20_000))
    manifest = parser_for("pyproject.toml").parse(f"[project]\ndependencies = [\n{many}]\n", "pyproject.toml")
    assert len(manifest.dependencies) == 20_000 and manifest.dependencies[-1].line == 20_002


def test_hostile_long_dotted_keys_are_refused_quickly(tmp_path):
    """tomllib takes time quadratic in a dotted key's parts: such documents are refused before parsing."""
    key = "a." * 50_000 + "b = 1\n"
    for name, text in [("pyproject.toml", "[project]\n" + key), ("uv.lock", "[[package]]\nname = 'x'\n" + key),
                       ("pylock.toml", "[" + "t." * 50_000 + "u]\n")]:
        started = time.monotonic()
        manifest = parser_for(name).parse(text, name)
        assert time.monotonic() - started < 10
        assert manifest.dependencies == () and "dotted key" in manifest.problems[0].message
    assert parser_for("pyproject.toml").parse('[a."b.c".d]\nx.y.z = "1.2.3.4"\n', "p").problems == ()


def test_hostile_entry_count_is_bounded(monkeypatch):
    monkeypatch.setattr(_entries, "MAX_ENTRIES", 5)
    monkeypatch.setattr(requirements, "MAX_ENTRIES", 5)
    texts = {"requirements.txt": "".join(f"p{i}\n" for i in range(9)),
             "environment.yml": "dependencies:\n" + "".join(f"  - p{i}\n" for i in range(9)),
             "pyproject.toml": "[project]\ndependencies = [" + ", ".join(f'"p{i}"' for i in range(9)) + "]\n",
             "uv.lock": "".join(f'[[package]]\nname = "p{i}"\n' for i in range(9)),
             "Pipfile.lock": json.dumps({"default": {f"p{i}": {} for i in range(9)}})}
    for name, text in texts.items():
        manifest = parser_for(name).parse(text, name)
        assert [d.name for d in manifest.dependencies] == [f"p{i}" for i in range(5)], name
        assert len(manifest.problems) == 1 and "more than 5" in manifest.problems[0].message


def test_hostile_quoted_options_are_bounded():
    text = f'x==1 --hash "{"a" * 20_000}"\ny==1 --hash "sha256:{"b" * 64}"\n'
    manifest = parser_for("requirements.txt").parse(text, "requirements.txt")
    assert [(d.name, d.hashes) for d in manifest.dependencies] == [("y", (f"sha256:{'b' * 64}",))]
    assert manifest.problems[0].line == 1 and "not read" in manifest.problems[0].message


def test_nothing_in_a_manifest_runs(tmp_path, canary):
    write(tmp_path, "environment.yml", f"""
        dependencies:
          - !!python/object/apply:os.system ["touch {canary}"]
          - pip:
            - !!python/object/apply:os.system ["touch {canary}"]
            - $(touch {canary})
    """)
    manifest = parse(tmp_path, "environment.yml")
    assert [p.line for p in manifest.problems] == [2, 4]  # tagged nodes are not strings; nothing is constructed
    assert [d.url for d in manifest.dependencies] == [f"$(touch {canary})"]  # a path, as far as text tells
