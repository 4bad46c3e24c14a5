"""Users, vhosts and permissions managed at run time: the management API (the same requests
against RabbitMQ on 15673 when it runs), pika logins with the users made, permission
changes on open connections, vhost and user deletion closing connections (320), a
restart, definitions with users, rabbitmqadmin and amqpctl."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pika.exceptions
import pytest

from amqpd.accounts import Accounts, accounts_path
from amqpd.config import Config, Permission, User
from amqpd.passwords import hash_password
from tests.broker_process import BrokerProcess
from tests.mgmt_client import REFERENCE, Api, reference_up, start_mgmt_broker

RABBITMQADMIN = shutil.which("rabbitmqadmin")
AMQPCTL = str(Path(sys.executable).with_name("amqpctl"))
FULL = {"configure": ".*", "write": ".*", "read": ".*"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, Api]]:
    proc, api = start_mgmt_broker(tmp_path_factory.mktemp("amqpd-users"))
    try:
        yield proc, api
    finally:
        proc.stop()


@pytest.fixture(params=["amqpd", "rabbitmq"])
def target(request: pytest.FixtureRequest, broker: tuple[BrokerProcess, Api]) -> tuple[Api, int]:
    """The management API and AMQP port of amqpd, or of the reference RabbitMQ."""
    if request.param == "rabbitmq":
        if not reference_up():
            pytest.skip("no reference RabbitMQ on 127.0.0.1:15673")
        return REFERENCE, 5673
    proc, api = broker
    return api, proc.port


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _connect(port: int, user: str, password: str, vhost: str = "/") -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1", port, vhost, pika.PlainCredentials(user, password), heartbeat=0
        )
    )


def _closed_by_broker(connection: pika.BlockingConnection, timeout: float = 5.0) -> tuple:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection.process_data_events(0.1)
        except pika.exceptions.ConnectionClosedByBroker as closed:
            return closed.reply_code, closed.reply_text
    raise AssertionError("the broker did not close the connection")


def test_user_created_over_the_api_logs_in_and_is_deleted(target: tuple[Api, int]) -> None:
    api, port = target
    user = _name("u11")
    path = f"/api/users/{user}"
    assert api.request("PUT", path, {"password": "pw1", "tags": "management"})[0] == 201
    shown = api.get(path)
    assert shown["tags"] == ["management"] and shown["password_hash"]
    assert shown["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert api.request("PUT", f"/api/permissions/%2F/{user}", FULL)[0] == 201
    assert api.request("PUT", f"/api/permissions/%2F/{user}", FULL)[0] == 204
    assert api.get(f"/api/permissions/%2F/{user}") == {"user": user, "vhost": "/", **FULL}
    assert api.get(f"/api/users/{user}/permissions") == [{"user": user, "vhost": "/", **FULL}]
    connection = _connect(port, user, "pw1")
    connection.channel().queue_declare("", exclusive=True)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        _connect(port, user, "wrong")
    # a new password: the old one stops working, an open connection stays
    assert api.request("PUT", path, {"password": "pw2", "tags": ""})[0] == 204
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        _connect(port, user, "pw1")
    _connect(port, user, "pw2").close()
    assert connection.is_open
    assert api.request("DELETE", path)[0] == 204
    assert _closed_by_broker(connection) == (320, f"CONNECTION_FORCED - user '{user}' is deleted")
    assert api.request("GET", path)[0] == 404
    assert api.request("DELETE", path)[:2] == (
        404,
        {"error": "Object Not Found", "reason": "Not Found"},
    )


def test_refusals_match_rabbitmq(target: tuple[Api, int]) -> None:
    api, _port = target
    user = _name("u11r")
    bad = {"error": "bad_request"}
    status, body, _ = api.request("PUT", f"/api/users/{user}", {"password": "x"})
    assert (status, body) == (400, {**bad, "reason": "tags_not_present"})
    status, body, _ = api.request(
        "PUT", f"/api/users/{user}", {"password": "x", "password_hash": "eA==", "tags": ""}
    )
    assert (status, body) == (
        400,
        {**bad, "reason": "both_password_and_password_hash_are_provided"},
    )
    status, body, _ = api.request("PUT", f"/api/users/{user}", {"password_hash": "no!", "tags": ""})
    assert (status, body) == (400, {**bad, "reason": ["not_base64", "no!"]})
    status, body, _ = api.request("PUT", f"/api/permissions/%2F/{user}", FULL)
    assert (status, body) == (400, {**bad, "reason": "vhost_or_user_not_found"})
    assert api.request("PUT", f"/api/users/{user}", {"password": "x", "tags": ""})[0] == 201
    try:
        status, body, _ = api.request("PUT", f"/api/permissions/%2F/{user}", {"configure": ".*"})
        assert (status, body) == (
            400,
            {**bad, "reason": "[{key_missing,write},{key_missing,read}]"},
        )
        status, body, _ = api.request(
            "PUT", f"/api/permissions/%2F/{user}", {**FULL, "configure": "("}
        )
        assert status == 400 and body["error"] == "bad_request"
        assert api.request("DELETE", f"/api/permissions/%2F/{user}")[0] == 404
        status, body, _ = api.request("PUT", f"/api/permissions/no-such-vhost/{user}", FULL)
        assert (status, body) == (400, {**bad, "reason": "vhost_or_user_not_found"})
        without = [item["name"] for item in api.get("/api/users/without-permissions")]
        assert user in without
        # a user updated without a password has none any more
        assert api.request("PUT", f"/api/users/{user}", {"tags": "monitoring"})[0] == 204
        assert api.get(f"/api/users/{user}")["password_hash"] == ""
    finally:
        api.request("DELETE", f"/api/users/{user}")


def test_bulk_delete(target: tuple[Api, int]) -> None:
    api, _port = target
    first, second = _name("u11b"), _name("u11b")
    for user in (first, second):
        api.request("PUT", f"/api/users/{user}", {"password": "x", "tags": ""})
    status, body, _ = api.request("POST", "/api/users/bulk-delete", {})
    assert (status, body) == (400, {"error": "bad_request", "reason": "[{key_missing,users}]"})
    status, body, _ = api.request(
        "POST", "/api/users/bulk-delete", {"users": [first, "no-such-user-u11", second]}
    )
    assert (status, body) == (
        400,
        {"error": "bad_request", "reason": ["no_such_user", "no-such-user-u11"]},
    )
    assert api.request("GET", f"/api/users/{first}")[0] == 404  # deleted before the stop
    assert api.request("POST", "/api/users/bulk-delete", {"users": [second]})[0] == 204
    assert api.request("GET", f"/api/users/{second}")[0] == 404


def test_permission_change_applies_to_open_connections(target: tuple[Api, int]) -> None:
    api, port = target
    user = _name("u11p")
    api.request("PUT", f"/api/users/{user}", {"password": "pw", "tags": ""})
    api.request("PUT", f"/api/permissions/%2F/{user}", FULL)
    connection = _connect(port, user, "pw")
    try:
        channel = connection.channel()
        channel.queue_declare("", exclusive=True)
        narrow = {**FULL, "configure": "^only-this$"}
        assert api.request("PUT", f"/api/permissions/%2F/{user}", narrow)[0] == 204
        queue = _name("u11p-q")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.queue_declare(queue)
        assert (refused.value.reply_code, refused.value.reply_text) == (
            403,
            f"ACCESS_REFUSED - access to queue '{queue}' in vhost '/' refused for user '{user}'",
        )
        assert api.request("DELETE", f"/api/permissions/%2F/{user}")[0] == 204
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            connection.channel().queue_declare("only-this")
        assert refused.value.reply_code == 403
        assert api.request("PUT", f"/api/permissions/%2F/{user}", FULL)[0] == 201
        connection.channel().queue_declare("", exclusive=True)  # allowed again
    finally:
        if connection.is_open:
            connection.close()
        api.request("DELETE", f"/api/users/{user}")


def test_vhost_create_and_delete(
    target: tuple[Api, int], broker: tuple[BrokerProcess, Api]
) -> None:
    api, port = target
    vhost = _name("u11v")
    path = f"/api/vhosts/{vhost}"
    assert api.request("PUT", path, {"description": "for tests", "tags": "a,b"})[0] == 201
    assert api.request("PUT", path, {"description": "for tests", "tags": "a,b"})[0] == 204
    shown = api.get(path)
    assert (shown["description"], shown["tags"]) == ("for tests", ["a", "b"])
    # whoever creates a vhost may use it
    assert {"user": "guest", "vhost": vhost, **FULL} in api.get(f"{path}/permissions")
    connection = _connect(port, "guest", "guest", vhost)
    channel = connection.channel()
    channel.queue_declare("kept", durable=True)
    channel.basic_publish("", "kept", b"x", pika.BasicProperties(delivery_mode=2))
    assert api.request("DELETE", path)[0] == 204
    closed = _closed_by_broker(connection)
    # RabbitMQ says "is down" instead when the vhost's processes stop first (a race)
    expected = {f"CONNECTION_FORCED - vhost '{vhost}' is {word}" for word in ("deleted", "down")}
    assert closed[0] == 320 and closed[1] in expected
    if api is not REFERENCE:
        assert closed[1] == f"CONNECTION_FORCED - vhost '{vhost}' is deleted"
    assert api.request("GET", path)[0] == 404
    assert api.request("DELETE", path)[0] == 404
    assert all(p["vhost"] != vhost for p in api.get("/api/permissions"))
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        _connect(port, "guest", "guest", vhost)
    # made again, it is a new, empty vhost
    assert api.request("PUT", path, {})[0] == 201
    try:
        again = _connect(port, "guest", "guest", vhost)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            again.channel().queue_declare("kept", passive=True)
        again.close()
    finally:
        api.request("DELETE", path)
    if api is not REFERENCE:  # amqpd removed the vhost's files, without errors
        time.sleep(0.3)
        proc = broker[0]
        assert not (proc.data_dir / vhost).exists()
        problems = [line for line in proc.log_lines if "Traceback" in line or "ERROR" in line]
        assert problems == []


# Long enough that a base64 password hash cannot contain them by chance.
MAKER_PASSWORD = "maker-password-7f3c"
APP_PASSWORD = "app-password-changed-91d2"


def test_changes_survive_a_restart(tmp_path: Path) -> None:
    proc, api = start_mgmt_broker(tmp_path)
    try:
        api.request("PUT", "/api/vhosts/made", {"description": "kept"})
        api.request("PUT", "/api/users/maker", {"password": MAKER_PASSWORD, "tags": "management"})
        api.request("PUT", "/api/permissions/made/maker", {**FULL, "read": "^r"})
        # app is a config user
        api.request("PUT", "/api/users/app", {"password": APP_PASSWORD, "tags": ""})
        api.request("DELETE", "/api/users/watcher")  # a config user too
        connection = _connect(proc.port, "maker", MAKER_PASSWORD, "made")
        connection.channel().queue_declare("durable-q", durable=True)
        connection.close()
        saved = accounts_path(str(tmp_path / "data"))
        assert saved.stat().st_mode & 0o777 == 0o600
        stored = json.loads(saved.read_text())
        assert MAKER_PASSWORD not in json.dumps(stored) and APP_PASSWORD not in json.dumps(stored)
        proc.stop()
        proc = BrokerProcess(proc.data_dir, *proc.extra_args).start()
        api = Api(proc.http_port())
        assert api.get("/api/vhosts/made")["description"] == "kept"
        assert api.get("/api/permissions/made/maker")["read"] == "^r"
        users = {user["name"] for user in api.get("/api/users")}
        assert "watcher" not in users and {"maker", "app", "guest"} <= users
        connection = _connect(proc.port, "maker", MAKER_PASSWORD, "made")
        connection.channel().queue_declare("durable-q", passive=True)
        connection.close()
        _connect(proc.port, "app", APP_PASSWORD).close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            _connect(proc.port, "app", "a")
    finally:
        proc.stop()


def test_definitions_bring_users_vhosts_and_permissions(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    user, vhost = _name("u11d"), _name("u11dv")
    salt = b"\x01\x02\x03\x04"
    definitions = {
        "users": [
            {
                "name": user,
                "password_hash": hash_password("s3cret", "rabbit_password_hashing_sha512", salt),
                "hashing_algorithm": "rabbit_password_hashing_sha512",
                "tags": ["management"],
                "limits": {},
            }
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [{"user": user, "vhost": vhost, **FULL}],
        "queues": [
            {"name": "dq", "vhost": vhost, "durable": True, "auto_delete": False, "arguments": {}}
        ],
    }
    assert api.request("POST", "/api/definitions", definitions)[0] == 204
    connection = _connect(proc.port, user, "s3cret", vhost)
    connection.channel().queue_declare("dq", passive=True)
    connection.close()
    exported = api.get("/api/definitions")
    mine = next(item for item in exported["users"] if item["name"] == user)
    assert mine["password_hash"] == definitions["users"][0]["password_hash"]
    assert {"name": vhost} in exported["vhosts"]
    assert {"user": user, "vhost": vhost, **FULL} in exported["permissions"]
    api.request("DELETE", f"/api/vhosts/{vhost}")
    api.request("DELETE", f"/api/users/{user}")


@pytest.mark.skipif(not reference_up(), reason="no reference RabbitMQ on 127.0.0.1:15673")
def test_rabbitmq_export_imports_with_working_logins(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    user = _name("u11x")
    REFERENCE.request("PUT", f"/api/users/{user}", {"password": "from-rabbit", "tags": ""})
    REFERENCE.request("PUT", f"/api/permissions/%2F/{user}", FULL)
    try:
        exported = REFERENCE.get("/api/definitions")
    finally:
        REFERENCE.request("DELETE", f"/api/users/{user}")
    subset = {
        "rabbit_version": exported["rabbit_version"],
        "users": [item for item in exported["users"] if item["name"] == user],
        "vhosts": [{"name": "/"}],
        "permissions": [item for item in exported["permissions"] if item["user"] == user],
    }
    assert api.request("POST", "/api/definitions", subset)[0] == 204
    _connect(proc.port, user, "from-rabbit").close()
    api.request("DELETE", f"/api/users/{user}")


@pytest.mark.skipif(RABBITMQADMIN is None, reason="rabbitmqadmin is not installed")
def test_rabbitmqadmin_declares_users_vhosts_permissions(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    user, vhost = _name("u11a"), _name("u11av")

    def admin(*args: str) -> str:
        command = [RABBITMQADMIN, "--port", str(proc.http_port()), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "user declared" in admin("declare", "user", f"name={user}", "password=pw", "tags=")
    assert "vhost declared" in admin("declare", "vhost", f"name={vhost}")
    assert "permission declared" in admin(
        "declare", "permission", f"vhost={vhost}", f"user={user}",
        "configure=.*", "write=.*", "read=.*",
    )  # fmt: skip
    _connect(proc.port, user, "pw", vhost).close()
    users = json.loads(admin("-f", "raw_json", "list", "users"))
    assert any(item["name"] == user for item in users)
    assert "vhost deleted" in admin("delete", "vhost", f"name={vhost}")
    assert "user deleted" in admin("delete", "user", f"name={user}")
    assert api.request("GET", f"/api/users/{user}")[0] == 404


def test_amqpctl_account_commands(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    user, vhost = _name("u11c"), _name("u11cv")

    def ctl(*args: str) -> subprocess.CompletedProcess:
        url = f"http://127.0.0.1:{proc.http_port()}"
        command = [AMQPCTL, "--url", url, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    added = ctl("add_user", user, "pw")
    assert added.returncode == 0 and added.stdout.startswith(f'Adding user "{user}" ...\n')
    again = ctl("add_user", user, "pw")
    assert again.returncode == 70 and f'User "{user}" already exists' in again.stderr
    assert ctl("add_vhost", vhost).returncode == 0
    assert ctl("set_permissions", "-p", vhost, user, ".*", "^w", "r").returncode == 0
    listed = ctl("-q", "list_permissions", "-p", vhost)
    assert listed.returncode == 0
    assert f"{user}\t.*\t^w\tr" in listed.stdout.splitlines()
    assert listed.stdout.splitlines()[0] == "user\tconfigure\twrite\tread"
    mine = ctl("-q", "list_user_permissions", user)
    assert mine.stdout.splitlines() == ["vhost\tconfigure\twrite\tread", f"{vhost}\t.*\t^w\tr"]
    assert ctl("set_user_tags", user, "management", "monitoring").returncode == 0
    assert api.get(f"/api/users/{user}")["tags"] == ["management", "monitoring"]
    _connect(proc.port, user, "pw", vhost).close()  # tags kept the password
    assert ctl("change_password", user, "new").returncode == 0
    _connect(proc.port, user, "new", vhost).close()
    assert ctl("clear_permissions", "-p", vhost, user).returncode == 0
    assert api.get(f"/api/users/{user}/permissions") == []
    assert ctl("delete_vhost", vhost).returncode == 0
    missing = ctl("delete_vhost", vhost)
    assert missing.returncode == 65 and f"Virtual host '{vhost}' does not exist" in missing.stderr
    assert ctl("delete_user", user).returncode == 0
    gone = ctl("delete_user", user)
    assert gone.returncode == 67 and f'User "{user}" does not exist' in gone.stderr
    assert ctl("change_password", user, "x").returncode == 67


def test_accounts_rules(tmp_path: Path) -> None:
    """Run-time changes win over the config file and last; passwords are stored hashed."""
    config = Config(
        vhosts=("/", "cfg"),
        users=(
            User("guest", "guest", {"/": Permission()}, ("administrator",)),
            User("keep", "plain-secret", {"cfg": Permission()}),
        ),
    )
    path = accounts_path(str(tmp_path))
    accounts = Accounts(config, path)
    accounts.load()
    live = accounts.access("keep", "cfg")
    assert live is not None
    accounts.set_permission("keep", "cfg", Permission("^a", ".*", ".*"))
    assert live.permission == Permission("^a", ".*", ".*")  # an open connection follows
    accounts.delete_user("guest")
    accounts.put_vhost("new", {"description": "d"})
    accounts.delete_vhost("cfg")
    assert "plain-secret" not in path.read_text()
    assert live.permission == Permission("", "", "")
    again = Accounts(config, path)
    again.load()
    assert again.user("guest") is None
    assert again.vhosts() == ["/", "new"]
    keep = again.user("keep")
    assert keep is not None and keep.permission("cfg") is None
    assert keep.password_check().matches("plain-secret")
    assert quote("new") == "new" and again.vhost_meta("new") == {"description": "d"}


def test_definitions_file_at_startup_creates_users(tmp_path: Path) -> None:
    definitions = {
        "users": [
            {
                "name": "ci",
                "password_hash": hash_password("ci-pass"),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": "",
            }
        ],
        "vhosts": [{"name": "ci-vhost"}],
        "permissions": [{"user": "ci", "vhost": "ci-vhost", **FULL}],
        "queues": [{"name": "jobs", "vhost": "ci-vhost", "durable": True, "arguments": {}}],
    }
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(definitions))
    with BrokerProcess(tmp_path / "data", "--definitions-file", str(path)) as proc:
        connection = _connect(proc.port, "ci", "ci-pass", "ci-vhost")
        connection.channel().queue_declare("jobs", passive=True)
        connection.close()


def test_vhost_names_never_reach_outside_the_data_directory(
    broker: tuple[BrokerProcess, Api],
) -> None:
    proc, api = broker
    for name in ("..", "."):
        path = f"/api/vhosts/{quote(name, safe='').replace('.', '%2E')}"
        assert api.request("PUT", path, {})[0] == 201
        assert api.get(path)["name"] == name
        _connect(proc.port, "guest", "guest", name).close()
        assert api.request("DELETE", path)[0] == 204
    assert (proc.data_dir / "%2F").is_dir() and proc.data_dir.parent.is_dir()
    assert api.request("PUT", "/api/vhosts/", {})[0] == 405
    _connect(proc.port, "guest", "guest").close()
