"""Command-line entry point: argv + environment -> Config -> `Server(config).run()`.

`main()` holds no broker logic. It returns the process exit code: 2 with one line on
stderr for an unusable configuration, otherwise whatever the server returns.
`amqpd hash-password [PASSWORD]` prints a RabbitMQ-style salted hash for a `password_hash`
in the config instead (the password is read from stdin, or prompted for, if not given).
"""

from __future__ import annotations

import getpass
import logging
import sys

from amqpd.config import ConfigError, load_config, unknown_environment
from amqpd.logs import setup_logging


def hash_password_command(args: list[str]) -> int:
    """Print the hash of a password given as the argument, on stdin or at a prompt."""
    from amqpd.passwords import hash_password

    if args and args[0] in ("-h", "--help"):
        print("usage: amqpd hash-password [PASSWORD]  (else read from stdin or a prompt)")
        return 0
    if len(args) > 1:
        print("amqpd: hash-password takes at most one argument", file=sys.stderr)
        return 2
    if args:
        password = args[0]
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    print(hash_password(password))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the broker until it is stopped; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hash-password"]:
        return hash_password_command(argv[1:])
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"amqpd: invalid config: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_format)
    for problem in unknown_environment():
        logging.getLogger("amqpd.config").warning("%s", problem)
    from amqpd.server import Server

    try:
        return Server(config).run()
    except KeyboardInterrupt:  # Ctrl-C before the server installed its signal handlers
        return 130
