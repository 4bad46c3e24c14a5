"""amqps: a TLS listener with pika, aio-pika and kombu; EXTERNAL logins from client certificates.

Certificates come from `trustme` (a throwaway CA). The broker listens for TLS on a free port
with `tls_verify_peer`, so a client may present a certificate; the EXTERNAL mechanism logs
in as its CN. A second broker requires one (`tls_fail_if_no_peer_cert`). A plaintext AMQP
client on the TLS port gets the socket closed, and the broker keeps serving.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import kombu
import pika
import pytest
import trustme

from amqpd.config import ConfigError, load_config
from tests.broker_process import BrokerProcess, external_broker
from tests.sec_broker import log_since

TLS_LINE = re.compile(r"amqps \(TLS\) accepting at \[?[0-9a-fA-F:.]+\]?:(\d+)")
CONFIG = """
users:
  - {name: guest, password: guest, permissions: {/: {}}}
  - {name: cert-user, password: unused-pw, permissions: {/: {}}}
"""


@dataclass
class Tls:
    proc: BrokerProcess
    port: int
    ca: Path
    client_cert: Path  # key and chain, CN=cert-user
    stranger_cert: Path  # CN=nobody, signed by the same CA

    def context(self, cert: Path | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if cert is not None:
            context.load_cert_chain(str(cert))
        return context


def _issue(ca: trustme.CA, common_name: str, path: Path) -> None:
    """A client certificate (with its key) whose subject CN is `common_name`."""
    cert = ca.issue_cert(common_name, common_name=common_name)
    cert.private_key_and_cert_chain_pem.write_to_path(str(path))


def _start(path: Path, ca: trustme.CA, *flags: str) -> tuple[BrokerProcess, int]:
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(path / "server.pem"))
    ca.cert_pem.write_to_path(str(path / "ca.pem"))
    (path / "amqpd.yaml").write_text(CONFIG)
    args = ["--config", str(path / "amqpd.yaml"), "--tls-port", "0"]
    args += ["--tls-certfile", str(path / "server.pem"), "--tls-cafile", str(path / "ca.pem")]
    proc = BrokerProcess(path / "data", *args, *flags).start()
    for line in proc.log_lines:
        match = TLS_LINE.search(line)
        if match:
            return proc, int(match.group(1))
    proc.stop()
    raise AssertionError(f"no TLS listener line in {proc.log_lines}")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    if external_broker() is not None:
        pytest.skip("starts its own TLS broker")
    path = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    proc, port = _start(path, ca, "--tls-verify-peer", "true")
    ca.issue_cert(
        "cert-user", common_name="cert-user"
    ).private_key_and_cert_chain_pem.write_to_path(str(path / "client.pem"))
    ca.issue_cert("nobody", common_name="nobody").private_key_and_cert_chain_pem.write_to_path(
        str(path / "nobody.pem")
    )
    try:
        yield Tls(proc, port, path / "ca.pem", path / "client.pem", path / "nobody.pem")
    finally:
        proc.stop()


def _pika(tls: Tls, cert: Path | None = None, **kwargs: object) -> pika.BlockingConnection:
    options = pika.SSLOptions(tls.context(cert), "127.0.0.1")
    params = pika.ConnectionParameters("127.0.0.1", tls.port, ssl_options=options, **kwargs)
    return pika.BlockingConnection(params)


def _publish_as(conn: pika.BlockingConnection, user: str) -> None:
    """Publishing with a user_id property only works as the authenticated user."""
    channel = conn.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"hi", pika.BasicProperties(user_id=user))
    method, properties, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"hi" and properties.user_id == user


def test_pika_plain_login_over_tls(tls: Tls) -> None:
    conn = _pika(tls)
    _publish_as(conn, "guest")
    conn.close()


def test_pika_external_login_takes_the_certificate_cn(tls: Tls) -> None:
    conn = _pika(tls, tls.client_cert, credentials=pika.credentials.ExternalCredentials())
    _publish_as(conn, "cert-user")
    conn.close()


def test_external_needs_a_known_user(tls: Tls) -> None:
    mark = len(tls.proc.log_lines)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        _pika(tls, tls.stranger_cert, credentials=pika.credentials.ExternalCredentials())
    lines = log_since(tls.proc, mark, until="(user 'nobody') using EXTERNAL: no such user")
    assert any("(user 'nobody') using EXTERNAL: no such user" in line for line in lines), lines


def test_external_not_offered_without_a_certificate(tls: Tls) -> None:
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        _pika(tls, credentials=pika.credentials.ExternalCredentials())


def test_aio_pika_over_tls(tls: Tls) -> None:
    async def run() -> None:
        url = f"amqps://guest:guest@127.0.0.1:{tls.port}/"
        connection = await aio_pika.connect(url, ssl_context=tls.context())
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"tls"), queue.name)
        message = await queue.get(timeout=5)
        assert message is not None and message.body == b"tls"
        await connection.close()
        external = f"amqps://127.0.0.1:{tls.port}/?auth=external"
        connection = await aio_pika.connect(external, ssl_context=tls.context(tls.client_cert))
        await connection.channel()
        await connection.close()

    asyncio.run(run())


def test_kombu_over_tls(tls: Tls) -> None:
    options = {"ca_certs": str(tls.ca), "cert_reqs": ssl.CERT_REQUIRED}
    url = f"amqp://guest:guest@127.0.0.1:{tls.port}//"
    with kombu.Connection(url, ssl=options) as conn:
        queue = kombu.Queue("sec-tls-kombu", exclusive=True)
        conn.Producer().publish({"tls": True}, routing_key=queue.name, declare=[queue])
        message = queue(conn.channel()).get(no_ack=True)
        assert message is not None and message.payload == {"tls": True}
    external = dict(options, certfile=str(tls.client_cert))
    url = f"amqp://127.0.0.1:{tls.port}//"
    with kombu.Connection(url, ssl=external, login_method="EXTERNAL") as conn:
        conn.connect()
        assert conn.connected


def test_plaintext_client_on_the_tls_port_is_closed(tls: Tls) -> None:
    mark = len(tls.proc.log_lines)
    with socket.create_connection(("127.0.0.1", tls.port), timeout=10) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert b"AMQP" not in data  # no AMQP from a TLS port, just the end of the socket
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", tls.port, socket_timeout=5))
    conn = _pika(tls)  # still serving
    conn.close()
    lines = log_since(tls.proc, mark)
    assert not any("Traceback" in line for line in lines), lines
    # Each connection's accepted / authenticated / closed lines are logged at INFO by design.
    lines = [line for line in lines if " INFO amqpd.connection: " not in line]
    lines = [line for line in lines if " amqpd.mgmt: " not in line]  # its listeners start late
    assert len(lines) <= 2, lines


def test_fail_if_no_peer_cert(tmp_path: Path) -> None:
    if external_broker() is not None:
        pytest.skip("starts its own TLS broker")
    ca = trustme.CA()
    flags = ("--tls-verify-peer", "true", "--tls-fail-if-no-peer-cert", "true")
    proc, port = _start(tmp_path, ca, *flags)
    try:
        ca.issue_cert(
            "cert-user", common_name="cert-user"
        ).private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
        tls = Tls(proc, port, tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "x")
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            _pika(tls)
        conn = _pika(tls, tls.client_cert, credentials=pika.credentials.ExternalCredentials())
        _publish_as(conn, "cert-user")
        conn.close()
    finally:
        proc.stop()


def test_bad_tls_settings_stop_amqpd(tmp_path: Path) -> None:
    if external_broker() is not None:
        pytest.skip("runs amqpd")
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    base = [sys.executable, "-m", "amqpd", "--port", "0", "--data-dir", str(tmp_path / "d")]
    for flags, code, text in (
        (["--tls-port", "0", "--tls-certfile", str(tmp_path / "bad.pem")], 1,
         "cannot use the TLS certificate or key"),
        (["--tls-certfile", str(tmp_path / "missing.pem")], 2, "tls_certfile: cannot read"),
        (["--tls-verify-peer", "true"], 2, "need tls_certfile"),
    ):  # fmt: skip
        done = subprocess.run(base + flags, capture_output=True, text=True, timeout=30)
        assert done.returncode == code, done.stderr
        assert text in done.stderr and "Traceback" not in done.stderr


def test_tls_settings_from_env_flags_and_file(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    env = {
        "AMQPD_TLS_PORT": "5999",
        "AMQPD_TLS_CERTFILE": str(cert),
        "AMQPD_TLS_CAFILE": str(cert),
        "AMQPD_TLS_VERIFY_PEER": "true",
        "AMQPD_TLS_FAIL_IF_NO_PEER_CERT": "yes",
    }
    config = load_config([], env)
    assert (config.tls_port, config.tls_certfile, config.tls_cafile) == (5999, str(cert), str(cert))
    assert config.tls_verify_peer and config.tls_fail_if_no_peer_cert
    config = load_config(["--tls-fail-if-no-peer-cert", "false", "--tls-port", "0"], env)
    assert not config.tls_fail_if_no_peer_cert and config.tls_port == 0
    (tmp_path / "a.yaml").write_text(f"tls_certfile: {cert}\ntls_verify_peer: false\n")
    config = load_config(["--config", str(tmp_path / "a.yaml")], {})
    assert config.tls_certfile == str(cert) and not config.tls_verify_peer
    with pytest.raises(ConfigError, match="tls_verify_peer must be true or false"):
        load_config([], {"AMQPD_TLS_CERTFILE": str(cert), "AMQPD_TLS_VERIFY_PEER": "maybe"})
    with pytest.raises(ConfigError, match="tls_fail_if_no_peer_cert needs tls_verify_peer"):
        load_config([], {"AMQPD_TLS_CERTFILE": str(cert), "AMQPD_TLS_FAIL_IF_NO_PEER_CERT": "1"})
