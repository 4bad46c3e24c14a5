"""Type stubs for the optional compiled accelerator (amqpd/_speedups.c)."""

from collections.abc import Callable
from typing import Any

_Bytes = bytes | bytearray | memoryview

class FrameReader:
    frame_max: int
    def __init__(self, frame_max: int = 0) -> None: ...
    def feed(self, data: _Bytes) -> list[tuple[int, int, bytes]]: ...
    @property
    def buffered(self) -> int: ...

class MethodDecoder:
    def __init__(
        self,
        fallback: Callable[[bytes], tuple[int, Any]],
        syntax_error: Callable[[int, bytes], BaseException],
    ) -> None: ...
    def __call__(self, payload: bytes) -> tuple[int, Any]: ...

def crc32(data: _Bytes, start: int = 0) -> int: ...
def peek_header(
    info_type: Callable[..., Any], error_type: type[BaseException], payload: _Bytes
) -> Any: ...
def encode_publish(
    message_id: int,
    queues: dict[str, bool],
    exchange: str,
    routing_key: str,
    header: bytes,
    body: bytes,
    strings: dict[str, bytes] | None = None,
) -> list[bytes]: ...
def encode_ref(rtype: int, queue: _Bytes, message_id: int) -> bytes: ...
def deliver_small(
    prefix: bytes,
    tag: int,
    suffix: bytes,
    channel: int,
    header: bytes,
    body: bytes,
    frame_max: int,
) -> bytes | None: ...
def merge_publishes(
    item_type: int, acks_type: int, frames: list[tuple[int, int, Any]]
) -> list[Any]: ...
def join_delivery(
    fallback: Callable[[bytes, int, bool, bytes, bytes], bytes],
    prefix: bytes,
    tag: int,
    redelivered: bool,
    suffix: bytes,
    content: bytes,
) -> bytes: ...
