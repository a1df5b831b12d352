"""Reading the YAML files users hand in (target specs, configs, student specs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.errors import DeployError


def read_yaml(path: Path, error: type[DeployError]) -> Any:
    """The parsed document of ``path``; a syntax error becomes one line of ``error``."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
