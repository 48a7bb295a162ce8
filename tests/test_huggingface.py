"""Hugging Face repository files: auto_map code, the code itself, chat templates in tokenizer configs."""
from __future__ import annotations

import json

from mlguard import scan_tree
from mlguard.findings import Severity

SAFE_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


def found(root) -> list[tuple[str, str, int | None, Severity]]:
    return sorted((f.rule_id, f.path, f.location.line, f.severity) for f in scan_tree(root).findings)


def test_an_ordinary_repository_raises_nothing(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                                      "hidden_size": 8}, indent=2))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": SAFE_TEMPLATE, "bos_token": "<s>"},
                                                               indent=2))
    (tmp_path / "chat_template.jinja").write_text(SAFE_TEMPLATE)
    (tmp_path / "train.py").write_text("import os\nos.system('nvidia-smi')\n")   # not model code: not ours
    assert found(tmp_path) == []


def test_custom_and_remote_code(tmp_path):
    config = {"model_type": "custom", "auto_map": {
        "AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel",
        "AutoTokenizer": ["other-org/tokenizers--tokenization_y.YTokenizer", None]}}
    (tmp_path / "config.json").write_text(json.dumps(config, indent=2))
    (tmp_path / "modeling_x.py").write_text("import torch\n\nclass XModel:\n    def __init__(self):\n"
                                             "        import subprocess; subprocess.run(['id'])\n")
    (tmp_path / "configuration_x.py").write_text("class XConfig:\n    pass\n")
    assert found(tmp_path) == [
        ("hf-custom-code", "config.json", 3, Severity.MEDIUM),
        ("hf-custom-code", "config.json", 3, Severity.MEDIUM),
        ("hf-custom-code-risky-call", "modeling_x.py", 5, Severity.HIGH),
        ("hf-remote-code-reference", "config.json", 3, Severity.HIGH),
    ]


def test_templates_in_tokenizer_configs(tmp_path):
    bad = "{{ messages.__class__.__init__.__globals__['os'].popen('id').read() }}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "chat_template": [{"name": "default", "template": SAFE_TEMPLATE},
                                               {"name": "tool_use", "template": bad}]}, indent=2))
    (tmp_path / "chat_template.jinja").write_text("{% if x %}")
    assert found(tmp_path) == [("chat-template-injection", "tokenizer_config.json", 3, Severity.CRITICAL),
                               ("chat-template-unparsable", "chat_template.jinja", None, Severity.MEDIUM)]
