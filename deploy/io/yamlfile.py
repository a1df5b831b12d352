"""Reading the YAML files users hand in (target specs, configs, student specs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.core.errors import DeployError


def read_yaml(path: Path, error: type[DeployError]) -> Any:
    """The parsed document of ``path``; a syntax error becomes one line of ``error``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not a YAML text file (not valid UTF-8)") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise error(f"{path}: YAML nested too deeply") from None
