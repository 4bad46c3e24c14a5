"""Allow `python -m amqpd`, the same as the `amqpd` console script."""

import sys

from amqpd.cli import main

sys.exit(main())
