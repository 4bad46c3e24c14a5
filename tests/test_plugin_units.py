"""Sans-IO parts of amqpd.testing: URLs, the generated config, the vhost pool."""

from __future__ import annotations

import pytest
import yaml

from amqpd.config import load_config
from amqpd.testing import BrokerSettings, Endpoint
from amqpd.testing.vhosts import VhostPool


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/%2F", Endpoint("127.0.0.1", 5672, "/")),
        ("amqp://u%40x:p%3Aw@h:1/v%2Fw", Endpoint("h", 1, "v/w", "u@x", "p:w")),
        ("amqp://h", Endpoint("h", 5672, "/")),
        ("amqp://h/", Endpoint("h", 5672, "")),  # RabbitMQ's URI spec: empty path, empty vhost
        ("127.0.0.1:5673", Endpoint("127.0.0.1", 5673, "/")),
        ("amqp://[::1]:5673/orders", Endpoint("::1", 5673, "orders")),
    ],
)
def test_endpoint_parses_amqp_urls(url: str, expected: Endpoint) -> None:
    assert Endpoint.from_url(url) == expected
    assert Endpoint.from_url(expected.url) == expected


def test_endpoint_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="amqp://"):
        Endpoint.from_url("amqps://h:5671/")


def test_endpoint_url_encodes_every_part() -> None:
    endpoint = Endpoint("::1", 1, "/", "a b", "p/w")
    assert endpoint.url == "amqp://a%20b:p%2Fw@[::1]:1/%2F"
    assert endpoint.with_vhost("x").url.endswith("/x")


def test_settings_make_a_config_amqpd_accepts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = BrokerSettings(
        vhosts=["/", "orders"],
        users={"app": "s3cret", "ops": "pw"},
        fsync="interval",
        extra={"heartbeat": 5},
    )
    path = tmp_path / "amqpd.yaml"
    path.write_text(settings.to_yaml())
    config = load_config(["--config", str(path)], environ={})
    assert config.vhosts == ("/", "orders") and config.fsync == "interval"
    assert config.heartbeat == 5
    app = config.user("app")
    assert app is not None and app.password == "s3cret"
    assert set(app.permissions) == {"/", "orders"}
    assert settings.first_login() == ("app", "s3cret")


def test_settings_take_full_user_entries() -> None:
    entry = {"name": "ro", "password": "x", "permissions": {"/": {"configure": "", "write": ""}}}
    data = yaml.safe_load(BrokerSettings(users=[entry]).to_yaml())
    assert data["users"] == [entry]


def test_vhost_pool_hands_out_each_vhost_once() -> None:
    pool = VhostPool(batch=2)
    names = pool.names(2)
    assert names == ["amqpd-test-0", "amqpd-test-1"]
    pool.add(Endpoint(port=1), names)
    taken = [pool.take(), pool.take()]
    assert [e.vhost for e in taken if e] == names and pool.take() is None
    assert pool.handed_out == 2
    assert pool.names(pool.batch) == ["amqpd-test-2", "amqpd-test-3"]  # never a name again
