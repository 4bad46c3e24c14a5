"""Pure encodings shared by `wire/` and `core/`; the bottom layer, importing nothing of amqpd.

`shortstr` is AMQP's length-prefixed short string (a message keeps its exchange and
routing key in that form, ready to splice into deliveries); `erlang_binary` renders bytes
the way RabbitMQ's reply texts show Erlang binaries (`<<"abc">>`, `<<0,50>>`), for the
error texts of both the frame reader and the headers exchange; `payload_snippet` quotes a bad
frame as RabbitMQ does (all of it up to 16 octets, else the first 16) and `loggable` bounds
the binaries in a reply text before it is logged.
"""

from __future__ import annotations

import re

_LENGTH_OCTETS = tuple(bytes((size,)) for size in range(256))


def shortstr(value: str | bytes) -> bytes:
    """Length-prefixed short string, as the wire wants it."""
    raw = value.encode() if isinstance(value, str) else value
    return _LENGTH_OCTETS[len(raw)] + raw


_ESCAPES = {
    0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t",
    0x0B: "\\v", 0x08: "\\b", 0x0C: "\\f", 0x1B: "\\e",
}  # fmt: skip


def erlang_binary(data: bytes) -> str:
    """A binary as RabbitMQ prints it with ~tp: <<"text">> if every byte is printable
    Latin-1 (the bytes then go out unchanged), else <<1,2,3>>."""
    if not data:
        return "<<>>"
    if all(32 <= c <= 126 or c >= 160 or c in _ESCAPES for c in data):
        parts = bytearray()
        for c in data:
            esc = _ESCAPES.get(c)
            parts += esc.encode() if esc is not None else bytes((c,))
        return '<<"' + parts.decode("utf-8", errors="replace") + '">>'
    return "<<" + ",".join(str(c) for c in data) + ">>"


SNIPPET_OCTETS = 16


def payload_snippet(payload: bytes) -> str:
    """`all octets = <<...>>` or `first 16 octets = <<...>>`, as RabbitMQ quotes a frame."""
    if len(payload) <= SNIPPET_OCTETS:
        return f"all octets = {erlang_binary(payload)}"
    return f"first {SNIPPET_OCTETS} octets = {erlang_binary(payload[:SNIPPET_OCTETS])}"


# A quoted binary, possibly cut short by the 255-byte limit of reply texts (then unclosed).
_BINARY = re.compile(r'<<("(?:[^"\\]|\\.)*"?|[0-9,]*)(>>|\.\.\.$|$)')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LOGGED_TEXT = 400  # characters of a reply text that reach the log


def loggable(text: str, redact: bool = False) -> str:
    """`text` for a log line: every quoted binary cut to its first 16 octets, or hidden if
    `redact` (before login a binary may hold the client's credentials); control characters
    escaped (client names cannot forge log lines); at most LOGGED_TEXT characters."""

    def shorten(match: re.Match[str]) -> str:
        inner, closing = match.group(1), match.group(2)
        if not inner and closing == ">>":
            return "<<>>"
        if redact:
            return "<<...>>"
        if inner.startswith('"'):
            chars = inner[1:-1] if closing == ">>" else inner[1:]
            if closing == ">>" and len(chars) <= SNIPPET_OCTETS:
                return match.group(0)
            return f'<<"{chars[:SNIPPET_OCTETS]}"...>>'
        octets = inner.split(",")
        if closing == ">>" and len(octets) <= SNIPPET_OCTETS:
            return match.group(0)
        return "<<" + ",".join(octets[:SNIPPET_OCTETS]) + ",...>>"

    text = _BINARY.sub(shorten, text)
    text = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    return text if len(text) <= LOGGED_TEXT else text[:LOGGED_TEXT] + "..."
