"""Chat templates (Jinja2 in GGUF metadata and Hugging Face tokenizer configs): do they reach Python internals?

Transformers and llama-cpp-python render them with a sandboxed Jinja2, whose escapes (CVE-2024-34359 and its
kind) go through dunder attributes and the globals of functions the template can name. With Jinja2 installed
the template is parsed (never rendered) and every attribute and item access is checked; without it, or when
it does not parse, a conservative lexical check runs on the text.
"""
from __future__ import annotations

import re
from typing import Iterator

from .interface import ScanContext

MAX_TEMPLATE = 1 << 20
"""Characters of a template analysed."""
DANGEROUS_NAMES = frozenset({
    "__globals__", "__subclasses__", "__builtins__", "__import__", "__class__", "__mro__", "__base__",
    "__bases__", "__init__", "__dict__", "__code__", "__func__", "__self__", "__getattribute__", "__reduce__",
    "__reduce_ex__", "__loader__", "__spec__", "func_globals", "f_globals", "gi_frame", "cr_frame", "tb_frame",
    "popen", "system", "subprocess", "import_module", "eval", "exec", "compile", "getattr", "os", "sys",
    "builtins", "open", "mro",
})
_LEXICAL = re.compile(r"__\w+__|\b(popen|subprocess|import_module|eval|exec|func_globals|f_globals)\b")


def findings(template: str) -> tuple[list[str], str | None]:
    """The dangerous names the template reaches (sorted), and the parse error when it does not parse."""
    text = template[:MAX_TEMPLATE]
    try:
        import jinja2
        from jinja2 import nodes
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        return _lexical(text), None
    try:
        ast = ImmutableSandboxedEnvironment().parse(text)
    except (jinja2.TemplateSyntaxError, RecursionError, ValueError) as exc:
        return _lexical(text), f"{type(exc).__name__}: {exc}"
    reached = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Filter)):
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem):
            name = _const(node.arg)
        elif isinstance(node, nodes.Filter):  # x|attr("__class__"); a computed name is as bad as a dunder
            if node.name != "attr" or not node.args:
                continue
            name = _const(node.args[0]) or "attr(<computed>)"
        else:
            name = node.name
        if name == "attr(<computed>)" or name and (name in DANGEROUS_NAMES or (name.startswith("__")
                                                                           and name.endswith("__"))):
            if isinstance(node, nodes.Name) and not name.startswith("__"):
                continue  # a variable called "system" or "os" is just a variable
            reached.add(name)
    return sorted(reached), None


def _const(node) -> str | None:
    from jinja2 import nodes
    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None


def _lexical(text: str) -> list[str]:
    return sorted({m.group(0) for m in _LEXICAL.finditer(text)})


def template_findings(ctx: ScanContext, where, key: str, template, offset: int | None = None,
                      line: int | None = None) -> Iterator:
    """Findings for one chat template (GGUF metadata, Hugging Face tokenizer configs and ``.jinja`` files)."""
    if not isinstance(template, str):
        return
    reached, error = findings(template)
    preview = template[:120] + ("…" if len(template) > 120 else "")
    if reached:
        yield ctx.finding(where, "chat-template-injection",
                          f"{key} reaches Python internals ({', '.join(reached)}): a sandbox escape when rendered",
                          offset=offset, line=line, snippet=preview, evidence={"key": key, "reached": reached},
                          key=key)
    elif error:
        yield ctx.finding(where, "chat-template-unparsable", f"{key} is not a valid Jinja2 template ({error})",
                          offset=offset, line=line, snippet=preview, evidence={"key": key}, key=key)
