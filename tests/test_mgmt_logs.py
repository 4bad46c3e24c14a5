"""Logs an operator can use: JSON lines, debug lines that say something, refused logins
naming the user (never the password)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.mgmt_client import start_mgmt_broker


def test_json_debug_lines_and_refused_logins(tmp_path: Path) -> None:
    proc, api = start_mgmt_broker(tmp_path, "--log-level", "debug", "--log-format", "json")
    try:
        assert api.request("GET", "/api/overview")[0] == 200
        assert api.request("GET", "/api/overview", user=("guest", "hunter2"))[0] == 401
        assert proc.wait_for_log("HTTP access denied")
        assert proc.wait_for_log("HTTP GET /api/overview -> 200")
    finally:
        proc.stop()
    lines = [json.loads(line) for line in proc.log_lines if line.startswith("{")]
    assert len(lines) == len(proc.log_lines), proc.log_lines  # every line is a JSON object
    assert all({"time", "level", "logger", "msg"} <= line.keys() for line in lines)
    denied = [line for line in lines if "HTTP access denied" in line["msg"]]
    assert denied[0]["level"] == "warning"
    assert denied[0]["msg"] == "HTTP access denied: user 'guest' - invalid credentials"
    assert not any("hunter2" in line["msg"] for line in lines)
    assert any(line["level"] == "debug" and "/api/overview" in line["msg"] for line in lines)


def test_connection_lines(tmp_path: Path) -> None:
    import pika

    proc, _api = start_mgmt_broker(tmp_path)
    try:
        params = pika.ConnectionParameters(
            "127.0.0.1", proc.port, credentials=pika.PlainCredentials("guest", "guest")
        )
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            channel.queue_declare("no-such-queue-here", passive=True)
        connection.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(
                pika.ConnectionParameters(
                    "127.0.0.1", proc.port, credentials=pika.PlainCredentials("app", "wrong")
                )
            )
        assert proc.wait_for_log("(user 'app') using PLAIN: invalid credentials")
        assert proc.wait_for_log("the client closed it")
    finally:
        proc.stop()
    text = "\n".join(proc.log_lines)
    assert "accepting AMQP connection from 127.0.0.1:" in text
    assert "user 'guest' authenticated and granted access to vhost '/'" in text
    assert "channel 1: NOT_FOUND - no queue 'no-such-queue-here' in vhost '/'" in text, text
    assert "(vhost '/', user 'guest'): the client closed it" in text
    assert "wrong" not in text  # the password never reaches the log
