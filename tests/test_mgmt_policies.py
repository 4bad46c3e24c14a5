"""Policies over the API and amqpctl: validation texts, which policy a queue gets, priority,
apply-to, persistence across a restart, and definitions."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_process import BrokerProcess
from tests.mgmt_client import CONFIG, Api

AMQPCTL = str(Path(sys.executable).with_name("amqpctl"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list]]:
    tmp = tmp_path_factory.mktemp("amqpd-policies")
    (tmp / "amqpd.yaml").write_text(CONFIG)
    holder: list = [None]
    yield tmp, holder
    if holder[0] is not None:
        holder[0].stop()


def start(setup: tuple[Path, list]) -> tuple[BrokerProcess, Api]:
    tmp, holder = setup
    if holder[0] is not None:
        holder[0].stop()
    proc = BrokerProcess(tmp / "data", "--config", str(tmp / "amqpd.yaml")).start()
    holder[0] = proc
    return proc, Api(proc.http_port())


@pytest.fixture
def api(setup: tuple[Path, list]) -> Api:
    proc = setup[1][0]
    if proc is None or proc.proc.poll() is not None:
        return start(setup)[1]
    return Api(proc.http_port())


def test_validation(api: Api) -> None:
    path = f"/api/policies/%2F/v-{uuid.uuid4().hex[:6]}"
    status, body, _ = api.request("PUT", path, {"pattern": ".*", "definition": {"bogus": 1}})
    assert status == 400
    assert (
        body["reason"] == 'Validation failed\n\n[{"bogus",1}] are not recognised policy settings\n'
    )
    status, body, _ = api.request("PUT", path, {"pattern": ".*", "definition": {"message-ttl": -1}})
    assert (status, body["reason"]) == (400, "Validation failed\n\n-1 is not a valid message TTL\n")
    status, body, _ = api.request(
        "PUT", path, {"pattern": ".*", "definition": {"max-length": 5}}, user=("app", "a")
    )
    assert (status, body["reason"]) == (401, "Not policymaker user")
    assert api.request("DELETE", path)[0] == 404


def test_which_policy_applies(api: Api) -> None:
    prefix = f"pol{uuid.uuid4().hex[:6]}"
    low, high, other = f"{prefix}-low", f"{prefix}-high", f"{prefix}-x"
    body = {"pattern": f"^{prefix}\\.", "definition": {"max-length": 10}, "apply-to": "queues"}
    assert api.request("PUT", f"/api/policies/%2F/{low}", body)[0] == 201
    assert api.request("PUT", f"/api/policies/%2F/{low}", body)[0] == 204
    api.request(
        "PUT",
        f"/api/policies/%2F/{high}",
        {"pattern": f"^{prefix}\\.a", "definition": {"message-ttl": 5000}, "priority": 3},
    )
    api.request(
        "PUT",
        f"/api/policies/%2F/{other}",
        {
            "pattern": f"^{prefix}",
            "definition": {"alternate-exchange": "ae"},
            "apply-to": "exchanges",
            "priority": 9,
        },
    )
    for name in ("a1", "b1"):
        api.request("PUT", f"/api/queues/%2F/{prefix}.{name}", {"durable": False})
    api.request("PUT", f"/api/exchanges/%2F/{prefix}.e", {"type": "direct", "durable": False})
    a1 = api.get(f"/api/queues/%2F/{prefix}.a1")
    assert (a1["policy"], a1["effective_policy_definition"]) == (high, {"message-ttl": 5000})
    b1 = api.get(f"/api/queues/%2F/{prefix}.b1")
    assert (b1["policy"], b1["effective_policy_definition"]) == (low, {"max-length": 10})
    listed = {q["name"]: q["policy"] for q in api.get(f"/api/queues/%2F?name={prefix}")}
    assert listed == {f"{prefix}.a1": high, f"{prefix}.b1": low}
    assert api.get(f"/api/exchanges/%2F/{prefix}.e")["policy"] == other
    shown = api.get(f"/api/policies/%2F/{high}")
    assert shown == {
        "vhost": "/",
        "name": high,
        "pattern": f"^{prefix}\\.a",
        "apply-to": "all",
        "definition": {"message-ttl": 5000},
        "priority": 3,
    }
    assert api.request("DELETE", f"/api/policies/%2F/{high}")[0] == 204
    assert api.get(f"/api/queues/%2F/{prefix}.a1")["policy"] == low


def test_policies_survive_a_restart_and_travel_in_definitions(setup: tuple[Path, list]) -> None:
    proc, api = start(setup)
    name = f"keep-{uuid.uuid4().hex[:6]}"
    body = {"pattern": "^keep", "definition": {"expires": 60000}, "priority": 1}
    api.request("PUT", f"/api/policies/%2F/{name}", body)
    proc, api = start(setup)  # restart on the same data directory
    assert api.get(f"/api/policies/%2F/{name}")["definition"] == {"expires": 60000}
    exported = api.get("/api/definitions")
    mine = [p for p in exported["policies"] if p["name"] == name]
    assert mine == [
        {
            "vhost": "/",
            "name": name,
            "pattern": "^keep",
            "apply-to": "all",
            "definition": {"expires": 60000},
            "priority": 1,
        }
    ]
    api.request("DELETE", f"/api/policies/%2F/{name}")
    assert api.request("POST", "/api/definitions", {"policies": mine})[0] == 204
    assert api.get(f"/api/policies/%2F/{name}")["priority"] == 1


def test_amqpctl_policies(api: Api) -> None:
    name = f"ctl-{uuid.uuid4().hex[:6]}"

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AMQPCTL, "--url", api.base, *args], capture_output=True, text=True, timeout=60
        )

    result = ctl(
        "set_policy",
        name,
        "^jobs\\.",
        '{"max-length": 100}',
        "--priority",
        "2",
        "--apply-to",
        "queues",
    )
    assert result.returncode == 0, result.stderr
    rows = ctl("-q", "list_policies").stdout.splitlines()
    assert rows[0] == "vhost\tname\tpattern\tapply-to\tdefinition\tpriority"
    assert f'/\t{name}\t^jobs\\.\tqueues\t{{"max-length":100}}\t2' in rows
    bad = ctl("set_policy", name, ".*", '{"nope": 1}')
    assert bad.returncode == 65 and "not recognised policy settings" in bad.stderr
    assert ctl("clear_policy", name).returncode == 0
    assert ctl("clear_policy", name).returncode == 65


def test_amqpctl_operator_policies(api: Api) -> None:
    """set_/clear_/list_operator_policies, worded as rabbitmqctl words them."""
    name = f"ctl-op-{uuid.uuid4().hex[:6]}"

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AMQPCTL, "--url", api.base, *args], capture_output=True, text=True, timeout=60
        )

    result = ctl(
        "set_operator_policy", name, "^op\\.", '{"max-length": 7}', "--apply-to", "queues"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f'Setting operator policy override "{name}" for pattern "^op\\." to '
        '"{"max-length": 7}" with priority "0" for vhost "/" ...\n'
    )
    assert api.get(f"/api/operator-policies/%2F/{name}")["definition"] == {"max-length": 7}
    assert api.request("GET", f"/api/policies/%2F/{name}")[0] == 404
    listed = ctl("list_operator_policies").stdout.splitlines()
    assert listed[0] == 'Listing operator policy overrides for vhost "/" ...'
    assert f'/\t{name}\t^op\\.\tqueues\t{{"max-length":7}}\t0' in listed
    bad = ctl("set_operator_policy", name, ".*", '{"dead-letter-exchange": "x"}')
    assert bad.returncode == 65 and "not recognised policy settings" in bad.stderr
    cleared = ctl("clear_operator_policy", name)
    assert cleared.stdout == f'Clearing operator policy "{name}" on vhost "/" ...\n'
    assert ctl("clear_operator_policy", name).returncode == 65
