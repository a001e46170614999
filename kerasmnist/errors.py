"""Errors the user can act on: the CLI prints each as one line, without a traceback."""


class KerasMnistError(Exception):
    exit_code = 1


class ConfigError(KerasMnistError):
    """A configuration value or option is invalid."""

    exit_code = 2


class BackendUnavailable(KerasMnistError):
    """The backend's framework is not installed, or the pinned device is not there."""

    exit_code = 2


class UserCodeError(ConfigError):
    """A user's model builder or data loader cannot be used: it is missing, fails to import, raises, or
    returns what kerasmnist cannot train. Raised before training: no record is written."""


class DataError(KerasMnistError):
    """The dataset is missing, corrupt, or too small for the requested split."""

    exit_code = 2


class RunFailed(KerasMnistError):
    """Training started but broke; a record with status `failed` was written."""


ERROR_PREFIX = "kerasmnist: error: "  # every command's one-line error starts so; a parent reads it from a child's log
UNAVAILABLE_EXIT = 3  # a pinned child's "cannot run here": its backend or device is not there (a skipped cell)
