"""What may be shown of a secret: a redacted snippet, and a keyed hash that tells secrets apart without them."""
from __future__ import annotations

_FINGERPRINT_KEY = b"ml-guard secret fingerprint v1"
"""Fixed, public key of :func:`secret_hash`: it keeps the hashes specific to ML Guard (no lookup in
generic hash tables), it does not make a weak password hard to guess."""


def redact(secret: str, prefix: int = 0) -> str:
    """``ghp_…a1B2 (len=40)``: the public prefix (4 to 6 characters) and the last four, never more than half
    of a short secret."""
    n = len(secret)
    head = min(6, max(4, prefix), n // 4)
    tail = min(4, n // 4)
    return f"{secret[:head]}…{secret[n - tail:] if tail else ''} (len={n})"


def secret_hash(secret: bytes) -> str:
    """HMAC-SHA256 of the secret under the tool's key, truncated to 64 bits: the same secret gives the same
    value in every file and run, and the value does not reveal the secret."""
    import hashlib  # noqa: PLC0415 - only when a secret is found (importing it loads OpenSSL: start-up)
    import hmac  # noqa: PLC0415

    return hmac.new(_FINGERPRINT_KEY, secret, hashlib.sha256).hexdigest()[:16]
