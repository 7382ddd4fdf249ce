"""One error hierarchy for user mistakes, so the CLI can turn them into a one-line message and exit 2."""

from __future__ import annotations


class AlreidError(ValueError):
    """A problem with the user's input or configuration; the message names the problem and the fix."""


class DatasetError(AlreidError):
    """A dataset is missing, malformed or inconsistent."""


class ConfigError(AlreidError):
    """A configuration value is unknown or out of range."""


class ConstraintConflictError(AlreidError):
    """An annotation contradicts what earlier annotations already imply."""


class UnknownPluginError(AlreidError, KeyError):
    """A plugin name is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""
