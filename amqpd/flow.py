"""Why a connection is not reading or not writing, in one place (cf. uvicorn's FlowControl).

Reading stops while any reason holds: a resource alarm (full disk, memory) blocked a publisher
(`blocked`), queues this publisher fills are backlogged (`backlog`, a count of queues waited
on), the client does not read what we write (`unsent`: bytes written since the transport
paused writing, above `UNSENT_LIMIT`), or frames of an earlier read still wait their turn
(passed to `update_reading`). `write_paused` mirrors the transport's pause_writing /
resume_writing. `update_reading` tells the transport only when the answer changes. A closing
connection reads whatever the reasons (`read_regardless`).
"""

from __future__ import annotations

from amqpd.transport import Transport

# Output a client has not taken, beyond the transport's own high-water mark, before we stop
# reading from it: everything we write (deliveries, basic.return, replies) is then bounded.
UNSENT_LIMIT = 4 << 20


class FlowControl:
    __slots__ = ("backlog", "blocked", "reading_paused", "unsent", "write_paused")

    def __init__(self) -> None:
        self.blocked = False  # a resource alarm (full disk, memory) blocks this publisher
        self.backlog = 0  # backlogged queues this publisher waits for
        self.write_paused = False  # the transport asked us to stop writing
        self.unsent = 0  # bytes written while write_paused
        self.reading_paused = False  # what we last told the transport

    def update_reading(self, transport: Transport, unprocessed: bool) -> None:
        paused = self.blocked or self.backlog > 0 or unprocessed or self.unsent > UNSENT_LIMIT
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
