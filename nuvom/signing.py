"""Signed job payloads: with ``NUVOM_SIGNING_KEY`` set, producers put an HMAC-SHA256 in
front of each payload and workers refuse (quarantine, with the reason) any job whose
signature is missing or wrong.

A signed payload is ``SIGNED`` (a byte no serializer writes first), the 32-byte MAC,
then the payload as the serializer wrote it — the task name, its version (in the
origin), arguments and options, so none can be changed without the key.
``NUVOM_SIGNING_KEYS_OLD`` (comma-separated) lists keys still accepted when verifying,
so a key can be rotated without stranding the jobs already queued.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SIGNED = 0x53  # "S"; the serializers' first bytes are 0x01 (msgpack) and 0x02 (JSON)
MAC_BYTES = 32


class BadSignature(ValueError):
    """A payload whose signature is missing or does not verify with any accepted key."""


class Signer:
    """Signs with ``key``; verifies with ``key`` or any of ``old``."""

    def __init__(self, key: str | bytes, old: Sequence[str | bytes] = ()) -> None:
        self._key = _bytes(key)
        self._accepted = [self._key, *(_bytes(k) for k in old if k)]

    def sign(self, payload: bytes) -> bytes:
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return bytes((SIGNED,)) + mac + payload

    def verify(self, data: bytes) -> bytes:
        """The payload inside ``data``; ``BadSignature`` when it is unsigned or forged."""
        if not data or data[0] != SIGNED or len(data) <= 1 + MAC_BYTES:
            raise BadSignature("bad signature: the job is not signed (NUVOM_SIGNING_KEY is set)")
        mac, payload = data[1 : 1 + MAC_BYTES], data[1 + MAC_BYTES :]
        for key in self._accepted:
            if hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).digest()):
                return payload
        raise BadSignature(
            "bad signature: the payload does not match its HMAC for any accepted key"
        )


def unsigned(data: bytes) -> bytes:
    """A payload with its signature taken off unchecked (a process with no key set)."""
    return data[1 + MAC_BYTES :] if data and data[0] == SIGNED else data


def _bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key
