"""Reading YAML files with user-facing errors (a missing file or bad YAML is a ConfigError)."""

from __future__ import annotations

from pathlib import Path

from racing.errors import ConfigError


def read_yaml(path, what: str = "YAML"):
    """The parsed contents of ``path`` (None for an empty file).

    Raises :class:`ConfigError` "``what`` file not found: PATH" or "PATH: not valid YAML (...)".
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
