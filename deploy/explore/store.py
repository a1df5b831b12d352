"""The output folder of an exploration: one JSON row per finished trial, written as it finishes.

``OUT/explore.json`` marks the folder as an exploration; ``OUT/trials/<key>.json`` holds
one finished point (its configuration, seed, objectives and full compile report),
written atomically, so a killed run loses only the trials that were running and a
rerun skips every key already present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deploy.core.errors import DeployError
from deploy.io.atomic import check_output, write_text

MARKER = "explore.json"
SCHEMA = "neurodeploy.explore/1"


class Store:
    """Finished trials of an output folder, keyed by point key."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.trials = self.out / "trials"

    def open(self) -> Store:
        """Check that the folder can hold an exploration (new, empty, or an earlier one) and mark it."""
        check_output(self.out, "folder")
        marker = self.out / MARKER
        if self.out.is_dir() and any(self.out.iterdir()) and not marker.is_file():
            raise DeployError(f"{self.out} holds files that are not an exploration "
                              "(give an empty or new folder, or an earlier exploration's)")
        if marker.is_file():
            try:
                schema = json.loads(marker.read_text(encoding="utf-8")).get("schema")
            except (OSError, ValueError, AttributeError):
                schema = None
            if schema != SCHEMA:
                raise DeployError(f"{marker}: not a {SCHEMA} marker; give another output folder")
        else:
            write_text(marker, json.dumps({"schema": SCHEMA}) + "\n")
        self.trials.mkdir(parents=True, exist_ok=True)
        return self

    def path(self, key: str) -> Path:
        return self.trials / f"{key}.json"

    def write(self, row: dict[str, Any]) -> Path:
        """Persist one finished trial (atomic: the file is whole or absent)."""
        return write_text(self.path(row["key"]), json.dumps(row, sort_keys=True) + "\n")

    def load(self, keys: set[str] | None = None) -> dict[str, dict[str, Any]]:
        """Finished rows (only ``keys`` when given); unreadable files are skipped and rerun."""
        rows: dict[str, dict[str, Any]] = {}
        if not self.trials.is_dir():
            return rows
        for path in sorted(self.trials.glob("*.json")):
            if keys is not None and path.stem not in keys:
                continue
            try:
                row = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(row, dict) and row.get("key") == path.stem and "metrics" in row:
                rows[path.stem] = row
        return rows

    def count(self) -> int:
        """Every finished trial in the folder, of this space or an earlier one."""
        return len(list(self.trials.glob("*.json"))) if self.trials.is_dir() else 0
