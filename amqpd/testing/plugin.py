"""The pytest plugin (entry point `pytest11`): amqpd brokers as fixtures, nothing to configure.

Fixtures: `amqpd` (session: one broker on a free port, or the external `--amqpd-url`),
`amqpd_url`, `amqpd_vhost` (a fresh vhost per test), `amqpd_factory` (extra brokers with their
own settings, stopped after the test). No broker starts unless a test asks for one of these.
A failing test's report gets the log lines its brokers wrote while it ran. Options (flag, then
ini key): --amqpd-url/amqpd_url, --amqpd-management-url/amqpd_management_url,
--amqpd-port/amqpd_port, --amqpd-bin/amqpd_bin; ini only: amqpd_log_level, amqpd_fsync,
amqpd_startup_timeout.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from amqpd.testing.endpoint import Endpoint
from amqpd.testing.management import ManagementClient
from amqpd.testing.process import Broker
from amqpd.testing.vhosts import VhostPool

MAX_REPORT_LINES = 400
MAX_POOL = 200  # spare vhosts per broker: each adds ~5-10 ms to its start
VHOST_FIXTURE = "amqpd_vhost"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("amqpd", "amqpd test broker")
    options = (
        ("url", "URL", "use this running broker (amqp://user:pass@host:port/vhost), not amqpd"),
        ("management-url", "URL", "management API of the --amqpd-url broker, for amqpd_vhost"),
        ("port", "PORT", "port of the session broker (default 0: any free port)"),
        ("bin", "PATH", "amqpd executable to run (default: amqpd of this Python)"),
    )
    for name, metavar, text in options:
        key = "amqpd_" + name.replace("-", "_")
        group.addoption(f"--amqpd-{name}", dest=key, default=None, metavar=metavar, help=text)
        parser.addini(key, text)
    parser.addini("amqpd_log_level", "log level of started brokers (default info)", default="info")
    parser.addini("amqpd_fsync", "fsync policy of started brokers (default never)", default="never")
    parser.addini(
        "amqpd_startup_timeout", "seconds to wait for a broker's ready line", default="15"
    )


class AmqpdSession:
    """Plugin state for one pytest run: its options, the brokers it started, the vhost pool."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.brokers: list[Broker] = []
        self.started = 0  # brokers started in this run, for the curious (and the tests)
        self.vhost_tests = 0
        self.pool = VhostPool()

    def option(self, key: str) -> str | None:
        value = self.config.getoption(key, default=None) or self.config.getini(key)
        return str(value) if value else None

    @property
    def external(self) -> Endpoint | None:
        url = self.option("amqpd_url")
        if url is None:
            return None
        return Endpoint.from_url(url, management_url=self.option("amqpd_management_url"))

    def new_broker(self, **kwargs: Any) -> Broker:
        """A started broker with the run's defaults, tracked for log reports."""
        kwargs.setdefault("program", self.option("amqpd_bin"))
        kwargs.setdefault("startup_timeout", float(self.option("amqpd_startup_timeout") or 15))
        if "settings" not in kwargs:
            kwargs.setdefault("log_level", self.option("amqpd_log_level") or "info")
            kwargs.setdefault("fsync", self.option("amqpd_fsync") or "never")
        broker = Broker(**kwargs)
        self.brokers.append(broker)
        self.started += 1
        try:
            return broker.start()
        except BaseException:
            broker.close()
            raise

    def start_session_broker(self) -> Broker:
        names = self.pool.names(min(self.vhost_tests, MAX_POOL))
        broker = self.new_broker(
            name="amqpd", port=int(self.option("amqpd_port") or 0), vhosts=["/", *names]
        )
        self.pool.add(broker.endpoint, names)
        return broker

    def fresh_vhost(self) -> Endpoint:
        """An unused pool vhost; starts an overflow broker with another batch when empty."""
        endpoint = self.pool.take()
        if endpoint is None:
            still_wanted = self.vhost_tests - self.pool.handed_out
            names = self.pool.names(min(max(still_wanted, self.pool.batch), MAX_POOL))
            broker = self.new_broker(name="amqpd-vhosts", vhosts=["/", *names])
            self.pool.add(broker.endpoint, names)
            endpoint = self.pool.take()
            assert endpoint is not None
        return endpoint

    def close(self) -> None:
        for broker in self.brokers:
            broker.close()
        self.brokers.clear()


SESSION_KEY = pytest.StashKey[AmqpdSession]()
LOG_MARKS_KEY = pytest.StashKey[dict[int, int]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SESSION_KEY] = AmqpdSession(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is not None:
        state.close()


def _state(config: pytest.Config) -> AmqpdSession:
    return config.stash[SESSION_KEY]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Count the tests that will want a fresh vhost: the session broker is started with them."""
    wanted = sum(VHOST_FIXTURE in getattr(item, "fixturenames", ()) for item in items)
    # Under pytest-xdist each worker collects every test but runs only its share.
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    _state(config).vhost_tests = -(-wanted // max(workers, 1))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    brokers = _state(item.config).brokers
    item.stash[LOG_MARKS_KEY] = {id(broker): len(broker.log_lines) for broker in brokers}
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach to a failed test's report what each broker logged since the test began."""
    report = yield
    state = _state(item.config)
    if report.failed:
        marks = item.stash.get(LOG_MARKS_KEY, {})
        for broker in state.brokers:
            lines = broker.log_lines[marks.get(id(broker), 0) :]
            if lines:
                if len(lines) > MAX_REPORT_LINES:
                    lines = [f"... {len(lines) - MAX_REPORT_LINES} earlier lines left out"] + lines[
                        -MAX_REPORT_LINES:
                    ]
                title = f"amqpd log ({broker.name} on port {broker.port})"
                report.sections.append((title, "\n".join(lines)))
    if call.when == "teardown":
        state.brokers[:] = [broker for broker in state.brokers if not broker.closed]
    return report


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def amqpd(pytestconfig: pytest.Config) -> Iterator[Broker | Endpoint]:
    """The session's broker: a `Broker` (amqpd on a free port), or an `Endpoint` for
    `--amqpd-url`. Both have `.url`, `.host`, `.port`, `.vhost` and `.management_url`."""
    state = _state(pytestconfig)
    external = state.external
    if external is not None:
        yield external
        return
    broker = state.start_session_broker()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def amqpd_url(amqpd: Broker | Endpoint) -> str:
    """`amqp://guest:guest@127.0.0.1:PORT/%2F` of the session broker."""
    return amqpd.url


@pytest.fixture
def amqpd_vhost(amqpd: Broker | Endpoint, pytestconfig: pytest.Config) -> Iterator[Endpoint]:
    """An `Endpoint` (`.url`, `.vhost`, ...) of a vhost no other test has used.

    On amqpd: one of the vhosts the session broker was started with, one per test that uses
    this fixture (counted at collection). On an external broker: created for this test through
    its management API (`--amqpd-management-url`) and deleted afterwards; without one, the
    external URL's own vhost is shared, with a warning.
    """
    if isinstance(amqpd, Broker):
        yield _state(pytestconfig).fresh_vhost()
        return
    if amqpd.management_url is None:
        warnings.warn(
            "amqpd_vhost on an external broker without --amqpd-management-url: "
            "tests share its vhost",
            stacklevel=1,
        )
        yield amqpd
        return
    api = ManagementClient(amqpd.management_url, amqpd.user, amqpd.password)
    name = f"amqpd-test-{uuid.uuid4().hex[:12]}"
    api.create_vhost(name, grant_to=amqpd.user)
    try:
        yield amqpd.with_vhost(name)
    finally:
        api.delete_vhost(name)


@pytest.fixture
def amqpd_factory(pytestconfig: pytest.Config) -> Iterator[Callable[..., Broker]]:
    """Start extra brokers: `amqpd_factory(vhosts=[...], users={...}, data_dir=..., fsync=...)`
    returns a started `Broker` (see amqpd.testing.Broker for every keyword); each is killed
    and its private files removed when the test ends (a given data_dir is kept).
    `restart()`, `restart(kill=True)`, `kill()`, `stop()` and `start()` act on it."""
    state = _state(pytestconfig)
    started: list[Broker] = []

    def factory(**kwargs: Any) -> Broker:
        kwargs.setdefault("name", f"amqpd_factory[{len(started)}]")
        broker = state.new_broker(**kwargs)
        started.append(broker)
        return broker

    try:
        yield factory
    finally:
        for broker in started:
            broker.kill()  # the test is over: no 3 s grace for clients it left open
            broker.close()
