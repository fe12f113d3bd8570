"""User-facing errors: one line, no traceback (the CLIs catch these)."""


class UserError(Exception):
    """Bad input from the user: a file, a line or field, and what was expected."""


class DataError(UserError):
    """A dataset file is missing or malformed."""


class ConfigError(UserError):
    """A config file or --set override is invalid."""


class TrainingDiverged(UserError, FloatingPointError):
    """The training loss became NaN or infinite (also a FloatingPointError, which the
    experiment drivers catch to record a diverged run)."""
