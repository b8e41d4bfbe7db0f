"""User-facing errors.

Everything a user can cause (a bad recipe, a missing file, malformed data, a corrupt checkpoint) raises a
subclass of :class:`SciformerError`. The CLI turns these into a one-line message and exit code 2; anything
else is a bug and keeps its traceback.
"""


class SciformerError(Exception):
    """Base class of errors caused by the user's input rather than by a bug."""


class ConfigError(SciformerError):
    """A recipe or override is invalid: unknown key, wrong type, unknown name."""


class DataError(SciformerError):
    """A data file or frame cannot be used: missing, malformed, too short, wrong layout."""


class CheckpointError(SciformerError):
    """A checkpoint directory is missing files, corrupt, or incompatible with this version."""
