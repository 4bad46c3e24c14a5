"""Unit tests of amqpd.config.load_config: defaults, precedence and every validation error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from amqpd.config import Config, ConfigError, Permission, User, load_config

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "amqpd.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def load_yaml(tmp_path: Path, text: str, *argv: str, **env: str) -> Config:
    return load_config(["--config", write(tmp_path, text), *argv], env)


def error_of(argv: list[str], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(argv, env or {})
    message = str(info.value)
    assert "\n" not in message
    return message


def yaml_error(tmp_path: Path, text: str) -> str:
    return error_of(["--config", write(tmp_path, text)])


# --- defaults ----------------------------------------------------------------------------------


def test_defaults_without_any_source() -> None:
    config = load_config([], {})
    assert config == Config()
    assert (config.bind, config.port, config.data_dir) == ("127.0.0.1", 5672, "./amqpd-data")
    assert (config.log_level, config.heartbeat) == ("info", 60)
    assert (config.frame_max, config.channel_max) == (131072, 2047)
    assert config.max_message_size == 128 * 1024 * 1024
    assert config.handshake_timeout == 10.0
    assert (config.fsync, config.fsync_interval_ms) == ("always", 200)
    assert config.vhosts == ("/",)
    assert [u.name for u in config.users] == ["guest"]
    guest = config.user("guest")
    assert guest is not None and guest.password == "guest"
    assert guest.permission("/") == Permission(".*", ".*", ".*")
    assert guest.permission("other") is None
    assert config.user("nobody") is None


def test_shipped_example_file_equals_the_defaults() -> None:
    assert load_config(["--config", str(REPO / "config" / "amqpd.yaml")], {}) == Config()


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    assert load_yaml(tmp_path, "# nothing here\n") == Config()


def test_unrelated_amqpd_environment_variables_are_ignored() -> None:
    assert load_config([], {"AMQPD_TEST_URL": "127.0.0.1:5673", "HOME": "/x"}) == Config()


def test_empty_environment_value_counts_as_unset() -> None:
    assert load_config([], {"AMQPD_PORT": "", "AMQPD_BIND": "  "}) == Config()


# --- immutability --------------------------------------------------------------------------------


def test_config_is_frozen_and_hashable() -> None:
    config = load_config([], {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    assert hash(config) == hash(Config())
    assert {config: 1}[Config()] == 1


def test_user_permissions_cannot_be_mutated() -> None:
    source = {"/": Permission()}
    user = User("u", "p", source)
    source["/other"] = Permission("", "", "")
    assert list(user.permissions) == ["/"]
    with pytest.raises(TypeError):
        user.permissions["/x"] = Permission()  # type: ignore[index]
    assert hash(user) == hash(User("u", "p", {"/": Permission()}))


def test_password_is_not_in_repr() -> None:
    assert "s3cret" not in repr(User("u", "s3cret", {}))


# --- precedence: flags > environment > file > defaults ------------------------------------------


def test_yaml_overrides_defaults(tmp_path: Path) -> None:
    config = load_yaml(
        tmp_path,
        "bind: 0.0.0.0\nport: 5800\ndata_dir: /var/lib/amqpd\nlog_level: debug\n"
        "heartbeat: 0\nframe_max: 4096\nchannel_max: 1\nmax_message_size: 1024\n"
        "handshake_timeout: 3\nfsync: interval\nfsync_interval_ms: 50\n",
    )
    assert config == Config(
        bind="0.0.0.0",
        port=5800,
        data_dir="/var/lib/amqpd",
        log_level="debug",
        heartbeat=0,
        frame_max=4096,
        channel_max=1,
        max_message_size=1024,
        handshake_timeout=3.0,
        fsync="interval",
        fsync_interval_ms=50,
    )
    assert isinstance(config.handshake_timeout, float)


def test_environment_overrides_yaml(tmp_path: Path) -> None:
    config = load_yaml(
        tmp_path,
        "port: 5800\nbind: 0.0.0.0\nheartbeat: 30\nfsync: never\n",
        AMQPD_PORT="5900",
        AMQPD_HEARTBEAT="10",
        AMQPD_FSYNC="interval",
    )
    assert (config.port, config.heartbeat, config.fsync) == (5900, 10, "interval")
    assert config.bind == "0.0.0.0"  # not overridden, the file still counts


def test_flags_override_environment_and_yaml(tmp_path: Path) -> None:
    config = load_yaml(
        tmp_path,
        "port: 5800\nbind: 10.0.0.1\ndata_dir: /from-file\nlog_level: error\n",
        "--port",
        "0",
        "--bind",
        "::1",
        "--data-dir",
        "/from-flag",
        "--log-level",
        "debug",
        AMQPD_PORT="5900",
        AMQPD_BIND="0.0.0.0",
        AMQPD_DATA_DIR="/from-env",
        AMQPD_LOG_LEVEL="warning",
    )
    assert (config.port, config.bind) == (0, "::1")
    assert (config.data_dir, config.log_level) == ("/from-flag", "debug")


def test_every_scalar_key_has_an_environment_variable() -> None:
    env = {
        "AMQPD_BIND": "0.0.0.0",
        "AMQPD_PORT": "1",
        "AMQPD_DATA_DIR": "/d",
        "AMQPD_LOG_LEVEL": "WARNING",
        "AMQPD_HEARTBEAT": "5",
        "AMQPD_FRAME_MAX": "8192",
        "AMQPD_CHANNEL_MAX": "10",
        "AMQPD_MAX_MESSAGE_SIZE": "100",
        "AMQPD_HANDSHAKE_TIMEOUT": "0.5",
        "AMQPD_FSYNC": "Never",
        "AMQPD_FSYNC_INTERVAL_MS": "7",
    }
    assert load_config([], env) == Config(
        bind="0.0.0.0",
        port=1,
        data_dir="/d",
        log_level="warning",
        heartbeat=5,
        frame_max=8192,
        channel_max=10,
        max_message_size=100,
        handshake_timeout=0.5,
        fsync="never",
        fsync_interval_ms=7,
    )


def test_config_flag_beats_amqpd_config_env(tmp_path: Path) -> None:
    by_flag = tmp_path / "flag.yaml"
    by_flag.write_text("port: 1111\n")
    by_env = tmp_path / "env.yaml"
    by_env.write_text("port: 2222\n")
    assert load_config([], {"AMQPD_CONFIG": str(by_env)}).port == 2222
    assert load_config(["--config", str(by_flag)], {"AMQPD_CONFIG": str(by_env)}).port == 1111


# --- vhosts and users ----------------------------------------------------------------------------


def test_users_and_vhosts_from_yaml(tmp_path: Path) -> None:
    config = load_yaml(
        tmp_path,
        """
vhosts: [/, prod]
users:
  - name: admin
    password: pw
    permissions:
      /: {}
      prod: {configure: "^$", write: "^amq\\\\.", read: ""}
  - name: nobody
    password: ""
""",
    )
    assert config.vhosts == ("/", "prod")
    assert [u.name for u in config.users] == ["admin", "nobody"]  # guest replaced
    admin = config.user("admin")
    assert admin is not None
    assert admin.permission("/") == Permission()
    assert admin.permission("prod") == Permission("^$", "^amq\\.", "")
    nobody = config.user("nobody")
    assert nobody is not None and nobody.password == "" and dict(nobody.permissions) == {}


def test_empty_users_list_means_nobody_can_log_in(tmp_path: Path) -> None:
    assert load_yaml(tmp_path, "users: []\n").users == ()


# --- validation errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"AMQPD_PORT": "65536"}, "port must be between 0 and 65535"),
        ({"AMQPD_PORT": "-1"}, "port must be between 0 and 65535"),
        ({"AMQPD_PORT": "fifty"}, "port must be an integer"),
        ({"AMQPD_LOG_LEVEL": "verbose"}, "log_level must be one of debug, info, warning, error"),
        ({"AMQPD_FRAME_MAX": "4095"}, "frame_max must be between 4096"),
        ({"AMQPD_CHANNEL_MAX": "0"}, "channel_max must be between 1 and 65535"),
        ({"AMQPD_CHANNEL_MAX": "65536"}, "channel_max must be between 1 and 65535"),
        ({"AMQPD_HEARTBEAT": "-5"}, "heartbeat must be between 0 and 65535"),
        ({"AMQPD_MAX_MESSAGE_SIZE": "0"}, "max_message_size must be >= 1"),
        ({"AMQPD_HANDSHAKE_TIMEOUT": "0"}, "handshake_timeout must be a finite number > 0"),
        ({"AMQPD_HANDSHAKE_TIMEOUT": "inf"}, "handshake_timeout must be a finite number > 0"),
        ({"AMQPD_HANDSHAKE_TIMEOUT": "soon"}, "handshake_timeout must be a number"),
        ({"AMQPD_FSYNC": "sometimes"}, "fsync must be one of always, interval, never"),
        ({"AMQPD_FSYNC_INTERVAL_MS": "0"}, "fsync_interval_ms must be >= 1"),
    ],
)
def test_bad_environment_values(env: dict[str, str], fragment: str) -> None:
    message = error_of([], env)
    assert fragment in message
    assert f"from {next(iter(env))}" in message


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--port", "x"], "port must be an integer, got 'x' (from --port)"),
        (["--port", "70000"], "(from --port)"),
        (["--log-level", "loud"], "log_level must be one of"),
        (["--bind", ""], "bind must not be empty"),
        (["--data-dir", ""], "data_dir must not be empty"),
        (["--frame-max", "9000"], "unrecognized arguments: --frame-max"),
        (["--port"], "--port: expected one argument"),
        (["extra"], "unrecognized arguments: extra"),
    ],
)
def test_bad_flags(argv: list[str], fragment: str) -> None:
    assert fragment in error_of(argv)


def test_a_bad_environment_value_is_reported_even_if_a_flag_overrides_it() -> None:
    assert "from AMQPD_PORT" in error_of(["--port", "1"], {"AMQPD_PORT": "x"})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("port: 70000\n", "port must be between 0 and 65535, got 70000 (in "),
        ("port: '5672'\n", "port must be an integer, got '5672'"),
        ("port: true\n", "port must be an integer, got True"),
        ("port: 5672.5\n", "port must be an integer"),
        ("bind: 0\n", "bind must be a string"),
        ("log_level: trace\n", "log_level must be one of"),
        ("heartbeat: -1\n", "heartbeat must be between 0 and 65535"),
        ("frame_max: 1024\n", "frame_max must be between 4096"),
        ("channel_max: 0\n", "channel_max must be between 1"),
        ("handshake_timeout: fast\n", "handshake_timeout must be a number"),
        ("fsync: true\n", "fsync must be a string"),
        ("fsync: weekly\n", "fsync must be one of always, interval, never"),
        ("prot: 5672\n", "unknown key 'prot'"),
        ("- port\n", "the top level must be a mapping"),
        ("port: [1\n", "YAML syntax error"),
        ("port: 1\n  bind: x\n", "line 2"),
        ("vhosts: []\n", "vhosts must be a non-empty list"),
        ("vhosts: /\n", "vhosts must be a non-empty list"),
        ("vhosts: [/, /]\n", "'/' is listed twice"),
        ("vhosts: [/, 3]\n", "names must be non-empty strings"),
        ("vhosts: [prod]\n", "vhosts leaves out '/', which the default user 'guest' needs"),
        ("users: {name: a}\n", "users must be a list"),
        ("users: [admin]\n", "users[0] must be a mapping"),
        ("users: [{password: p}]\n", "users[0].name must be a non-empty string"),
        ("users: [{name: a}]\n", "users[0] (a).password must be a string"),
        ("users: [{name: a, password: 1}]\n", "password must be a string"),
        ("users: [{name: a, password: p, role: x}]\n", "unknown key 'role' in users[0]"),
        (
            "users: [{name: a, password: p}, {name: a, password: q}]\n",
            "user 'a' is defined twice",
        ),
        (
            "users: [{name: a, password: p, permissions: [/]}]\n",
            "permissions must map vhost -> permission",
        ),
        (
            "users: [{name: a, password: p, permissions: {/x: {}}}]\n",
            "names vhost '/x', which is not in vhosts",
        ),
        (
            "users: [{name: a, password: p, permissions: {/: {read: '(' }}}]\n",
            "users[0] (a).permissions['/'] (in ",
        ),
        (
            "users: [{name: a, password: p, permissions: {/: {read: '[a-'}}}]\n",
            "read is not a valid regex '[a-'",
        ),
        (
            "users: [{name: a, password: p, permissions: {/: {write: 5}}}]\n",
            "write must be a string regex",
        ),
        (
            "users: [{name: a, password: p, permissions: {/: {admin: '.*'}}}]\n",
            "unknown key 'admin'",
        ),
        ("users: [{name: a, password: p, permissions: {/: '.*'}}]\n", "must be a mapping"),
    ],
)
def test_bad_yaml(tmp_path: Path, text: str, fragment: str) -> None:
    message = yaml_error(tmp_path, text)
    assert fragment in message
    assert str(tmp_path / "amqpd.yaml") in message


def test_permission_regex_error_names_the_field(tmp_path: Path) -> None:
    message = yaml_error(
        tmp_path, "users: [{name: a, password: p, permissions: {/: {configure: '*x'}}}]\n"
    )
    assert "configure is not a valid regex '*x'" in message


def test_missing_config_file() -> None:
    message = error_of(["--config", "/nonexistent/amqpd.yaml"])
    assert message.startswith("cannot read config file /nonexistent/amqpd.yaml")
    assert "No such file" in message


def test_missing_config_file_named_by_environment() -> None:
    message = error_of([], {"AMQPD_CONFIG": "/nonexistent/env.yaml"})
    assert "cannot read config file /nonexistent/env.yaml" in message


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    assert "cannot read config file" in error_of(["--config", str(tmp_path)])


def test_config_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"bind: \xff\xfe\n")
    message = error_of(["--config", str(path)])
    assert str(path) in message


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load_config(["--help"], {})
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--bind", "--port", "--data-dir", "--log-level"):
        assert flag in out
