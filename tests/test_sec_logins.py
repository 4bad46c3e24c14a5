"""Logins: loopback_users, RabbitMQ password hashes, refusals logged and slowed (10.6, hashes).

Sans-IO tests drive a `Connection` by bytes with a fake clock and peer address (a non-loopback
peer cannot be had over 127.0.0.1); process tests log in with pika, aio-pika and kombu to an
amqpd whose users have `password_hash`es made by `amqpd hash-password`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import kombu
import pika
import pytest
from pamqp import commands

from amqpd.auth import is_loopback
from amqpd.config import Config, ConfigError, Permission, User, load_config
from amqpd.connection_state import CLOSING
from amqpd.login_guard import DELAY, FREE_FAILURES, LOGGED_FAILURES, MAX_HOSTS, LoginGuard
from amqpd.passwords import BadPasswordHash, PasswordCheck, hash_password
from tests.broker_process import BrokerProcess, external_broker
from tests.sec_broker import log_since, own_broker
from tests.test_connection_unit import Client, FakeTransport

REFUSED = (
    "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
    "For details see the broker logfile."
)
# guest's password_hash as RabbitMQ 3.10 exports it (GET /api/users/guest)
RABBITMQ_GUEST_HASH = "hXvw2sUjlOJv6DW7cbigGx4ioh05zzc+1B2s5NyxMPdInRv6"


# -- passwords -------------------------------------------------------------------------


def test_rabbitmq_hash_verifies() -> None:
    check = PasswordCheck(password_hash=RABBITMQ_GUEST_HASH)
    assert check.matches("guest")
    assert not check.matches("guest ") and not check.matches("")
    assert "guest" not in repr(check) and RABBITMQ_GUEST_HASH not in repr(check)


@pytest.mark.parametrize("algorithm", ["rabbit_password_hashing_sha256",
                                       "rabbit_password_hashing_sha512",
                                       "rabbit_password_hashing_md5"])  # fmt: skip
def test_hash_round_trip(algorithm: str) -> None:
    hashed = hash_password("pässword", algorithm)
    assert hash_password("pässword", algorithm) != hashed  # salted
    check = PasswordCheck(password_hash=hashed, algorithm=algorithm)
    assert check.matches("pässword") and not check.matches("password")


@pytest.mark.parametrize(
    ("password_hash", "algorithm"),
    [("not base64!", "rabbit_password_hashing_sha256"),
     ("AAAA", "rabbit_password_hashing_sha256"),
     (RABBITMQ_GUEST_HASH, "rabbit_password_hashing_sha512"),
     (RABBITMQ_GUEST_HASH, "bcrypt")],
)  # fmt: skip
def test_bad_hashes(password_hash: str, algorithm: str) -> None:
    with pytest.raises(BadPasswordHash):
        PasswordCheck(password_hash=password_hash, algorithm=algorithm)


def test_config_takes_hashes(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "users:\n  - name: a\n    password_hash: " + RABBITMQ_GUEST_HASH + "\n"
        "    hashing_algorithm: rabbit_password_hashing_sha256\n"
        "  - name: b\n    password: plain\nloopback_users: [a, b]\n"
    )
    config = load_config(["--config", str(path)], {})
    a, b = config.users
    assert a.password_check().matches("guest") and not a.password_check().matches("")
    assert b.password_check().matches("plain")
    assert config.loopback_users == ("a", "b")
    assert RABBITMQ_GUEST_HASH not in repr(config)
    path.write_text(
        "users:\n  - {name: a, password: x, password_hash: " + RABBITMQ_GUEST_HASH + "}\n"
    )
    with pytest.raises(ConfigError, match="not both"):
        load_config(["--config", str(path)], {})
    path.write_text("users:\n  - {name: a, password_hash: AAAA}\n")
    with pytest.raises(ConfigError, match="salt"):
        load_config(["--config", str(path)], {})


def test_loopback_users_from_env() -> None:
    assert load_config([], {}).loopback_users == ("guest",)
    assert load_config([], {"AMQPD_LOOPBACK_USERS": "none"}).loopback_users == ()
    assert load_config([], {"AMQPD_LOOPBACK_USERS": "a, b"}).loopback_users == ("a", "b")


def test_hash_password_command() -> None:
    run = [sys.executable, "-m", "amqpd", "hash-password"]
    printed = subprocess.run(run, input="s3cret\n", capture_output=True, text=True, check=True)
    assert PasswordCheck(password_hash=printed.stdout.strip()).matches("s3cret")
    printed = subprocess.run(run + ["other"], capture_output=True, text=True, check=True)
    assert PasswordCheck(password_hash=printed.stdout.strip()).matches("other")


# -- loopback addresses and the login guard --------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("fe80::1%eth0", False), ("", False),
     ("192.168.1.1", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_guard_delays_after_repeated_failures() -> None:
    guard = LoginGuard()
    delays = [guard.refused("10.0.0.1", 100.0 + i).delay for i in range(FREE_FAILURES + 2)]
    assert delays == [0.0] * FREE_FAILURES + [DELAY, DELAY]
    assert guard.refused("10.0.0.2", 110.0).delay == 0.0  # per peer
    assert guard.refused("10.0.0.1", 200.0).delay == 0.0  # a new window
    guard.succeeded("10.0.0.2")
    logged = [guard.refused("10.0.0.3", 300.0) for _ in range(LOGGED_FAILURES + 5)]
    assert sum(verdict.log for verdict in logged) == LOGGED_FAILURES
    assert [verdict.last_logged for verdict in logged].index(True) == LOGGED_FAILURES - 1


def test_guard_memory_is_bounded() -> None:
    guard = LoginGuard()
    for i in range(MAX_HOSTS + 500):
        guard.refused(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 0.0)
    assert len(guard) == MAX_HOSTS


class RemoteTransport(FakeTransport):
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("203.0.113.7", 40000) if name == "peername" else default


class RemoteClient(Client):
    """A Client whose peer is not a loopback address."""

    def __init__(self, config: Config | None = None, broker: Any = None) -> None:
        super().__init__(config)
        if broker is not None:
            self.broker = broker
            self.connection.broker = broker
            self.connection.handshake._logins = broker.logins
        self.transport = RemoteTransport()
        self.connection.transport = None
        self.connection.connection_made(self.transport)


def test_guest_only_from_loopback() -> None:
    local = Client()
    local.login()
    local.expect(commands.Connection.Tune)
    remote = RemoteClient()
    remote.login()
    (close,) = remote.expect(commands.Connection.Close)
    assert (close.reply_code, close.reply_text) == (403, REFUSED)
    remote = RemoteClient(Config(loopback_users=()))
    remote.login()
    remote.expect(commands.Connection.Tune)


def test_other_users_from_anywhere_unless_listed() -> None:
    users = (User("guest", "guest", {"/": Permission()}),)
    remote = RemoteClient(Config(users=users, loopback_users=("someone-else",)))
    remote.login()
    remote.expect(commands.Connection.Tune)


def test_repeated_failures_from_one_peer_are_answered_late(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = Client()
    broker = first.broker
    for attempt in range(FREE_FAILURES + 1):
        client = first if attempt == 0 else Client()
        client.broker = broker
        client.connection.broker = broker
        client.connection.handshake._logins = broker.logins
        client.clock = first.clock
        client.connection._clock = first.clock
        with caplog.at_level("WARNING", logger="amqpd.connection"):
            client.login(password="wrong-secret")
        if attempt < FREE_FAILURES:
            (close,) = client.expect(commands.Connection.Close)
            assert close.reply_code == 403
        else:
            assert client.received() == []  # not yet
            assert client.connection.state is CLOSING and not client.transport.reading
            first.clock.advance(DELAY)
            (close,) = client.expect(commands.Connection.Close)
            assert (close.reply_code, close.reply_text) == (403, REFUSED)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == FREE_FAILURES + 1
    expected = "for 127.0.0.1:40000 (user 'guest') using PLAIN: invalid credentials"
    assert all(expected in line for line in lines)
    assert not any("wrong-secret" in line for line in lines)


# -- real clients, a real broker ---------------------------------------------------------


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    if external_broker() is not None:
        pytest.skip("needs users with password hashes")
    path: Path = tmp_path_factory.mktemp("logins")
    made = subprocess.run(
        [sys.executable, "-m", "amqpd", "hash-password", "h4shed-pw"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (path / "amqpd.yaml").write_text(
        "users:\n"
        f"  - name: hashed\n    password_hash: {made.stdout.strip()}\n"
        "    permissions: {/: {}}\n"
        "  - name: plain\n    password: plain-pw\n    permissions: {/: {}}\n"
    )
    with own_broker(path / "data", "--config", str(path / "amqpd.yaml")) as proc:
        yield proc


def test_pika_with_hashed_and_plain_passwords(proc: BrokerProcess) -> None:
    for user, password in (("hashed", "h4shed-pw"), ("plain", "plain-pw")):
        credentials = pika.PlainCredentials(user, password)
        params = pika.ConnectionParameters(proc.host, proc.port, credentials=credentials)
        conn = pika.BlockingConnection(params)
        conn.channel().queue_declare("", exclusive=True)
        conn.close()
    mark = len(proc.log_lines)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(
            pika.ConnectionParameters(
                proc.host, proc.port, credentials=pika.PlainCredentials("hashed", "h4shed-PW")
            )
        )
    lines = log_since(proc, mark, until="(user 'hashed') using PLAIN: invalid credentials")
    assert any("(user 'hashed') using PLAIN: invalid credentials" in line for line in lines)
    assert not any("h4shed-PW" in line for line in lines)


def test_aio_pika_with_hashed_password(proc: BrokerProcess) -> None:
    async def run() -> None:
        url = f"amqp://hashed:h4shed-pw@{proc.host}:{proc.port}/"
        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        await channel.declare_queue("", exclusive=True)
        await connection.close()
        with pytest.raises(aio_pika.exceptions.ProbableAuthenticationError):
            await aio_pika.connect(f"amqp://hashed:nope@{proc.host}:{proc.port}/")

    asyncio.run(run())


def test_kombu_with_hashed_password(proc: BrokerProcess) -> None:
    with kombu.Connection(f"amqp://hashed:h4shed-pw@{proc.host}:{proc.port}//") as conn:
        queue = kombu.Queue("sec-kombu", exclusive=True)
        producer = conn.Producer()
        producer.publish({"x": 1}, routing_key="sec-kombu", declare=[queue])
        message = queue(conn.channel()).get(no_ack=True)
        assert message is not None and message.payload == {"x": 1}


def test_many_failures_from_one_peer_slow_down(proc: BrokerProcess) -> None:
    def fail() -> float:
        started = time.monotonic()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(
                pika.ConnectionParameters(
                    proc.host, proc.port, credentials=pika.PlainCredentials("plain", "bad")
                )
            )
        return time.monotonic() - started

    times = [fail() for _ in range(FREE_FAILURES + 1)]
    assert times[-1] >= DELAY * 0.9 and min(times) < DELAY
    pika.BlockingConnection(
        pika.ConnectionParameters(
            proc.host, proc.port, credentials=pika.PlainCredentials("plain", "plain-pw")
        )
    ).close()  # a good login clears the record
    assert fail() < DELAY


def test_loopback_users_env_is_not_reported_unknown() -> None:
    from amqpd.config import unknown_environment

    assert unknown_environment({"AMQPD_LOOPBACK_USERS": "none", "AMQPD_TLS_PORT": "1"}) == []
