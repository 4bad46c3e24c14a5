"""Why a connection is not reading or not writing, in one place (cf. uvicorn's FlowControl).

Reading stops while any reason holds: the disk alarm blocked a publisher (`blocked`), queues
this publisher fills are backlogged (`backlog`, a count of queues waited on), or frames of an
earlier read still wait their turn (passed to `update_reading`). `write_paused` mirrors the
transport's pause_writing / resume_writing. `update_reading` tells the transport only when the
answer changes. A closing connection reads whatever the reasons (`read_regardless`).
"""

from __future__ import annotations

from amqpd.transport import Transport


class FlowControl:
    __slots__ = ("backlog", "blocked", "reading_paused", "write_paused")

    def __init__(self) -> None:
        self.blocked = False  # a resource alarm (full disk) blocks this publisher
        self.backlog = 0  # backlogged queues this publisher waits for
        self.write_paused = False  # the transport asked us to stop writing
        self.reading_paused = False  # what we last told the transport

    def update_reading(self, transport: Transport, unprocessed: bool) -> None:
        paused = self.blocked or self.backlog > 0 or unprocessed
        if paused != self.reading_paused:
            self.reading_paused = paused
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def read_regardless(self, transport: Transport) -> None:
        """Resume reading now, reasons or not: a closing connection reads and discards."""
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
