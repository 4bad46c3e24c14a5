"""Daemon configuration: YAML file, AMQPD_* environment and flags -> one frozen `Config`.

`load_config(argv, environ)` merges, in rising precedence, the defaults, the YAML file
(`--config` or AMQPD_CONFIG), AMQPD_<KEY> environment variables and command-line flags,
validates everything and returns an immutable `Config`, or raises `ConfigError` whose
message names the offending key and where it came from. No module-level state.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from amqpd.memory import DEFAULT_WATERMARK, parse_watermark
from amqpd.passwords import NO_PASSWORD, SHA256, BadPasswordHash, NoPassword, PasswordCheck
from amqpd.store.log import FSYNC_POLICIES  # the store defines what its policies are

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
USER_TAGS = ("administrator", "monitoring", "policymaker", "management", "impersonator")


class ConfigError(Exception):
    """The configuration is unusable; str(error) is one line saying what and where."""


@dataclass(frozen=True)
class Permission:
    """RabbitMQ-style permission regexes of one user on one vhost ("" matches nothing)."""

    configure: str = ".*"
    write: str = ".*"
    read: str = ".*"


@dataclass(frozen=True)
class User:
    """A login: name, password, RabbitMQ user tags and the vhosts it may use.

    The password is either plaintext (`password`) or, when `password_hash` is set, a salted
    hash in RabbitMQ's format (`password` is then ignored); see amqpd.passwords. `tags`
    decide what the management API allows. `has_password` False: the user cannot log in
    with any password (RabbitMQ's users created without one)."""

    name: str
    password: str = field(repr=False)
    permissions: Mapping[str, Permission] = field(hash=False)
    tags: tuple[str, ...] = ()
    password_hash: str = field(default="", repr=False)
    hashing_algorithm: str = SHA256
    has_password: bool = True

    def password_check(self) -> PasswordCheck | NoPassword:
        """What `authenticate` compares a given password with (in constant time); a hash
        that cannot be read (an unknown algorithm, a wrong size) lets nobody in."""
        if not self.has_password:
            return NO_PASSWORD
        if self.password_hash:
            try:
                return PasswordCheck(
                    password_hash=self.password_hash, algorithm=self.hashing_algorithm
                )
            except BadPasswordHash:
                return NO_PASSWORD
        return PasswordCheck(password=self.password)

    def __post_init__(self) -> None:
        # Store a read-only copy so a Config can never be mutated through a user.
        object.__setattr__(self, "permissions", MappingProxyType(dict(self.permissions)))

    def permission(self, vhost: str) -> Permission | None:
        """The user's permission on `vhost`, or None if it has no access there."""
        return self.permissions.get(vhost)


@dataclass(frozen=True)
class Config:
    """Everything the server needs to start; see config/amqpd.yaml for each key."""

    bind: str = "127.0.0.1"
    port: int = 5672
    data_dir: str = "./amqpd-data"
    log_level: str = "info"
    heartbeat: int = 60
    frame_max: int = 131072
    channel_max: int = 2047
    max_message_size: int = 134217728
    handshake_timeout: float = 10.0
    fsync: str = "always"
    fsync_interval_ms: int = 200
    memory_high_watermark: str = DEFAULT_WATERMARK  # a fraction like 0.4 or a size like 512MiB
    paging_head: int = 10_000  # messages at a queue's head kept in memory (deeper ones page)
    management: bool = True
    management_bind: str = "127.0.0.1"
    management_port: int = 15672
    prometheus_port: int = 15692
    definitions_file: str = ""
    log_format: str = "text"
    test_controls: bool = False  # the /api/amqpd-test endpoints and a movable broker clock
    vhosts: tuple[str, ...] = ("/",)
    users: tuple[User, ...] = (User("guest", "guest", {"/": Permission()}, ("administrator",)),)
    # Users who may log in only from a loopback address (RabbitMQ's loopback_users).
    loopback_users: tuple[str, ...] = ("guest",)
    # TLS (amqps): a second listener on tls_port, enabled by tls_certfile (see server.tls).
    tls_port: int = 5671
    tls_certfile: str = ""
    tls_keyfile: str = ""
    tls_cafile: str = ""
    tls_verify_peer: bool = False
    tls_fail_if_no_peer_cert: bool = False

    def user(self, name: str) -> User | None:
        """The configured user called `name`, or None."""
        for user in self.users:
            if user.name == name:
                return user
        return None


# --- scalar keys: how to parse a string (env/flag) and which values are allowed --------------


def _check_int(low: int, high: int | None) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if high is None:
            return None if value >= low else f"must be >= {low}"
        return None if low <= value <= high else f"must be between {low} and {high}"

    return check


def _check_positive_float(value: Any) -> str | None:
    return None if math.isfinite(value) and value > 0 else "must be a finite number > 0"


def _check_anything(value: Any) -> str | None:
    return None


def _check_nonempty(value: Any) -> str | None:
    return None if value.strip() else "must not be empty"


def _check_choice(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else "must be one of " + ", ".join(choices)

    return check


def _check_watermark(value: Any) -> str | None:
    try:
        parse_watermark(value)
    except ValueError as error:
        return str(error)
    return None


@dataclass(frozen=True)
class _Scalar:
    kind: type
    check: Callable[[Any], str | None]
    lower: bool = False
    numbers_as_text: bool = False  # a YAML number is read as its text (kind str)


SCALARS: Mapping[str, _Scalar] = MappingProxyType(
    {
        "bind": _Scalar(str, _check_nonempty),
        "port": _Scalar(int, _check_int(0, 65535)),
        "data_dir": _Scalar(str, _check_nonempty),
        "log_level": _Scalar(str, _check_choice(LOG_LEVELS), lower=True),
        "heartbeat": _Scalar(int, _check_int(0, 65535)),
        "frame_max": _Scalar(int, _check_int(4096, 2**32 - 1)),
        "channel_max": _Scalar(int, _check_int(1, 65535)),
        "max_message_size": _Scalar(int, _check_int(1, None)),
        "handshake_timeout": _Scalar(float, _check_positive_float),
        "fsync": _Scalar(str, _check_choice(FSYNC_POLICIES), lower=True),
        "fsync_interval_ms": _Scalar(int, _check_int(1, None)),
        "memory_high_watermark": _Scalar(str, _check_watermark, numbers_as_text=True),
        "paging_head": _Scalar(int, _check_int(0, None)),
        "management": _Scalar(bool, _check_anything),
        "management_bind": _Scalar(str, _check_nonempty),
        "management_port": _Scalar(int, _check_int(0, 65535)),
        "prometheus_port": _Scalar(int, _check_int(0, 65535)),
        "definitions_file": _Scalar(str, _check_anything),
        "log_format": _Scalar(str, _check_choice(LOG_FORMATS), lower=True),
        "tls_port": _Scalar(int, _check_int(0, 65535)),
        "tls_certfile": _Scalar(str, _check_anything),
        "tls_keyfile": _Scalar(str, _check_anything),
        "tls_cafile": _Scalar(str, _check_anything),
        "tls_verify_peer": _Scalar(bool, _check_anything),
        "tls_fail_if_no_peer_cert": _Scalar(bool, _check_anything),
        "test_controls": _Scalar(bool, _check_anything),
    }
)
LIST_KEYS = ("vhosts", "users", "loopback_users")
USER_KEYS = ("name", "password", "password_hash", "hashing_algorithm", "permissions", "tags")
FLAG_KEYS = (
    "bind",
    "port",
    "data_dir",
    "log_level",
    "management",
    "management_bind",
    "management_port",
    "prometheus_port",
    "definitions_file",
    "log_format",
    "memory_high_watermark",
    "tls_port",
    "tls_certfile",
    "tls_keyfile",
    "tls_cafile",
    "tls_verify_peer",
    "tls_fail_if_no_peer_cert",
    "test_controls",
)
ENV_PREFIX = "AMQPD_"
# AMQPD_* variables that are not settings but are read elsewhere (the accelerated codec's
# switch, the image, the tests); AMQPD_TEST_* is the test suite's namespace.
TOOL_VARIABLES = (
    "AMQPD_CONFIG",
    "AMQPD_PURE_PYTHON",
    "AMQPD_READY_FILE",
    "AMQPD_STORE_RECOVERY_COUNT",
)
TOOL_PREFIX = "AMQPD_TEST_"
TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True}
BOOL_WORDS.update({"false": False, "no": False, "off": False, "0": False})


def _scalar(key: str, raw: Any, where: str, parse: bool = True) -> Any:
    """Convert and validate one scalar; strings (env, flags) are parsed, YAML must be typed."""
    spec = SCALARS[key]
    if spec.numbers_as_text and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = str(raw)
    value = raw
    if parse and isinstance(raw, str) and spec.kind is bool:
        value = BOOL_WORDS.get(raw.strip().lower(), raw)
    elif parse and isinstance(raw, str) and spec.kind is not str:
        try:
            value = spec.kind(raw.strip())
        except ValueError:
            value = raw
    ok_type = isinstance(value, spec.kind) and (spec.kind is bool or not isinstance(value, bool))
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok_type = float(value), True
    if not ok_type:
        raise ConfigError(f"{key} must be {TYPE_NAMES[spec.kind]}, got {raw!r} ({where})")
    if spec.lower:
        value = value.lower()
    problem = spec.check(value)
    if problem:
        raise ConfigError(f"{key} {problem}, got {raw!r} ({where})")
    return value


# --- vhosts and users (YAML only) --------------------------------------------------------------


def _vhosts(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"vhosts must be a non-empty list of names ({where})")
    names: list[str] = []
    for item in raw:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"vhosts: names must be non-empty strings, got {item!r} ({where})")
        if item in names:
            raise ConfigError(f"vhosts: {item!r} is listed twice ({where})")
        names.append(item)
    return tuple(names)


def _permission(raw: Any, at: str) -> Permission:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{at} must be a mapping with configure, write, read")
    _no_unknown(raw, ("configure", "write", "read"), at)
    values: dict[str, str] = {}
    for kind in ("configure", "write", "read"):
        pattern = raw.get(kind, ".*")
        if not isinstance(pattern, str):
            raise ConfigError(f"{at}.{kind} must be a string regex, got {pattern!r}")
        try:
            re.compile(pattern.encode())  # as auth.compile_permission runs it
        except re.error as exc:
            raise ConfigError(f"{at}.{kind} is not a valid regex {pattern!r}: {exc}") from None
        values[kind] = pattern
    return Permission(**values)


def _users(raw: Any, vhosts: tuple[str, ...], where: str) -> tuple[User, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"users must be a list of {{name, password, permissions}} ({where})")
    users: list[User] = []
    for index, item in enumerate(raw):
        at = f"users[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{at} must be a mapping with name, password, permissions ({where})")
        _no_unknown(item, USER_KEYS, f"{at} ({where})")
        name, password = item.get("name"), item.get("password")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{at}.name must be a non-empty string, got {name!r} ({where})")
        at = f"users[{index}] ({name})"
        if any(user.name == name for user in users):
            raise ConfigError(f"{at}: user {name!r} is defined twice ({where})")
        password_hash, algorithm = item.get("password_hash"), item.get("hashing_algorithm", SHA256)
        if password is not None and password_hash is not None:
            raise ConfigError(f"{at} needs password or password_hash, not both ({where})")
        if password_hash is not None:
            if not isinstance(password_hash, str) or not isinstance(algorithm, str):
                raise ConfigError(f"{at}.password_hash must be a string ({where})")
            try:
                PasswordCheck(password_hash=password_hash, algorithm=algorithm)
            except BadPasswordHash as error:
                raise ConfigError(f"{at}: {error} ({where})") from None
            password = ""
        elif not isinstance(password, str):
            raise ConfigError(f"{at}.password must be a string ({where})")  # never echo it
        perms_raw = item.get("permissions") or {}
        if not isinstance(perms_raw, dict):
            raise ConfigError(f"{at}.permissions must map vhost -> permission ({where})")
        perms: dict[str, Permission] = {}
        for vhost, perm in perms_raw.items():
            if vhost not in vhosts:
                raise ConfigError(
                    f"{at}.permissions names vhost {vhost!r}, which is not in vhosts ({where})"
                )
            perms[vhost] = _permission(perm, f"{at}.permissions[{vhost!r}] ({where})")
        users.append(
            User(
                name,
                password,
                perms,
                _tags(item.get("tags"), f"{at} ({where})"),
                password_hash or "",
                algorithm,
            )
        )
    return tuple(users)


def _loopback_users(raw: Any, where: str) -> tuple[str, ...]:
    """A list of user names; `none` (or an empty list) lets every user in from anywhere."""
    if isinstance(raw, str):
        names = [] if raw.strip().lower() == "none" else [n.strip() for n in raw.split(",")]
    elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        names = raw
    else:
        raise ConfigError(f"loopback_users must be a list of user names or none ({where})")
    if any(not name for name in names):
        raise ConfigError(f"loopback_users: names must be non-empty ({where})")
    return tuple(names)


def _tags(raw: Any, at: str) -> tuple[str, ...]:
    """User tags: a list or a comma-separated string of RabbitMQ's tag names."""
    if raw is None:
        return ()
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise ConfigError(f"{at}.tags must be a list of tag names, got {raw!r}")
    tags: list[str] = []
    for item in items:
        tag = item.strip() if isinstance(item, str) else item
        if tag == "":
            continue
        if tag not in USER_TAGS:
            raise ConfigError(f"{at}.tags: unknown tag {tag!r}; allowed: {', '.join(USER_TAGS)}")
        tags.append(tag)
    return tuple(tags)


def _no_unknown(mapping: Mapping[Any, Any], allowed: Sequence[str], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"unknown key {key!r} in {where}; allowed: {', '.join(allowed)}")


# --- sources -----------------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage and exiting 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"command line: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags; each overrides the environment and the YAML file."""
    from amqpd import __version__

    parser = _ArgumentParser(
        prog="amqpd",
        description="A standalone AMQP 0-9-1 broker that behaves like RabbitMQ.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML config file (env AMQPD_CONFIG)")
    parser.add_argument("--bind", metavar="ADDR", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", metavar="N", help="listen port, 0 = any free (default 5672)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (default ./amqpd-data)")
    parser.add_argument(
        "--log-level", metavar="LEVEL", help="debug, info, warning or error (default info)"
    )
    parser.add_argument(
        "--memory-high-watermark",
        metavar="W",
        help="block publishers above this memory use: a fraction of RAM like 0.4 (default) "
        "or a size like 512MiB",
    )
    parser.add_argument("--tls-port", metavar="N", help="amqps port (default 5671)")
    parser.add_argument("--tls-certfile", metavar="FILE", help="server certificate: enables TLS")
    parser.add_argument("--tls-keyfile", metavar="FILE", help="its private key")
    parser.add_argument("--tls-cafile", metavar="FILE", help="CAs that sign client certificates")
    parser.add_argument("--tls-verify-peer", metavar="BOOL", help="ask for client certificates")
    parser.add_argument(
        "--tls-fail-if-no-peer-cert", metavar="BOOL", help="refuse clients without one"
    )
    parser.add_argument(
        "--management", metavar="on|off", help="run the management HTTP API (default on)"
    )
    parser.add_argument(
        "--management-bind", metavar="ADDR", help="management and metrics address (127.0.0.1)"
    )
    parser.add_argument(
        "--management-port", metavar="N", help="management HTTP port, 0 = any free (15672)"
    )
    parser.add_argument(
        "--prometheus-port", metavar="N", help="Prometheus /metrics port, 0 = any free (15692)"
    )
    parser.add_argument(
        "--definitions-file", metavar="FILE", help="RabbitMQ definitions JSON to load at startup"
    )
    parser.add_argument("--log-format", metavar="FORMAT", help="text or json (default text)")
    parser.add_argument(
        "--test-controls", metavar="on|off", help="test clock and fault injection (default off)"
    )
    parser.add_argument("--version", action="version", version=f"amqpd {__version__}")
    return parser


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {data!r:.40}")
    return data


def load_config(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Merge defaults < YAML file < AMQPD_* environment < flags into a validated Config.

    `argv` excludes the program name (None: sys.argv[1:]); `environ` defaults to os.environ.
    Raises ConfigError on any problem. `--help`/`--version` raise SystemExit(0) as usual.
    """
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)

    values: dict[str, Any] = {}
    path = args.config if args.config is not None else env.get(ENV_PREFIX + "CONFIG") or None
    if path is not None:
        where = f"in {path}"
        data = _read_yaml(path)
        _no_unknown(data, [f.name for f in fields(Config)], path)
        for key, raw in data.items():
            if key in SCALARS:
                values[key] = _scalar(key, raw, where, parse=False)
        if "vhosts" in data:
            values["vhosts"] = _vhosts(data["vhosts"], where)
        if "loopback_users" in data:
            values["loopback_users"] = _loopback_users(data["loopback_users"], where)
        if "users" in data:
            values["users"] = _users(data["users"], values.get("vhosts", Config.vhosts), where)
        elif "vhosts" in data:
            for user in Config.users:
                for vhost in user.permissions:
                    if vhost not in values["vhosts"]:
                        raise ConfigError(
                            f"vhosts leaves out {vhost!r}, which the default user {user.name!r} "
                            f"needs; list it or define users too ({where})"
                        )

    raw = env.get(ENV_PREFIX + "LOOPBACK_USERS")
    if raw is not None and raw.strip() != "":
        values["loopback_users"] = _loopback_users(raw, f"from {ENV_PREFIX}LOOPBACK_USERS")

    for key in SCALARS:
        name = ENV_PREFIX + key.upper()
        raw = env.get(name)
        if raw is not None and raw.strip() != "":
            values[key] = _scalar(key, raw, f"from {name}")

    for key in FLAG_KEYS:
        raw = getattr(args, key)
        if raw is not None:
            values[key] = _scalar(key, raw, f"from --{key.replace('_', '-')}")

    config = Config(**values)
    _check_tls(config)
    return config


def _check_tls(config: Config) -> None:
    """TLS settings that cannot work together, or files that cannot be read."""
    if not config.tls_certfile:
        if config.tls_keyfile or config.tls_cafile or config.tls_verify_peer:
            raise ConfigError("tls_keyfile, tls_cafile and tls_verify_peer need tls_certfile")
        return
    if config.tls_fail_if_no_peer_cert and not config.tls_verify_peer:
        raise ConfigError("tls_fail_if_no_peer_cert needs tls_verify_peer: true")
    if config.tls_verify_peer and not config.tls_cafile:
        raise ConfigError("tls_verify_peer needs tls_cafile (the CAs of client certificates)")
    for key in ("tls_certfile", "tls_keyfile", "tls_cafile"):
        path = getattr(config, key)
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"{key}: cannot read {path}")


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per AMQPD_* variable that names no setting (a typo is otherwise silently
    ignored), with the closest real name when there is one. Not an error: a warning."""
    env = os.environ if environ is None else environ
    known = [ENV_PREFIX + key.upper() for key in (*SCALARS, "loopback_users")]
    problems = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in known or name in TOOL_VARIABLES:
            continue
        if name.startswith(TOOL_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key in LIST_KEYS:
            problems.append(f"{name} is ignored: {key} can only be set in the config file")
            continue
        close = difflib.get_close_matches(key, list(SCALARS), n=1)
        hint = f" (did you mean {ENV_PREFIX}{close[0].upper()}?)" if close else ""
        problems.append(f"{name} is ignored: no such setting{hint}")
    return problems
