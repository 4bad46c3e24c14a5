"""Command-line entry point: argv + environment -> Config -> `Server(config).run()`.

`main()` holds no broker logic. It returns the process exit code: 2 with one line on
stderr for an unusable configuration, otherwise whatever the server returns.
"""

from __future__ import annotations

import logging
import sys

from amqpd.config import ConfigError, load_config, unknown_environment

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    """Send log records at `level` and above to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def main(argv: list[str] | None = None) -> int:
    """Run the broker until it is stopped; returns the exit code."""
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"amqpd: invalid config: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    for problem in unknown_environment():
        logging.getLogger("amqpd.config").warning("%s", problem)
    from amqpd.server import Server

    try:
        return Server(config).run()
    except KeyboardInterrupt:  # Ctrl-C before the server installed its signal handlers
        return 130
