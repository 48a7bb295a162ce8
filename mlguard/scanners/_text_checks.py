"""What free text inside a model (metadata, doc strings, attribute strings) should not hold: shell or code,
script HTML, links, filesystem paths, IP addresses. Shared by the safetensors and ONNX scanners."""
from __future__ import annotations

import re

CODE = re.compile(r"(curl|wget)\s[^\n|]*\|\s*(ba|z)?sh\b|\brm\s+-rf\b|\b(powershell|cmd\.exe)\b|__import__|"
                  r"\bimport\s+(os|subprocess|socket)\b|\b(os\.system|subprocess\.|eval\(|exec\()|\bnc\s+-[el]|"
                  r"\b(bash|sh)\s+-c\b|/bin/(ba)?sh\b", re.I)
HTML = re.compile(r"<\s*(script|iframe|object|embed)\b|\bon(error|load)\s*=", re.I)
ACTIVE_URL = re.compile(r"\b(javascript|vbscript):|\bfile://|\bdata:(text/html|application/(x-)?javascript|"
                        r"image/svg)", re.I)
URL = re.compile(r"\b(javascript|vbscript|file|data|https?|ftp|smb|s3|gs)://?", re.I)
IP = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
PATH = re.compile(r"(^|[\s'\"=])(/(etc|root|home|Users|var|tmp)/|\.\./|[A-Za-z]:\\\\?|\\\\\\\\)")
TRAVERSAL = re.compile(r"(^|[/\\])\.\.([/\\]|$)")
ABSOLUTE = re.compile(r"^([/\\]|[A-Za-z]:)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
