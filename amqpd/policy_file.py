"""Where policies persist: `policies.json` in the data directory, one JSON list for all vhosts.

Each entry is a policy in the management API's shape (`vhost`, `name`, `pattern`,
`definition`, `priority`, `apply-to`), with `"operator": true` for an operator policy.
`load(path)` reads them (a missing file is no policies) and `save(path, vhosts)` writes
every vhost's registry atomically (temporary file, fsync, rename). The vhosts own the
policies in memory (core/policy.py); this module is only their file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from amqpd.core.policy import Policy, PolicyRegistry

Loaded = dict[str, list[tuple[Policy, bool]]]  # vhost -> (policy, is an operator policy)


def policies_path(data_dir: str) -> Path:
    """Where the policies of a broker with this data directory are kept."""
    return Path(data_dir) / "policies.json"


def load(path: Path | None) -> Loaded:
    loaded: Loaded = {}
    if path is None or not path.exists():
        return loaded
    for item in json.loads(path.read_text(encoding="utf-8")):
        policy = Policy.from_json(item["name"], item)
        loaded.setdefault(item["vhost"], []).append((policy, bool(item.get("operator"))))
    return loaded


def install(registry: PolicyRegistry, entries: list[tuple[Policy, bool]]) -> None:
    """Put loaded policies in a vhost's registry (before its queues are recovered)."""
    for policy, operator in entries:
        registry.set(policy, operator=operator)


def save(path: Path | None, registries: Mapping[str, PolicyRegistry]) -> None:
    if path is None:
        return
    entries = []
    for vhost, registry in sorted(registries.items()):
        entries += [policy.as_json(vhost) for policy in registry.listed()]
        entries += [
            {**policy.as_json(vhost), "operator": True} for policy in registry.listed(operator=True)
        ]
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
