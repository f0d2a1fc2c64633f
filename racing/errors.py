"""Errors a user can cause. The CLI prints them as one clear message, never a traceback."""


class RacingError(Exception):
    """Base class for every error caused by user input (files, specs, parameters)."""


class TrackError(RacingError):
    """A track spec or track file is invalid.

    The message names the file, the line (when there is one) and the rule broken.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)


class ConfigError(RacingError):
    """A configuration value (vehicle preset, sim config, YAML key) is invalid."""
