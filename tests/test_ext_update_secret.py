"""`connection.update-secret` is answered with update-secret-ok and the connection keeps
working, as RabbitMQ 3.x does with its internal (password) auth backend."""

from __future__ import annotations

from pamqp import commands

from tests.rawamqp import connect


def test_update_secret_ok_and_the_connection_keeps_working(broker, unique):
    with connect(broker.host, broker.port) as raw:
        raw.send(0, commands.Connection.UpdateSecret(new_secret="guest", reason="token refresh"))
        number, frame = raw.recv_frame()
        assert number == 0 and isinstance(frame, commands.Connection.UpdateSecretOk)
        raw.open_channel(1)
        raw.send(1, commands.Queue.Declare(queue=unique, auto_delete=True))
        number, frame = raw.recv_frame()
        assert number == 1 and isinstance(frame, commands.Queue.DeclareOk)
