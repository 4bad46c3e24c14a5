"""Command-line entry point: argv + environment -> Config -> `Server(config).run()`.

`main()` holds no broker logic. It returns the process exit code: 2 with one line on
stderr for an unusable configuration, otherwise whatever the server returns.
"""

from __future__ import annotations

import logging
import sys

from amqpd.config import ConfigError, load_config, unknown_environment
from amqpd.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Run the broker until it is stopped; returns the exit code."""
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
