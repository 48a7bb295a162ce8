"""Structure checks named by ``validator:`` in ``rules/secrets.yaml``, one function per name.

A validator takes the secret and the whole regex match (both str) and returns a :class:`Verdict`, or None
when the match is not that kind of secret after all (it is then dropped). A validator never raises on its
input and never puts the secret, or any part of it, in its note or evidence.

Validators registered as *structural* decode and check the secret's inner structure (a key's DER, a
macaroon, a JWT's JSON): that check decides alone, the placeholder heuristics (``example``, ``xxxxx``,
...) are not applied, as random base64 bodies thousands of characters long would trip them.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import string
import struct
import zlib
from typing import Any, Callable, Mapping

from ..findings import Severity
from ..record import Record, field


class Verdict(Record):
    """What a validator concluded about a secret it accepts."""

    severity: Severity | None = None
    """Replaces the rule's default severity (e.g. LOW for a failed checksum); None keeps it."""
    note: str = ""
    """Added to the finding's message."""
    evidence: Mapping[str, Any] = field(factory=dict)
    """Added to the finding's evidence."""


VALID = Verdict()
Validator = Callable[[str, str], "Verdict | None"]
VALIDATORS: dict[str, Validator] = {}
"""Every validator, by name."""
STRUCTURAL: set[str] = set()
"""Names of the validators whose check replaces the placeholder heuristics."""


def _register(structural: bool = False) -> Callable[[Validator], Validator]:
    def register(fn: Validator) -> Validator:
        VALIDATORS[fn.__name__] = fn
        if structural:
            STRUCTURAL.add(fn.__name__)
        return fn
    return register


# --- helpers -------------------------------------------------------------------------------------------

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_DOTTED = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)+")
_COMMON_PASSWORDS = frozenset({
    "password", "passwd", "pass", "pwd", "secret", "token", "apikey", "api_key", "changeme", "changeit",
    "admin", "root", "test", "testing", "guest", "user", "username", "none", "null", "nil", "true", "false",
    "required", "optional", "string", "str", "bytes", "default", "empty", "todo", "tbd", "hunter2",
})
_LOCAL_HOSTS = frozenset({"localhost", "0.0.0.0", "::1", "[::1]", "host.docker.internal"})


def _b64(text: str, urlsafe: bool = False) -> bytes | None:
    """Base64 (or base64url) with or without padding; None if it does not decode."""
    text = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, altchars=b"-_" if urlsafe else None, validate=True)
    except (ValueError, binascii.Error):
        return None


def _der_sequence(der: bytes, first: int) -> bool:
    """A DER SEQUENCE filling ``der`` exactly, whose first element has tag ``first``."""
    if len(der) < 4 or der[0] != 0x30:
        return False
    size, pos = der[1], 2
    if size & 0x80:
        count = size & 0x7F
        if not 1 <= count <= 3:
            return False
        size, pos = int.from_bytes(der[2:2 + count], "big"), 2 + count
    return pos + size == len(der) and der[pos] == first


def _pem_parts(pem: str) -> tuple[dict[str, str], str]:
    """The RFC 1421 headers (``Proc-Type``...) and the base64 body between the BEGIN and END lines."""
    lines = [line.strip() for line in pem.replace("\\n", "\n").splitlines()[1:-1]]
    headers = dict(line.split(":", 1) for line in lines if ":" in line)
    return {k.strip(): v.strip() for k, v in headers.items()}, "".join(line for line in lines if ":" not in line)


def _ssh_string(data: bytes, pos: int) -> tuple[bytes | None, int]:
    """An SSH wire-format string (uint32 length + bytes) at ``pos``: (value or None, position after)."""
    if pos + 4 > len(data):
        return None, pos
    (size,) = struct.unpack_from(">I", data, pos)
    end = pos + 4 + size
    return (data[pos + 4:end], end) if end <= len(data) else (None, pos)


def _printable(text: bytes, limit: int = 100) -> str:
    """Public text from a decoded structure (a location, a cipher name), made safe to display."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit].decode("ascii", "replace"))


def _looks_random(value: str) -> bool:
    """Letters and digits, and not code: not a (dotted) identifier, a path or a URL."""
    return (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
            and not _DOTTED.fullmatch(value) and not value.startswith(("/", "./", "../", "~/"))
            and "://" not in value)


# --- checksums and markers -----------------------------------------------------------------------------

@_register()
def base62_crc32(secret: str, match: str) -> Verdict | None:
    """GitHub classic and npm tokens: 4-character prefix, 30 random base62 characters, then the CRC32 of
    those 30 in base62 (6 characters, zero-padded). A failing checksum lowers the finding to low."""
    body = secret[4:]
    crc = zlib.crc32(body[:30].encode("ascii", "replace"))
    digits = ""
    while crc:
        crc, r = divmod(crc, 62)
        digits = _BASE62[r] + digits
    if len(body) == 36 and body[30:] == digits.rjust(6, "0"):
        return Verdict(evidence={"checksum": "valid"})
    return Verdict(Severity.LOW, "its CRC32 checksum does not match, so it is probably made up or mistyped",
                   {"checksum": "invalid"})


@_register()
def openai_marker(secret: str, match: str) -> Verdict | None:
    """OpenAI keys carry ``T3BlbkFJ`` (base64 of "OpenAI"); a key without it is kept at low severity."""
    if "T3BlbkFJ" in secret:
        return VALID
    return Verdict(Severity.LOW, "it lacks the T3BlbkFJ marker every OpenAI key carries")


# --- shapes --------------------------------------------------------------------------------------------

@_register()
def mixed_case(secret: str, match: str) -> Verdict | None:
    """Random tokens mix upper- and lower-case letters; identifiers (``hf_hub_download…``) do not."""
    return VALID if any(c.isupper() for c in secret) and any(c.islower() for c in secret) else None


@_register()
def aws_secret(secret: str, match: str) -> Verdict | None:
    """An AWS secret key is base64 of random bytes: upper, lower and digits (a hex SHA-1 is not)."""
    has = [any(test(c) for c in secret) for test in (str.isupper, str.islower, str.isdigit)]
    return VALID if all(has) else None


@_register()
def random_looking(secret: str, match: str) -> Verdict | None:
    """A generic value must look random: letters and digits, not an identifier, path or URL."""
    return VALID if _looks_random(secret) else None


@_register()
def password_value(secret: str, match: str) -> Verdict | None:
    """A password in a configuration file (.netrc, .pypirc): not a common placeholder word."""
    return None if secret.lower() in _COMMON_PASSWORDS else VALID


@_register()
def password_literal(secret: str, match: str) -> Verdict | None:
    """A password assigned in code or configuration: not a placeholder word and, unless quoted, not code (an
    attribute access, or a variable name without digits)."""
    quoted = match[-len(secret) - 1:-len(secret)] in ("'", '"')
    if not quoted and (_DOTTED.fullmatch(secret) or (_IDENTIFIER.fullmatch(secret)
                                                     and not any(c.isdigit() for c in secret))):
        return None
    return password_value(secret, match)


@_register()
def url_credentials(secret: str, match: str) -> Verdict | None:
    """``scheme://user:password@host``: placeholder passwords and documentation hosts are dropped, local
    hosts lowered to low."""
    from urllib.parse import unquote  # noqa: PLC0415 - urllib (and ipaddress) only when a URL is met
    password = unquote(secret)
    if password.lower() in _COMMON_PASSWORDS or password.startswith(("$", "%")):
        return None
    host = match.rsplit("@", 1)[1].lower()
    scheme = re.search(r"([A-Za-z][A-Za-z0-9+.\-]*)://", match)
    evidence = {"scheme": scheme.group(1).lower() if scheme else "", "host": host}
    if re.search(r"(?:^|\.)example(?:\.(?:com|org|net))?$", host):
        return None
    if host in _LOCAL_HOSTS or host.startswith("127.") or host.endswith((".local", ".localhost")):
        return Verdict(Severity.LOW, "for a local host", evidence)
    return Verdict(evidence=evidence)


# --- structures ----------------------------------------------------------------------------------------

@_register(structural=True)
def pypi_macaroon(secret: str, match: str) -> Verdict | None:
    """``pypi-`` + base64url of a version-2 macaroon whose location is pypi.org (test.pypi.org: medium;
    anything else, or no macaroon at all: low)."""
    raw = _b64(secret[5:], urlsafe=True)
    if raw is None or len(raw) < 3 or raw[0] != 2 or raw[1] != 1 or raw[2] >= 0x80 or len(raw) < 3 + raw[2]:
        return Verdict(Severity.LOW, "it does not decode to a PyPI macaroon", {"macaroon": "invalid"})
    location = _printable(raw[3:3 + raw[2]])
    evidence = {"location": location}
    if location == "pypi.org":
        return Verdict(evidence=evidence)
    if location == "test.pypi.org":
        return Verdict(Severity.MEDIUM, "for test.pypi.org", evidence)
    return Verdict(Severity.LOW, "its macaroon is not for pypi.org", evidence)


@_register(structural=True)
def jwt(secret: str, match: str) -> Verdict | None:
    """Header and payload must decode to JSON objects, the header naming an ``alg``; ``alg: none`` is noted.
    The jwt.io documentation token is dropped."""
    parts = secret.split(".")
    decoded = [_b64(part, urlsafe=True) for part in parts[:2]]
    try:
        header, payload = (json.loads(d) if d is not None else None for d in decoded)
    except ValueError:
        return None
    if not (isinstance(header, dict) and isinstance(payload, dict) and isinstance(header.get("alg"), str)):
        return None
    if payload.get("sub") == "1234567890" and payload.get("name") == "John Doe":
        return None
    alg = header["alg"][:20]
    evidence: dict[str, Any] = {"alg": alg, "claims": sorted(str(k)[:40] for k in payload)[:20]}
    if isinstance(payload.get("iss"), str):
        evidence["issuer"] = payload["iss"][:100]
    if isinstance(payload.get("exp"), (int, float)) and not isinstance(payload["exp"], bool):
        evidence["expires"] = int(payload["exp"])
    if alg.lower() == "none":
        evidence["unsigned"] = True
        return Verdict(note="unsigned (alg: none): a service that accepts it accepts forged tokens",
                       evidence=evidence)
    return Verdict(evidence=evidence)


@_register(structural=True)
def pem_private_key(secret: str, match: str) -> Verdict | None:
    """The PEM body must decode to a DER SEQUENCE (its first element an INTEGER version, or for PKCS#8
    ``ENCRYPTED`` an AlgorithmIdentifier); encrypted keys are lowered to medium."""
    kind = secret.split("-----", 2)[1][len("BEGIN "):-len("PRIVATE KEY")].strip() or "PKCS8"
    headers, body = _pem_parts(secret)
    der = _b64(body)
    if not der:
        return None
    legacy_encrypted = headers.get("Proc-Type", "").replace(" ", "") == "4,ENCRYPTED"
    if legacy_encrypted:
        sane = len(der) % 8 == 0           # CBC ciphertext of the DER: only its size can be checked
    else:
        sane = _der_sequence(der, 0x30 if kind == "ENCRYPTED" else 0x02)
    if not sane:
        return None
    evidence = {"key_type": kind, "encrypted": legacy_encrypted or kind == "ENCRYPTED"}
    if evidence["encrypted"]:
        return Verdict(Severity.MEDIUM, "encrypted with a passphrase", evidence)
    return Verdict(evidence=evidence)


@_register(structural=True)
def gcp_service_account(secret: str, match: str) -> Verdict | None:
    """The key must pass :func:`pem_private_key`; the service account's e-mail goes into the evidence."""
    verdict = pem_private_key(secret, match)
    email = re.search(r'"client_email"\s*:\s*"([^"]{1,200})"', match)
    if verdict is None or email is None:
        return verdict
    return Verdict(verdict.severity, verdict.note, {**verdict.evidence, "client_email": email.group(1)})


@_register(structural=True)
def openssh_private_key(secret: str, match: str) -> Verdict | None:
    """``openssh-key-v1``: magic, cipher, KDF, key count, public key, private section; a cipher other than
    ``none`` (a passphrase) lowers the finding to medium."""
    raw = _b64(_pem_parts(secret)[1])
    magic = b"openssh-key-v1\0"
    if raw is None or not raw.startswith(magic):
        return None
    cipher, pos = _ssh_string(raw, len(magic))
    kdf, pos = _ssh_string(raw, pos)
    _, pos = _ssh_string(raw, pos)                         # KDF options
    if cipher is None or kdf is None or pos + 4 > len(raw) or struct.unpack_from(">I", raw, pos)[0] != 1:
        return None
    public, pos = _ssh_string(raw, pos + 4)
    private, _ = _ssh_string(raw, pos)
    key_type = _ssh_string(public, 0)[0] if public else None
    if key_type is None or not private:
        return None
    evidence = {"key_type": _printable(key_type), "cipher": _printable(cipher)}
    if cipher != b"none":
        return Verdict(Severity.MEDIUM, "encrypted with a passphrase", {**evidence, "encrypted": True})
    if private[:4] != private[4:8]:                        # the two check integers of a clear key agree
        return None
    return Verdict(evidence={**evidence, "encrypted": False})


@_register(structural=True)
def pgp_private_key(secret: str, match: str) -> Verdict | None:
    """The armored data must decode and start with a secret-key packet (tag 5, or 7 for a subkey)."""
    lines = secret.splitlines()[1:-1]
    blank = next((i for i, line in enumerate(lines) if not line.strip()), -1)   # armor headers end here
    body = "".join(line.strip() for line in lines[blank + 1:] if not line.startswith("="))
    raw = _b64(body)
    if not raw or not raw[0] & 0x80:
        return None
    tag = raw[0] & 0x3F if raw[0] & 0x40 else (raw[0] >> 2) & 0x0F
    return Verdict(evidence={"packet": "secret-key" if tag == 5 else "secret-subkey"}) if tag in (5, 7) else None


@_register(structural=True)
def base64_private_key(secret: str, match: str) -> Verdict | None:
    """Base64 of a PEM private key (kubeconfig ``client-key-data``): the decoded key must pass
    :func:`pem_private_key` or :func:`openssh_private_key`."""
    raw = _b64(secret)
    pem = raw.decode("ascii", "replace").strip() if raw else ""
    if not (pem.startswith("-----BEGIN ") and pem.endswith("PRIVATE KEY-----")):
        return None
    check = openssh_private_key if "OPENSSH PRIVATE KEY" in pem else pem_private_key
    return check(pem, pem)


@_register(structural=True)
def docker_auth(secret: str, match: str) -> Verdict | None:
    """A Docker ``auth`` value is base64 of ``user:password``."""
    raw = _b64(secret)
    text = raw.decode("utf-8", "replace") if raw else ""
    user, _, password = text.partition(":")
    if not user or not password or not text.isprintable() or password.lower() in _COMMON_PASSWORDS:
        return None
    return VALID
