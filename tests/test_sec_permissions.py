"""Permission regexes run as RabbitMQ runs them: over the name's bytes, ASCII classes (10.7).

RabbitMQ matches with PCRE without its unicode option, so `\\w`, `\\d` and `\\s` are ASCII
only and `.` matches one byte of a UTF-8 name. Checked against RabbitMQ 3.10 with the same
patterns (a user set up with rabbitmqctl): every case below answered the same there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.broker_process import BrokerProcess, external_broker
from tests.sec_broker import own_broker

PATTERN = r"^app\.\w+$|^b\.\d$|^c\.\s$|^d\..$"
CONFIG = f"""
users:
  - name: ascii-user
    password: pw
    permissions:
      /: {{configure: '{PATTERN}', write: ".*", read: ".*"}}
"""


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    if external_broker() is not None:
        pytest.skip("needs its own users; checked against RabbitMQ by hand (see docstring)")
    path: Path = tmp_path_factory.mktemp("perm")
    (path / "amqpd.yaml").write_text(CONFIG)
    with own_broker(path / "data", "--config", str(path / "amqpd.yaml")) as proc:
        yield proc


@pytest.mark.parametrize(
    ("name", "granted"),
    [
        ("app.x_1", True),
        ("app.é", False),
        ("app.٣", False),
        ("b.3", True),
        ("b.٣", False),
        ("c. ", True),
        ("c.\u00a0", False),
        ("d.e", True),
        ("d.é", False),  # two bytes in UTF-8: `.` matches one
    ],
)
def test_ascii_classes(proc: BrokerProcess, name: str, granted: bool) -> None:
    params = pika.ConnectionParameters(
        proc.host, proc.port, credentials=pika.PlainCredentials("ascii-user", "pw")
    )
    conn = pika.BlockingConnection(params)
    try:
        channel = conn.channel()
        if granted:
            channel.queue_declare(name, auto_delete=True)
        else:
            with pytest.raises(ChannelClosedByBroker) as refused:
                channel.queue_declare(name, auto_delete=True)
            assert refused.value.reply_code == 403
            assert refused.value.reply_text == (
                f"ACCESS_REFUSED - access to queue '{name}' in vhost '/' refused for user "
                "'ascii-user'"
            )
    finally:
        conn.close()
