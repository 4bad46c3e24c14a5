"""The dashboard in a real browser: headless Chromium loads `/`, runs its script, and shows
what the API says (a queue filled by pika appears with its depth; connections listed).

Skipped when no `chromium` is installed (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pika
import pytest

from tests.broker_process import BrokerProcess
from tests.mgmt_client import Api, start_mgmt_broker

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless browser test needs chromium (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, Api]]:
    proc, api = start_mgmt_broker(tmp_path_factory.mktemp("amqpd-dash"))
    try:
        yield proc, api
    finally:
        proc.stop()


def render(port: int, user: str = "guest", password: str = "guest") -> str:
    """The page's DOM after its script has fetched and drawn (virtual time: no sleeping)."""
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=4000",
            "--dump-dom",
            f"http://{user}:{password}@127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def row(dom: str, key: str) -> list[str]:
    match = re.search(rf'<tr data-key="{re.escape(html.escape(key))}">(.*?)</tr>', dom)
    assert match, f"no row {key!r} in the dashboard"
    return [html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))]


def test_dashboard_shows_queues_and_connections(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    name = f"dash-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1",
            proc.port,
            credentials=pika.PlainCredentials("guest", "guest"),
            client_properties={"connection_name": f"{name}-conn"},
        )
    )
    channel = connection.channel()
    channel.queue_declare(name)
    for _ in range(7):
        channel.basic_publish("", name, b"x")
    connection.process_data_events(0.1)
    dom = render(proc.http_port())
    assert '<span id="error"></span>' in dom
    # vhost, name, ready, unacked, total, consumers, ...: as the API says
    queue = api.get(f"/api/queues/%2F/{name}")
    assert row(dom, f"//{name}")[:6] == ["/", name, "7", "0", "7", "0"]
    assert queue["messages_ready"] == 7
    listed = [c for c in api.get("/api/connections") if c["user_provided_name"] == f"{name}-conn"]
    shown = row(dom, listed[0]["name"])
    assert shown[1:4] == [f"{name}-conn", "guest", "/"]
    connection.close()


def test_dashboard_needs_a_management_user(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    status, _body, headers = api.request("GET", "/", user=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert api.request("GET", "/", user=("plain", "p"))[0] == 401
