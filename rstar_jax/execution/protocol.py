"""Framing between the executor (parent) and its zygote processes: length-prefixed UTF-8 JSON messages.

A message is a 4-byte big-endian length followed by that many bytes of JSON. Lone surrogates in program
text survive the round trip (JSON escapes them). Messages larger than `MAX_MESSAGE_BYTES` are refused.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

MAX_MESSAGE_BYTES = 1 << 28
_HEADER = struct.Struct(">I")


class ChannelClosed(EOFError):
    """The other end of a zygote pipe closed (the process exited or was killed)."""


def encode(message: dict[str, Any]) -> bytes:
    """One framed message: header + JSON body."""
    body = json.dumps(message, ensure_ascii=True).encode("ascii")
    if len(body) > MAX_MESSAGE_BYTES:
        raise ValueError(f"rstar_jax.execution.protocol: message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return _HEADER.pack(len(body)) + body


def write_message(fd: int, message: dict[str, Any]) -> None:
    """Write one framed message to `fd` (blocking, handles short writes)."""
    view = memoryview(encode(message))
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError as exc:
            raise ChannelClosed(f"rstar_jax.execution.protocol: pipe fd {fd} closed while writing") from exc
        view = view[written:]


def _read_exact(fd: int, n: int) -> bytes:
    chunks: list[bytes] = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise ChannelClosed(f"rstar_jax.execution.protocol: pipe fd {fd} closed while reading")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> dict[str, Any]:
    """Read one framed message from `fd` (blocking). Raises ChannelClosed at end of file."""
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"rstar_jax.execution.protocol: incoming message of {size} bytes on fd {fd} is too large")
    message = json.loads(_read_exact(fd, size))
    if not isinstance(message, dict):
        raise ValueError(f"rstar_jax.execution.protocol: message on fd {fd} is not a JSON object")
    return message
