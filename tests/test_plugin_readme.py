"""The README's "Testing your app with amqpd" snippets work as printed.

Each snippet follows a `<!-- tested: NAME -->` marker. Python snippets are run (pytest ones in
a throwaway project with `pytester`, the unittest one as a script); the CI service snippets
are parsed and checked against what the image actually honours.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
SNIPPET = re.compile(r"<!-- tested: ([\w-]+) -->\n```(\w+)\n(.*?)```", re.S)
QUIET = ("-p", "no:cacheprovider", "-p", "no:asyncio")


def snippets() -> dict[str, str]:
    return {name: code for name, _, code in SNIPPET.findall((REPO / "README.md").read_text())}


def test_every_marked_snippet_is_found() -> None:
    names = set(snippets())
    assert names == {
        "pytest-example",
        "unittest-example",
        "github-actions",
        "gitlab-ci",
        "pytest-rabbitmq-shim",
        "controls-example",
    }


def test_pytest_example(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_readme=snippets()["pytest-example"])
    pytester.runpytest_subprocess(*QUIET, timeout=120).assert_outcomes(passed=3)


def test_controls_example(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_readme=snippets()["controls-example"])
    pytester.runpytest_subprocess(*QUIET, timeout=120).assert_outcomes(passed=2)


def test_pytest_rabbitmq_shim(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(snippets()["pytest-rabbitmq-shim"])
    pytester.makepyfile(
        """
        def test_old_fixture_name(rabbitmq):
            channel = rabbitmq.channel()
            assert channel.queue_declare("left-over").method.message_count == 0
            channel.basic_publish("", "left-over", b"x")

        def test_isolated_from_the_last_test(rabbitmq):
            channel = rabbitmq.channel()
            assert channel.queue_declare("left-over").method.message_count == 0
        """
    )
    pytester.runpytest_subprocess(*QUIET, timeout=120).assert_outcomes(passed=2)


def test_unittest_example(tmp_path: Path) -> None:
    script = tmp_path / "test_orders.py"
    script.write_text(snippets()["unittest-example"])
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Ran 1 test" in result.stderr and "OK" in result.stderr


def honoured_variables() -> set[str]:
    """Variables the image's entrypoint reads, from its source."""
    source = (REPO / "docker" / "entrypoint.py").read_text()
    return set(re.findall(r'"(RABBITMQ_[A-Z_]+)"', source))


def test_ci_service_snippets_use_what_the_image_honours() -> None:
    github = yaml.safe_load(snippets()["github-actions"])["jobs"]["test"]
    service = github["services"]["amqp"]
    assert set(service["env"]) <= honoured_variables()
    assert "--health-cmd amqpd-healthcheck" in service["options"]
    user, password = (
        service["env"]["RABBITMQ_DEFAULT_USER"],
        service["env"]["RABBITMQ_DEFAULT_PASS"],
    )
    assert github["env"]["AMQP_URL"] == f"amqp://{user}:{password}@localhost:5672/%2F"
    assert service["ports"] == ["5672:5672"]

    gitlab = yaml.safe_load(snippets()["gitlab-ci"])["test"]
    variables = gitlab["variables"]
    alias = gitlab["services"][0]["alias"]
    assert {k for k in variables if k.startswith("RABBITMQ_")} <= honoured_variables()
    user, password = variables["RABBITMQ_DEFAULT_USER"], variables["RABBITMQ_DEFAULT_PASS"]
    assert variables["AMQP_URL"] == f"amqp://{user}:{password}@{alias}:5672/%2F"
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "/usr/local/bin/amqpd-healthcheck" in dockerfile


def test_compose_file_matches_the_image() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    service = compose["services"]["amqpd"]
    assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    rabbit = {k for k in service["environment"] if k.startswith("RABBITMQ_")}
    assert rabbit <= honoured_variables()
    assert service["volumes"] == ["amqpd-data:/var/lib/amqpd"]
