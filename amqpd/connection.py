"""One client connection's protocol state, driven by bytes in and bytes out.

`Connection` holds the lifecycle (`connection_state.State`, moved only along its transition
table), runs the `Handshake` and keeps its `Negotiated` result, multiplexes channels, sends
and checks heartbeats, coalesces everything written in a tick into one write, applies
back-pressure (`FlowControl`: queue backlogs, resource alarms, output the client does not
read: past a limit it is not read from either), and
turns `ChannelError` / `ConnectionError_` into channel.close / connection.close. On loss of
the socket every channel releases what it held and exclusive queues are deleted.

It never touches asyncio itself: it is given a `Transport` and a `Clock` (transport.py).
`adapter.AmqpProtocol` is the asyncio.Protocol that forwards socket events here; tests feed
bytes to `data_received` and read what reached their fake transport.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from pamqp import base, commands

from amqpd.accounts import Accounts
from amqpd.auth import Access
from amqpd.channel import Channel
from amqpd.config import Config
from amqpd.connection_state import (
    AWAIT_HEADER,
    AWAIT_OPEN,
    AWAIT_START_OK,
    AWAIT_TUNE_OK,
    CLOSED,
    CLOSING,
    HANDSHAKING,
    OPEN,
    State,
    advance,
)
from amqpd.core.errors import (
    CHANNEL_ERROR,
    COMMAND_INVALID,
    CONNECTION_FORCED,
    FRAME_ERROR,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    UNEXPECTED_FRAME,
    AMQPError,
    ChannelError,
    ConnectionError_,
)
from amqpd.core.queue import Queue
from amqpd.core.vhost import VHost
from amqpd.encoding import erlang_binary, loggable, payload_snippet
from amqpd.flow import UNSENT_LIMIT, FlowControl
from amqpd.handshake import (
    BadProtocolHeader,
    Handshake,
    HandshakeFailed,
    LoginRefused,
    Negotiated,
)
from amqpd.login_guard import LoginGuard
from amqpd.scheduler import TickScheduler
from amqpd.tls import certificate_user
from amqpd.transport import Clock, Timer, Transport
from amqpd.wire.frames import (
    FRAME_ACKS,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_PUBLISH,
    HEARTBEAT_FRAME,
    PRE_TUNE_FRAME_MAX,
    PROTOCOL_HEADER,
    FrameError,
    FrameReader,
    ack_payloads,
    merge_publishes,
)
from amqpd.wire.methods import (
    MethodSyntaxError,
    UnknownMethodError,
    decode_method,
    encode_channel_open_ok,
    encode_method,
)

log = logging.getLogger("amqpd.connection")

# Seconds a closing connection waits for connection.close-ok (after sending connection.close)
# or for the client to close its side (after sending close-ok). RabbitMQ waits up to the
# heartbeat interval or 30 s; a few seconds is enough for any live client.
CLOSE_OK_TIMEOUT = 3.0
# Deliveries stop for the rest of a tick once this much output waits for the flush.
OUTPUT_HIGH_WATER = 1 << 20
# Frames handled per event-loop turn before other connections get theirs; a publish merged
# with its content (FRAME_PUBLISH) counts as one.
FRAMES_PER_TURN = 256
CHANNEL_OPEN = commands.Channel.Open.index
CHANNEL_CLOSE = commands.Channel.Close.index
CHANNEL_CLOSE_OK = commands.Channel.CloseOk.index
CONNECTION_CLOSE = commands.Connection.Close.index
CONNECTION_CLOSE_OK = commands.Connection.CloseOk.index
CONNECTION_UPDATE_SECRET = commands.Connection.UpdateSecret.index
BASIC_PUBLISH = commands.Basic.Publish.index
BASIC_ACK = commands.Basic.Ack.index

# The one client method each handshake state accepts.
_EXPECTED = {
    AWAIT_START_OK: commands.Connection.StartOk.index,
    AWAIT_TUNE_OK: commands.Connection.TuneOk.index,
    AWAIT_OPEN: commands.Connection.Open.index,
}


class BrokerView(Protocol):
    """What a connection needs from the broker it belongs to (broker.Broker)."""

    config: Config
    vhosts: dict[str, VHost]
    scheduler: TickScheduler
    connections: set[Connection]
    blocked_reason: str  # why resource alarms block publishers now, "" if they do not
    logins: LoginGuard  # failed logins per peer address
    accounts: Accounts  # users, vhosts and permissions


class Connection:
    def __init__(self, broker: BrokerView, clock: Clock) -> None:
        self.broker = broker
        config = broker.config
        self.config = config
        self._clock = clock
        self.state: State = AWAIT_HEADER  # moved only by _enter, along TRANSITIONS
        self.transport: Transport | None = None
        self.peer = "?"
        self.connected_at = 0.0  # wall-clock time of accept (the management API shows it)
        self.recv_oct = 0  # bytes received and sent, for operators
        self.send_oct = 0
        self.handshake = Handshake(config, broker.vhosts, broker.accounts, logins=broker.logins)
        self.negotiated: Negotiated | None = None  # set by connection.open
        self.flow = FlowControl()
        self.channels: dict[int, Channel] = {}
        self.reader = FrameReader(PRE_TUNE_FRAME_MAX)  # tune-ok raises it to frame_max
        # What channels read (ChannelHost), copied from `negotiated` once open.
        self.user = ""
        self.vhost: VHost = None  # type: ignore[assignment]  # set by connection.open
        self.access: Access = None  # type: ignore[assignment]
        self.frame_max = config.frame_max
        self.channel_max = config.channel_max
        self.heartbeat = 0
        self.cancel_notify = False
        self.blocked_notify = False  # the client understands connection.blocked
        self.max_message_size = config.max_message_size
        self.writable = True  # deliveries may be written this tick
        # Published since the last resource alarm began (or ever): False means the next
        # publish calls became_publisher, which blocks the connection if an alarm is on.
        self.publisher = False
        self._unprocessed: list[tuple[int, int, bytes]] = []  # frames left for later turns
        self._more_scheduled = False  # a _process_more call is pending
        self._out: list[bytes] = []
        self._out_size = 0  # bytes in _out
        self._flush_requested = False
        self._confirm_channels: set[Channel] = set()
        self._last_received = 0.0
        self._last_sent = 0.0
        self._timer: Timer | None = None

    def _enter(self, state: State) -> None:
        self.state = advance(self.state, state)

    # -- transport events (forwarded by adapter.AmqpProtocol) -------------------------

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.handshake.peer = self.peer
        self.handshake.peer_host = peer[0] if peer else ""
        if transport.get_extra_info("sslcontext") is not None:
            self.handshake.certificate_user = certificate_user(transport.get_extra_info("peercert"))
        self.connected_at = time.time()
        log.info("accepting AMQP connection from %s", self.peer)
        self.broker.connections.add(self)
        self._timer = self._clock.call_later(self.config.handshake_timeout, self._handshake_timeout)

    def data_received(self, data: bytes) -> None:
        self._last_received = self._clock.time()
        self.recv_oct += len(data)
        state = self.state
        if state is not OPEN:
            if state is AWAIT_HEADER:
                data = self._read_protocol_header(data)
                if not data:
                    return
            elif state is CLOSED:
                return
        try:
            frames = merge_publishes(self.reader.feed(data))
        except FrameError as error:
            self._close_connection(FRAME_ERROR, error.text, 0)
            return
        if self._unprocessed:  # closing (read regardless), else reading is paused
            self._unprocessed += frames
            self._schedule_more()  # frames held by flow control go on once closing
        else:
            self._process(frames)

    def _read_protocol_header(self, data: bytes) -> bytes:
        """What follows the protocol header; b"" until it is complete or when it is wrong."""
        try:
            rest = self.handshake.read_header(data)
        except BadProtocolHeader:
            if self.transport is not None:
                self.transport.write(PROTOCOL_HEADER)
            self._shutdown_transport()
            return b""
        if rest is None:
            return b""
        self._enter(AWAIT_START_OK)
        self._send_method(0, self.handshake.start())
        return rest

    def _process(self, frames: list[tuple[int, int, bytes]]) -> None:
        """Handle frames, at most FRAMES_PER_TURN before yielding to the event loop.

        One read can hold thousands of publishes; handling them all at once would keep
        every other connection (consumers' acks among them) waiting. The rest waits, with
        reading paused, for the next loop iteration, or, while flow control holds this
        publisher (`throttle`), until the backlog clears: a read's worth of publishes
        beyond the threshold would otherwise still reach the queue."""
        if len(frames) > FRAMES_PER_TURN:
            self._unprocessed = frames[FRAMES_PER_TURN:]
            frames = frames[:FRAMES_PER_TURN]
            self._schedule_more()
        else:
            self._unprocessed = []
        self._update_reading()
        self._handle_frames(frames)

    def _schedule_more(self) -> None:
        if not self._more_scheduled:
            self._more_scheduled = True
            self._clock.call_soon(self._process_more)

    def _handle_frames(self, frames: list[tuple[int, int, Any]]) -> None:
        for frame_type, number, payload in frames:
            if self.state is CLOSED:
                return
            try:
                if frame_type == FRAME_PUBLISH:
                    if not self._publish(number, payload):  # take the frames one by one
                        method, header, body = payload
                        self._handle_frames(
                            [(FRAME_METHOD, number, method), (FRAME_HEADER, number, header)]
                            + ([(FRAME_BODY, number, body)] if body else [])
                        )
                elif frame_type == FRAME_ACKS:
                    if not self._acks(number, payload):  # take the frames one by one
                        frames_ = [(FRAME_METHOD, number, ack) for ack in ack_payloads(payload)]
                        self._handle_frames(frames_)
                else:
                    self._on_frame(frame_type, number, payload)
            except ConnectionError_ as error:
                self._close_connection(error.code, error.text, error.index)
            except LoginRefused as refused:
                self._refuse_login(refused)
            except HandshakeFailed as failure:
                log.info("handshake with %s failed: %s", self.peer, loggable(str(failure), True))
                self._shutdown_transport()
            except Exception:
                log.exception("internal error on connection %s", self.peer)
                self._close_connection(INTERNAL_ERROR, "INTERNAL_ERROR", 0)

    def _publish(self, number: int, parts: tuple[bytes, bytes, bytes]) -> bool:
        """A publish and its content merged by the reader, in one step when its channel is
        in the plain state; False, having done nothing, for the frame-by-frame path."""
        channel = self._plain_channel(number)
        if channel is None:
            return False
        try:
            return channel.publish_whole(parts)
        except ChannelError as error:  # as the body frame's handling in _on_frame
            self._close_channel(channel, error, BASIC_PUBLISH)
            return True

    def _acks(self, number: int, tags: list[int]) -> bool:
        """A run of basic.acks (multiple=false) on one channel merged by the reader, in one
        step when its channel is in the plain state; False, having done nothing, for the
        frame-by-frame path. An unknown tag closes the channel after the acks before it, as
        the frames one by one would."""
        channel = self._plain_channel(number)
        if channel is None:
            return False
        try:
            channel.ack_run(tags)
        except ChannelError as error:
            self._close_channel(channel, error, BASIC_ACK)
        return True

    def _plain_channel(self, number: int) -> Channel | None:
        """Channel `number` if a merged item may take its one-step path there: open, not
        closing, no content half-assembled; None for the frame-by-frame path."""
        channel = self.channels.get(number)
        if channel is None or channel.closing or self.state is not OPEN:
            return None
        return None if channel.content.expecting else channel

    def _process_more(self) -> None:
        self._more_scheduled = False
        if not self._unprocessed or self.state is CLOSED:
            return
        if self.flow.backlog and self.state is OPEN:
            return  # throttled: _release_flow picks the rest up
        self._process(self._unprocessed)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is OPEN:
            self._log_closing(f"connection lost ({exc})" if exc else "the client went away")
        elif self.negotiated is None:
            log.debug("connection from %s closed before it was opened", self.peer)
        self._enter(CLOSED)
        if self._timer is not None:
            self._timer.cancel()
        self._release_all()
        self.broker.connections.discard(self)

    def pause_writing(self) -> None:
        self.flow.write_paused = True
        self.writable = False

    def resume_writing(self) -> None:
        flow = self.flow
        flow.write_paused = False
        if flow.unsent:
            flow.unsent = 0
            self._update_reading()
        self._writable_again()

    def _writable_again(self) -> None:
        if self._out_size < OUTPUT_HIGH_WATER and not self.flow.write_paused and not self.writable:
            self.writable = True
            for channel in self.channels.values():
                channel.kick_consumers()

    # -- output ---------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= OUTPUT_HIGH_WATER:
            self.writable = False  # enough for this tick: deliver more after the flush
        if not self._flush_requested:
            self._flush_requested = True
            self.broker.scheduler.flush(self)

    def send_many(self, pieces: list[bytes], size: int | None = None) -> None:
        """Queue frames for this tick's write; `size`, if the caller knows it, saves a sum."""
        self._out += pieces
        self._out_size += sum(map(len, pieces)) if size is None else size
        if self._out_size >= OUTPUT_HIGH_WATER:
            self.writable = False  # enough for this tick: deliver more after the flush
        if not self._flush_requested:
            self._flush_requested = True
            self.broker.scheduler.flush(self)

    def request_flush(self, channel: Channel) -> None:
        self._confirm_channels.add(channel)
        if not self._flush_requested:
            self._flush_requested = True
            self.broker.scheduler.flush(self)

    def became_publisher(self) -> None:
        self.publisher = True
        if self.broker.blocked_reason:
            self.set_blocked(True, self.broker.blocked_reason)

    def alarms_changed(self, reason: str) -> None:
        """Resource alarms changed; `reason` is "" once none is on. As in RabbitMQ, an alarm
        blocks a connection at its next publish, not before: one that only consumes, or that
        published earlier and is idle now, goes on (and its client hears nothing)."""
        if not reason:
            self.set_blocked(False)
        elif not self.flow.blocked:
            self.publisher = False  # checked again at its next publish

    def throttle(self, queues: list[Queue]) -> None:
        """Flow control: stop reading from this publisher, and handling frames it sent
        already, until those queues' backlogs clear (the turn in progress ends first). A
        connection that also consumes is never paused: it must be able to ack."""
        if self.transport is None or any(channel.consumers for channel in self.channels.values()):
            return
        flow = self.flow
        for queue in queues:
            if self._release_flow not in queue.drain_waiters:
                queue.drain_waiters.append(self._release_flow)
                flow.backlog += 1
        self._update_reading()

    def _release_flow(self, queue: Queue) -> None:
        flow = self.flow
        flow.backlog -= 1
        if not flow.backlog and self._unprocessed:
            self._schedule_more()  # the frames held back while throttled; reading follows
        self._update_reading()

    def _update_reading(self) -> None:
        """Read while no full disk, queue backlog or unprocessed frames say otherwise."""
        if self.transport is None or self.state is CLOSED or self.state is CLOSING:
            return
        self.flow.update_reading(self.transport, bool(self._unprocessed))

    def set_blocked(self, blocked: bool, reason: str = "low on disk") -> None:
        """Stop (or resume) reading from a publishing connection while a resource alarm (full
        disk, memory above the watermark) is on, telling clients that understand
        connection.blocked why (`reason`, as RabbitMQ words it)."""
        if blocked == self.flow.blocked or self.state is not OPEN or self.transport is None:
            return
        self.flow.blocked = blocked
        if self.blocked_notify:
            self._send_method(
                0,
                commands.Connection.Blocked(reason=reason)
                if blocked
                else commands.Connection.Unblocked(),
            )
        self._update_reading()

    def flush(self) -> None:
        self._flush_requested = False
        if self._confirm_channels:
            channels, self._confirm_channels = self._confirm_channels, set()
            for channel in channels:
                channel.flush_confirms()
        if self._out and self.transport is not None and not self.transport.is_closing():
            out, self._out = self._out, []
            # One buffer per tick: a transport holding millions of small buffers spends
            # its time managing them instead of sending.
            self.transport.write(b"".join(out))
            self._last_sent = self._clock.time()
            self.send_oct += self._out_size
            if self.flow.write_paused:  # the client is not keeping up: bound what waits
                self.flow.unsent += self._out_size
                if self.flow.unsent > UNSENT_LIMIT and not self.flow.reading_paused:
                    self._update_reading()
        else:
            self._out = []
        self._out_size = 0
        if not self.writable:
            self._writable_again()

    def _send_method(self, number: int, method: base.Frame) -> None:
        self.send(encode_method(number, method))

    # -- frames ---------------------------------------------------------------------

    def _on_frame(self, frame_type: int, number: int, payload: bytes) -> None:
        if frame_type == FRAME_METHOD:
            try:
                index, args = decode_method(payload)
            except UnknownMethodError as error:
                raise _hard(
                    NOT_IMPLEMENTED,
                    f"unknown class/method {error.index >> 16}/{error.index & 0xFFFF}",
                    error.index,
                ) from None
            except MethodSyntaxError as error:
                if error.index == 0:
                    raise _unknown_frame(frame_type, payload) from None
                detail = error.detail or f"cannot decode {erlang_binary(payload[4:])}"
                raise _hard(FRAME_ERROR, detail, error.index) from None
            if number == 0:
                self._on_connection_method(index, args, payload)
            else:
                self._on_channel_method(number, index, args, payload)
        elif frame_type == FRAME_HEADER or frame_type == FRAME_BODY:
            if frame_type == FRAME_HEADER and len(payload) < 14:
                raise _unknown_frame(frame_type, payload)
            if self.state is CLOSING:
                return
            if number == 0 or self.state is not OPEN:
                raise _unexpected_frame(frame_type, payload)
            channel = self.channels.get(number)
            if channel is None:
                raise _hard(UNEXPECTED_FRAME, "expected method frame, got non method frame instead")
            if channel.closing:
                return
            try:
                if frame_type == FRAME_HEADER:
                    channel.handle_header(payload)
                else:
                    channel.handle_body(payload)
            except ChannelError as error:
                self._close_channel(channel, error, BASIC_PUBLISH)
        elif frame_type == FRAME_HEARTBEAT:
            if payload:
                raise _unknown_frame(frame_type, payload)
            if number != 0:
                raise _unexpected_frame(frame_type, payload)
        else:
            raise _unknown_frame(frame_type, payload)

    # -- connection class ----------------------------------------------------------

    def _on_connection_method(self, index: int, args: Any, payload: bytes) -> None:
        if self.state is CLOSING:
            if index == CONNECTION_CLOSE_OK:
                self._shutdown_transport()
            elif index == CONNECTION_CLOSE:  # the two closes crossed: keep waiting for ours
                self._send_method(0, commands.Connection.CloseOk())
                self.flush()
            return
        if self.state is not OPEN:
            self._handshake_step(index, args)
            return
        if index == CONNECTION_CLOSE:
            self._log_closing("the client closed it")
            self._release_all()
            self._send_method(0, commands.Connection.CloseOk())
            self.flush()
            self._linger()
        elif index == CONNECTION_UPDATE_SECRET:
            # RabbitMQ re-checks the secret with its auth backend; for its internal
            # (password) backend that always succeeds: the connection carries on.
            self._send_method(0, commands.Connection.UpdateSecretOk())
        elif index != CONNECTION_CLOSE_OK:
            raise _hard(CHANNEL_ERROR, "unexpected method in connection state running", index)

    def _handshake_step(self, index: int, args: Any) -> None:
        """Feed the one method the current handshake state expects to the handshake."""
        state = self.state
        if index != _EXPECTED[state]:
            raise HandshakeFailed(f"unexpected method {index >> 16}/{index & 0xFFFF}")
        handshake = self.handshake
        if state is AWAIT_START_OK:
            tune = handshake.start_ok(args, self._clock.time())
            self._enter(AWAIT_TUNE_OK)
            self._send_method(0, tune)
        elif state is AWAIT_TUNE_OK:
            self.reader.frame_max = handshake.tune_ok(args).frame_max
            self._enter(AWAIT_OPEN)
        else:
            self._opened(handshake.open(args, index))

    def _opened(self, negotiated: Negotiated) -> None:
        self.negotiated = negotiated
        log.info(
            "connection from %s: user '%s' authenticated and granted access to vhost '%s'",
            self.peer,
            negotiated.user,
            negotiated.vhost.name,
        )
        limits = negotiated.limits
        self.user = negotiated.user
        self.vhost = negotiated.vhost
        self.access = negotiated.access
        self.frame_max = limits.frame_max
        self.channel_max = limits.channel_max
        self.heartbeat = limits.heartbeat
        self.cancel_notify = negotiated.cancel_notify
        self.blocked_notify = negotiated.blocked_notify
        self._enter(OPEN)
        self._send_method(0, commands.Connection.OpenOk())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.heartbeat:
            self._last_sent = self._last_received = self._clock.time()
            self._timer = self._clock.call_later(self.heartbeat / 2, self._heartbeat_tick)

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.state in HANDSHAKING:
            log.info("handshake timeout from %s", self.peer)
            if self.transport is not None:
                self.transport.abort()

    # -- channels -------------------------------------------------------------------

    def _on_channel_method(self, number: int, index: int, args: Any, payload: bytes) -> None:
        if self.state is CLOSING:
            return
        if self.state is not OPEN:
            if self.state is AWAIT_OPEN:
                raise _unexpected_frame(FRAME_METHOD, payload)
            raise HandshakeFailed("channel method during the handshake")
        if index >> 16 == 10:
            raise _hard(COMMAND_INVALID, "unimplemented method", index)
        channel = self.channels.get(number)
        if channel is None:
            if index != CHANNEL_OPEN:
                raise _hard(CHANNEL_ERROR, "expected 'channel.open'", index)
            if len(self.channels) >= self.channel_max:
                raise _hard(
                    NOT_ALLOWED,
                    f"number of channels opened ({len(self.channels)}) has reached the "
                    f"negotiated channel_max ({self.channel_max})",
                )
            self.channels[number] = Channel(number, self)
            self.send(encode_channel_open_ok(number))
            return
        if channel.closing:
            if index == CHANNEL_CLOSE_OK:
                del self.channels[number]
            elif index == CHANNEL_CLOSE:
                self._send_method(number, commands.Channel.CloseOk())
            return
        if channel.expecting_content:
            raise _hard(UNEXPECTED_FRAME, channel.expected_content_text(), BASIC_PUBLISH)
        if index == CHANNEL_CLOSE:
            channel.release()
            del self.channels[number]
            self._send_method(number, commands.Channel.CloseOk())
            return
        if index == CHANNEL_OPEN:
            raise _hard(CHANNEL_ERROR, "second 'channel.open' seen", index)
        try:
            channel.handle_method(index, args)
        except ChannelError as error:
            self._close_channel(channel, error, index)
        except ConnectionError_ as error:
            if not error.index:
                error.index = index
            raise

    def _close_channel(self, channel: Channel, error: AMQPError, index: int) -> None:
        log.warning(
            "channel error on connection from %s (vhost '%s', user '%s'), channel %d: %s",
            self.peer,
            self.vhost.name,
            self.user,
            channel.number,
            error.text,
        )
        channel.release()
        channel.closing = True
        self._send_method(
            channel.number,
            commands.Channel.Close(
                reply_code=error.code,
                reply_text=error.text,
                class_id=index >> 16,
                method_id=index & 0xFFFF,
            ),
        )

    def _release_all(self) -> None:
        for channel in self.channels.values():
            channel.release()
        if self.vhost is not None:
            self.vhost.owner_closed(self)

    # -- closing --------------------------------------------------------------------

    def _close_connection(self, code: int, text: str, index: int) -> None:
        """Send connection.close and wait for close-ok; everything else is ignored now."""
        if self.state is CLOSING or self.state is CLOSED:
            return
        if self.state is AWAIT_HEADER:
            self._shutdown_transport()
            return
        # One line, quoting at most 16 client octets, none before login (credentials).
        log.info("closing connection %s: %s", self.peer, loggable(text, self.state is not OPEN))
        self._release_all()
        self._enter(CLOSING)
        self._send_close(code, text, index)

    def _send_close(self, code: int, text: str, index: int) -> None:
        self._out = []
        self._confirm_channels.clear()
        self._send_method(
            0,
            commands.Connection.Close(
                reply_code=code,
                reply_text=text,
                class_id=index >> 16,
                method_id=index & 0xFFFF,
            ),
        )
        self.flush()
        self._keep_reading_until(CLOSE_OK_TIMEOUT)

    def _refuse_login(self, refused: LoginRefused) -> None:
        """Answer a refused login (already logged by the handshake), after its delay: until
        then read nothing and ignore whatever else the client sent."""
        self._enter(CLOSING)
        self._unprocessed = []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        close = refused.close

        def answer() -> None:
            self._timer = None
            if self.state is CLOSED:
                return
            if close is None:
                self._shutdown_transport()
            else:
                self._send_close(close.code, close.text, close.index)

        if refused.delay <= 0:
            answer()
            return
        if self.transport is not None:
            self.flow.update_reading(self.transport, True)
        self._timer = self._clock.call_later(refused.delay, answer)

    def _log_closing(self, why: str) -> None:
        log.info(
            "closing AMQP connection from %s (vhost '%s', user '%s'): %s",
            self.peer,
            self.vhost.name,
            self.user,
            why,
        )

    def _linger(self) -> None:
        """After connection.close-ok, read and discard until the client closes its side, as
        RabbitMQ does: closing at once would reset a client whose frames are still in flight
        (it would see ECONNRESET instead of its close completing). Bounded by a timeout."""
        self._enter(CLOSED)
        self._unprocessed = []
        self._out = []
        self._keep_reading_until(CLOSE_OK_TIMEOUT)

    def _keep_reading_until(self, timeout: float) -> None:
        """Closing: read (flow control no longer applies) and drop the socket after `timeout`."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._clock.call_later(timeout, self._shutdown_transport)
        if self.transport is not None:
            self.flow.read_regardless(self.transport)

    def force_close(self, reason: str, text: str | None = None) -> None:
        """Close from the broker's side (shutdown, management API), as RabbitMQ's
        CONNECTION_FORCED; `text` replaces the standard reply text."""
        if self.state is OPEN:
            standard = (
                f"CONNECTION_FORCED - broker forced connection closure with reason '{reason}'"
            )
            self._close_connection(CONNECTION_FORCED, text or standard, 0)
        else:
            self._shutdown_transport()

    def abort(self) -> None:
        """Drop the socket now, without a close handshake (the end of a shutdown)."""
        if self.transport is not None:
            self.transport.abort()

    def _shutdown_transport(self) -> None:
        self._enter(CLOSED)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _heartbeat_tick(self) -> None:
        now = self._clock.time()
        if self.flow.reading_paused:
            self._last_received = now  # we are not reading: silence is ours, not the peer's
        if now - self._last_received > 2 * self.heartbeat:
            log.info("missed heartbeats from client %s, timeout: %ds", self.peer, self.heartbeat)
            self._timer = None
            if self.transport is not None:
                self.transport.abort()
            return
        if now - self._last_sent >= self.heartbeat / 2 and self.transport is not None:
            self.transport.write(HEARTBEAT_FRAME)
            self._last_sent = now
        self._timer = self._clock.call_later(self.heartbeat / 2, self._heartbeat_tick)


def _hard(code: int, detail: str, index: int = 0) -> ConnectionError_:
    return ConnectionError_(code, detail, index)


def _unknown_frame(frame_type: int, payload: bytes) -> ConnectionError_:
    return _hard(FRAME_ERROR, f"type {frame_type}, {payload_snippet(payload)}: unknown_frame")


def _unexpected_frame(frame_type: int, payload: bytes) -> ConnectionError_:
    return _hard(UNEXPECTED_FRAME, f"type {frame_type}, {payload_snippet(payload)}")
