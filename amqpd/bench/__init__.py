"""amqpd.bench: a PerfTest-style AMQP 0-9-1 load generator and comparison tooling.

`python -m amqpd.bench run|idle|startup ...` (see cli.py). The hot path uses a lean
asyncio client with pre-encoded publish frames and a hand-written delivery parser
(client.py, wire.py); producers and consumers run in separate processes (workers.py).
"""

from .cli import main

__all__ = ["main"]
