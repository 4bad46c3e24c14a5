"""bench: a PerfTest-style AMQP 0-9-1 load generator and comparison tooling for amqpd.

Not part of the broker: it imports nothing from `amqpd` and is not installed with it. Run
it from a clone as `scripts/bench` / `scripts/compare`, or `python -m bench run|idle|startup
...` from the repository root (see cli.py). The hot path uses a lean asyncio client with
pre-encoded publish frames and a hand-written delivery parser (client.py, wire.py);
producers and consumers run in separate processes (workers.py). This module imports
nothing, so `bench.venv` can run before any third-party package is importable.
"""
