"""Definitions in RabbitMQ's format: API round trip, loading at startup, and moving between
amqpd and a real RabbitMQ (skipped when none runs on 127.0.0.1:15673)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from tests.broker_process import BrokerProcess
from tests.mgmt_client import REFERENCE, Api, reference_up, start_mgmt_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, Api]]:
    proc, api = start_mgmt_broker(tmp_path_factory.mktemp("amqpd-defs"))
    try:
        yield proc, api
    finally:
        proc.stop()


def _topology(api: Api, prefix: str) -> None:
    api.request("PUT", f"/api/exchanges/%2F/{prefix}.x", {"type": "topic", "durable": True})
    api.request("PUT", f"/api/exchanges/%2F/{prefix}.x2", {"type": "fanout", "durable": True})
    api.request(
        "PUT",
        f"/api/queues/%2F/{prefix}.q",
        {"durable": True, "arguments": {"x-max-length": 100, "x-queue-mode": "lazy"}},
    )
    api.request("POST", f"/api/bindings/%2F/e/{prefix}.x/q/{prefix}.q", {"routing_key": "k.#"})
    api.request(
        "POST",
        f"/api/bindings/%2F/e/{prefix}.x/e/{prefix}.x2",
        {"routing_key": "e", "arguments": {"n": 1}},
    )


def _mine(definitions: dict, prefix: str) -> dict:
    return {
        "queues": sorted(
            (q["name"], q["durable"], q["auto_delete"], json.dumps(q["arguments"], sort_keys=True))
            for q in definitions["queues"]
            if q["name"].startswith(prefix)
        ),
        "exchanges": sorted(
            (e["name"], e["type"], e["durable"], e["internal"])
            for e in definitions["exchanges"]
            if e["name"].startswith(prefix)
        ),
        "bindings": sorted(
            (
                b["source"],
                b["destination"],
                b["destination_type"],
                b["routing_key"],
                json.dumps(b["arguments"], sort_keys=True),
            )
            for b in definitions["bindings"]
            if b["source"].startswith(prefix)
        ),
    }


def test_export_format(broker: tuple[BrokerProcess, Api]) -> None:
    _proc, api = broker
    prefix = f"d{uuid.uuid4().hex[:6]}"
    _topology(api, prefix)
    exported = api.get("/api/definitions")
    for key in (
        "rabbit_version",
        "users",
        "vhosts",
        "permissions",
        "queues",
        "exchanges",
        "bindings",
        "policies",
        "parameters",
        "global_parameters",
        "topic_permissions",
    ):
        assert key in exported, key
    assert {"name": "/"} in exported["vhosts"]
    guest = next(u for u in exported["users"] if u["name"] == "guest")
    assert guest["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert guest["tags"] == ["administrator"]
    mine = _mine(exported, prefix)
    assert [q[0] for q in mine["queues"]] == [f"{prefix}.q"]
    assert len(mine["exchanges"]) == 2 and len(mine["bindings"]) == 2
    assert not any(e["name"].startswith("amq.") or e["name"] == "" for e in exported["exchanges"])
    one_vhost = api.get("/api/definitions/%2F")
    assert "users" not in one_vhost and "vhost" not in one_vhost["queues"][0]


def test_import_round_trip(broker: tuple[BrokerProcess, Api]) -> None:
    _proc, api = broker
    prefix = f"r{uuid.uuid4().hex[:6]}"
    _topology(api, prefix)
    before = api.get("/api/definitions")
    for path in (
        f"/api/queues/%2F/{prefix}.q",
        f"/api/exchanges/%2F/{prefix}.x",
        f"/api/exchanges/%2F/{prefix}.x2",
    ):
        assert api.request("DELETE", path)[0] == 204
    assert _mine(api.get("/api/definitions"), prefix)["queues"] == []
    status, body, _ = api.request("POST", "/api/definitions", before)
    assert status == 204, body
    assert _mine(api.get("/api/definitions"), prefix) == _mine(before, prefix)
    # importing again changes nothing
    assert api.request("POST", "/api/definitions", before)[0] == 204
    assert _mine(api.get("/api/definitions"), prefix) == _mine(before, prefix)


def test_import_errors(broker: tuple[BrokerProcess, Api]) -> None:
    _proc, api = broker
    status, body, _ = api.request(
        "POST", "/api/definitions", {"queues": [{"name": "x", "vhost": "elsewhere"}]}
    )
    assert status == 400 and "vhost 'elsewhere'" in body["reason"]
    name = f"e{uuid.uuid4().hex[:6]}"
    api.request("PUT", f"/api/queues/%2F/{name}", {"durable": True})
    status, body, _ = api.request(
        "POST", "/api/definitions", {"queues": [{"name": name, "vhost": "/", "durable": False}]}
    )
    assert status == 400 and "inequivalent arg 'durable'" in body["reason"]
    assert api.request("POST", "/api/definitions", {}, user=("watcher", "w"))[0] == 401


def test_definitions_file_at_startup(tmp_path: Path) -> None:
    prefix = f"s{uuid.uuid4().hex[:6]}"
    definitions = {
        "rabbit_version": "3.10.8",
        "vhosts": [{"name": "/"}],
        "queues": [
            {
                "name": f"{prefix}.q",
                "vhost": "/",
                "durable": True,
                "auto_delete": False,
                "arguments": {},
            }
        ],
        "exchanges": [
            {
                "name": f"{prefix}.x",
                "vhost": "/",
                "type": "direct",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
        ],
        "bindings": [
            {
                "source": f"{prefix}.x",
                "vhost": "/",
                "destination": f"{prefix}.q",
                "destination_type": "queue",
                "routing_key": "k",
                "arguments": {},
            }
        ],
    }
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(definitions))
    with BrokerProcess(tmp_path / "data", "--definitions-file", str(path)) as proc:
        connection = pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1", proc.port, credentials=pika.PlainCredentials("guest", "guest")
            )
        )
        channel = connection.channel()
        channel.basic_publish(f"{prefix}.x", "k", b"declared by the file")
        assert channel.basic_get(f"{prefix}.q", auto_ack=True)[2] == b"declared by the file"
        connection.close()
        assert proc.wait_for_log("definitions loaded from")
    path.write_text("{not json")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "amqpd",
            "--port",
            "0",
            "--management",
            "off",
            "--data-dir",
            str(tmp_path / "data2"),
            "--definitions-file",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot load definitions" in result.stderr and "not valid JSON" in result.stderr


@pytest.mark.skipif(not reference_up(), reason="no reference RabbitMQ on 127.0.0.1:15673")
def test_moves_to_rabbitmq_and_back(broker: tuple[BrokerProcess, Api]) -> None:
    _proc, api = broker
    prefix = f"mv{uuid.uuid4().hex[:6]}"
    _topology(api, prefix)
    exported = api.get("/api/definitions/%2F")
    mine = {
        "queues": [q for q in exported["queues"] if q["name"].startswith(prefix)],
        "exchanges": [e for e in exported["exchanges"] if e["name"].startswith(prefix)],
        "bindings": [b for b in exported["bindings"] if b["source"].startswith(prefix)],
    }
    try:
        status, body, _ = REFERENCE.request("POST", "/api/definitions/%2F", {**exported, **mine})
        assert status in (200, 201, 204), body
        theirs = _reference_definitions()
        assert _mine(theirs, prefix) == _mine({**mine, **_with_vhost(mine)}, prefix)
        # and back: RabbitMQ's export imports into a fresh amqpd name space
        for path in (
            f"/api/queues/%2F/{prefix}.q",
            f"/api/exchanges/%2F/{prefix}.x",
            f"/api/exchanges/%2F/{prefix}.x2",
        ):
            api.request("DELETE", path)
        status, body, _ = api.request("POST", "/api/definitions", _only(theirs, prefix))
        assert status == 204, body
        assert _mine(api.get("/api/definitions"), prefix) == _mine(theirs, prefix)
    finally:
        for path in (
            f"/api/queues/%2F/{prefix}.q",
            f"/api/exchanges/%2F/{prefix}.x",
            f"/api/exchanges/%2F/{prefix}.x2",
        ):
            REFERENCE.request("DELETE", path)


def _reference_definitions() -> dict:
    """The reference RabbitMQ's export. Other tests share that broker and may have left
    deeply nested arguments in it, deeper than json's default recursion limit."""
    request = urllib.request.Request("http://127.0.0.1:15673/api/definitions")
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 50_000))
    try:
        return json.loads(raw)
    finally:
        sys.setrecursionlimit(limit)


def _with_vhost(definitions: dict) -> dict:
    return {key: [{**item, "vhost": "/"} for item in items] for key, items in definitions.items()}


def _only(definitions: dict, prefix: str) -> dict:
    """RabbitMQ's whole export, cut down to this test's objects (others belong to others)."""
    cut = dict(definitions)
    cut["vhosts"] = [v for v in definitions.get("vhosts", []) if v["name"] == "/"]
    cut["permissions"] = [p for p in definitions.get("permissions", []) if p["vhost"] == "/"]
    cut["queues"] = [q for q in definitions["queues"] if q["name"].startswith(prefix)]
    cut["exchanges"] = [e for e in definitions["exchanges"] if e["name"].startswith(prefix)]
    cut["bindings"] = [b for b in definitions["bindings"] if b["source"].startswith(prefix)]
    return cut
