"""The shipped pytest plugin (amqpd.testing.plugin), used by throwaway test projects.

Each test writes a small project with `pytester` and runs pytest on it in a subprocess, as a
user's CI would: the plugin is found through its `pytest11` entry point, its brokers are real
amqpd processes and the project's tests talk to them with pika.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pika
import pytest

from amqpd.testing import Broker
from tests.broker_process import clean_env

pytest_plugins = ["pytester"]

RUN_TIMEOUT = 120
QUIET = ("-p", "no:cacheprovider", "-p", "no:asyncio")  # the throwaway projects need neither


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*QUIET, *args, timeout=RUN_TIMEOUT)


def gone(pid: int) -> bool:
    """True if no process `pid` runs (a zombie counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_session_broker_round_trip_with_pika(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pika

        def test_round_trip(amqpd_url):
            conn = pika.BlockingConnection(pika.URLParameters(amqpd_url))
            ch = conn.channel()
            ch.queue_declare("plugin-q")
            ch.basic_publish("", "plugin-q", b"hello")
            assert ch.basic_get("plugin-q", auto_ack=True)[2] == b"hello"
            conn.close()

        def test_same_broker_for_the_session(amqpd, amqpd_url):
            assert amqpd.url == amqpd_url
            assert amqpd.host == "127.0.0.1" and amqpd.port > 0 and amqpd.vhost == "/"
            assert amqpd.management_url.startswith("http://127.0.0.1:")  # a free port
            conn = pika.BlockingConnection(pika.URLParameters(amqpd_url))
            ok = conn.channel().queue_declare("plugin-q", passive=True)
            assert ok.method.message_count == 0
            conn.close()
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_no_broker_unless_a_test_asks(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from amqpd.testing.plugin import SESSION_KEY

        def pytest_sessionfinish(session):
            started = session.config.stash[SESSION_KEY].started
            session.config.rootpath.joinpath("started.txt").write_text(str(started))
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broker():  # the repo's own suite has a fixture of this name
            return "mine"

        def test_plain(broker):
            assert broker == "mine"
        """
    )
    run(pytester).assert_outcomes(passed=1)
    assert (pytester.path / "started.txt").read_text() == "0"


def test_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_wants_a_broker(amqpd):\n    pass\n")
    result = run(pytester, "-p", "no:amqpd")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'amqpd' not found*"])


def test_each_test_gets_a_fresh_vhost(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pika, pytest

        @pytest.mark.parametrize("round", range(3))
        def test_isolated(amqpd_vhost, amqpd, round):
            assert amqpd_vhost.port == amqpd.port and amqpd_vhost.vhost != "/"
            conn = pika.BlockingConnection(pika.URLParameters(amqpd_vhost.url))
            ch = conn.channel()
            ok = ch.queue_declare("shared-name", durable=True)
            assert ok.method.message_count == 0  # nothing left by an earlier test
            ch.basic_publish("", "shared-name", b"left behind")
            conn.close()

        def test_asked_for_late(request):
            # Not counted at collection: served by an extra broker's batch of vhosts.
            endpoint = request.getfixturevalue("amqpd_vhost")
            conn = pika.BlockingConnection(pika.URLParameters(endpoint.url))
            assert conn.channel().queue_declare("shared-name").method.message_count == 0
            conn.close()
        """
    )
    run(pytester).assert_outcomes(passed=4)


def test_factory_restart_kill_and_settings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pika, pytest

        def publish_persistent(url, queue, body):
            conn = pika.BlockingConnection(pika.URLParameters(url))
            ch = conn.channel()
            ch.confirm_delivery()
            ch.queue_declare(queue, durable=True)
            ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
            conn.close()

        def get(url, queue):
            conn = pika.BlockingConnection(pika.URLParameters(url))
            method, _, body = conn.channel().basic_get(queue, auto_ack=True)
            conn.close()
            return body

        @pytest.mark.parametrize("kill", [False, True])
        def test_restart_keeps_durable_messages(amqpd_factory, tmp_path, kill):
            broker = amqpd_factory(
                vhosts=["/", "orders"], users={"app": "s3cret"},
                data_dir=tmp_path / "data", fsync="always",
            )
            url = broker.url_for(vhost="orders")
            assert url.startswith("amqp://app:s3cret@127.0.0.1:")
            publish_persistent(url, "durable-q", b"kept")
            port, pid = broker.port, broker.pid
            broker.restart(kill=kill)
            assert broker.port == port and broker.pid != pid
            assert get(url, "durable-q") == b"kept"
            assert broker.returncode == (-9 if kill else 0)

        def test_two_factory_brokers_are_separate(amqpd_factory):
            one, two = amqpd_factory(), amqpd_factory()
            assert one.port != two.port
            publish_persistent(one.url, "only-on-one", b"x")
            conn = pika.BlockingConnection(pika.URLParameters(two.url))
            with pytest.raises(pika.exceptions.ChannelClosedByBroker):
                conn.channel().queue_declare("only-on-one", passive=True)
            conn.close()

        def test_clients_see_the_kill(amqpd_factory):
            broker = amqpd_factory()
            conn = pika.BlockingConnection(pika.URLParameters(broker.url))
            broker.kill()
            assert not broker.running
            with pytest.raises(pika.exceptions.AMQPConnectionError):
                conn.channel().queue_declare("after-kill")
        """
    )
    run(pytester).assert_outcomes(passed=4)


def test_failing_test_report_carries_the_broker_log(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pika

        def test_wrong_password(amqpd):
            params = pika.URLParameters(f"amqp://guest:wrong@{amqpd.host}:{amqpd.port}/%2F")
            pika.BlockingConnection(params)

        def test_passing_has_no_log(amqpd):
            assert amqpd.port
        """
    )
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "amqpd log (amqpd on port" in output
    assert "login refused for 127.0.0.1" in output
    assert output.count("amqpd log (") == 1  # only the failing test's report


def test_command_line_options_and_ini_keys(pytester: pytest.Pytester, tmp_path: Path) -> None:
    with Broker() as probe:  # find a port that is free now
        port = probe.port
    pytester.makeini(
        f"""
        [pytest]
        amqpd_port = {port}
        amqpd_log_level = warning
        """
    )
    pytester.makepyfile(
        f"""
        def test_port_from_ini(amqpd):
            assert amqpd.port == {port}
            assert "log_level: warning" in amqpd.config_path.read_text()
        """
    )
    run(pytester).assert_outcomes(passed=1)
    amqpd_bin = Path(sys.executable).with_name("amqpd")
    pytester.makepyfile(
        f"""
        def test_flags_beat_ini(amqpd):
            assert amqpd.port != {port}
            assert amqpd.program == {str(amqpd_bin)!r}
            assert amqpd.wait_for_log("amqpd ready")
        """
    )
    run(pytester, "--amqpd-port", "0", "--amqpd-bin", str(amqpd_bin)).assert_outcomes(passed=1)


def test_external_broker_url(pytester: pytest.Pytester) -> None:
    """--amqpd-url: the fixtures point at a broker the plugin did not start (here an amqpd
    from this test; in real use e.g. a RabbitMQ, so one suite checks both)."""
    with Broker(vhosts=["/", "ext"], users={"someone": "pw"}) as outside:
        pytester.makepyfile(
            f"""
            import pika
            from amqpd.testing.plugin import SESSION_KEY

            def test_uses_the_external_broker(amqpd, amqpd_url, pytestconfig):
                assert amqpd.port == {outside.port} and amqpd.vhost == "ext"
                assert amqpd_url == {outside.url_for(vhost="ext")!r}
                pika.BlockingConnection(pika.URLParameters(amqpd_url)).close()
                assert pytestconfig.stash[SESSION_KEY].started == 0

            def test_vhost_without_management_api_is_shared(amqpd_vhost, amqpd):
                assert amqpd_vhost == amqpd
            """
        )
        result = run(pytester, "--amqpd-url", outside.url_for(vhost="ext"))
        result.assert_outcomes(passed=2, warnings=1)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_leaves_no_broker(pytester: pytest.Pytester, signum: int) -> None:
    pidfile = pytester.path / "broker.pid"
    pytester.makepyfile(
        f"""
        import time
        from pathlib import Path

        def test_hangs(amqpd, amqpd_factory):
            extra = amqpd_factory()
            Path({str(pidfile)!r}).write_text(f"{{amqpd.pid}} {{extra.pid}}")
            time.sleep(600)  # only the signal ends it within the waits below
        """
    )
    output = pytester.path / "inner.out"
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", *QUIET, "-q"],
        cwd=pytester.path,
        stdout=output.open("w"),
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
        # As from a terminal, even if this run was started where SIGINT is ignored (a
        # background job of a script): Python then leaves Ctrl-C ignored in its children.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not pidfile.exists() or len(pidfile.read_text().split()) < 2:
            assert inner.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        pids = [int(pid) for pid in pidfile.read_text().split()]
        assert not any(gone(pid) for pid in pids)
        inner.send_signal(signum)
        try:
            inner.wait(90)  # stopping two brokers on a loaded box has taken over 30 s
        except subprocess.TimeoutExpired:
            inner.send_signal(signal.SIGABRT)  # pytest's faulthandler prints where it hangs
            inner.wait(10)
            pytest.fail(f"pytest still ran 90 s after {signum!r}:\n{output.read_text()[-6000:]}")
        # SIGKILL leaves no teardown: the guard sees its stdin pipe close and stops the broker.
        assert all(wait_gone(pid, 30) for pid in pids), pids
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()


def test_broker_class_context_manager() -> None:
    """The same machinery without pytest: `with Broker() as broker:` in a script."""
    with Broker(vhosts=["/", "v"]) as broker:
        assert broker.running and broker.ready_seconds is not None
        conn = pika.BlockingConnection(pika.URLParameters(broker.url_for(vhost="v")))
        conn.channel().queue_declare("ctx-q")
        conn.close()
        pid = broker.pid
        assert pid is not None
    assert not broker.running and wait_gone(pid, 5)
    assert "amqpd ready: listening on 127.0.0.1:" in broker.log_text()


@pytest.mark.skipif(
    not (os.environ.get("AMQPD_TEST_URL") and os.environ.get("AMQPD_TEST_MANAGEMENT_URL")),
    reason="needs a RabbitMQ: AMQPD_TEST_URL=host:port AMQPD_TEST_MANAGEMENT_URL=http://host:port",
)
def test_fresh_vhosts_on_an_external_rabbitmq(pytester: pytest.Pytester) -> None:
    """--amqpd-url plus --amqpd-management-url: each test's vhost is created and deleted
    through the management API, so the same isolated tests run on RabbitMQ."""
    pytester.makepyfile(
        """
        import pika, pytest

        @pytest.mark.parametrize("round", range(2))
        def test_isolated(amqpd_vhost, round):
            assert amqpd_vhost.vhost.startswith("amqpd-test-")
            conn = pika.BlockingConnection(pika.URLParameters(amqpd_vhost.url))
            ch = conn.channel()
            assert ch.queue_declare("shared-name").method.message_count == 0
            ch.basic_publish("", "shared-name", b"left behind")
            conn.close()
        """
    )
    url = os.environ["AMQPD_TEST_URL"]
    management = os.environ["AMQPD_TEST_MANAGEMENT_URL"]
    result = run(pytester, "--amqpd-url", url, "--amqpd-management-url", management)
    result.assert_outcomes(passed=2)


def test_guard_stops_the_broker_cleanly_when_its_parent_goes(tmp_path: Path) -> None:
    """The guard's contract: EOF on stdin (the parent's end closed) is a graceful stop."""
    env = clean_env()
    args = ["--port", "0", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "amqpd.testing.guard", "--", *args],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stderr is not None
    try:
        for line in proc.stderr:
            if "amqpd ready" in line:
                break
        proc.stdin.close()
        assert proc.wait(10) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
