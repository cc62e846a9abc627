"""The project's exception types.

Every error a user can trigger (bad image, bad checkpoint, bad config) is a `HINetError`, so callers such
as the app and the command-line tools catch one type and show its message. The message alone must tell
the user what was wrong and what to do; no traceback is needed to understand it.
"""


class HINetError(ValueError):
    """Base class of every user-facing error raised by `hinet`."""


class ConfigError(HINetError):
    """An invalid model or training configuration (unknown key, wrong type, impossible value)."""


class ImageError(HINetError):
    """An image that cannot be read, is empty, too large, or has an unsupported layout."""


class CheckpointError(HINetError):
    """A checkpoint that cannot be read, is unsafe, or does not match the model it is loaded into."""


class ResultsError(HINetError):
    """A results table or run log that cannot be read or lacks what the statistics need."""


class TrainingDiverged(HINetError):
    """The loss or the gradient became NaN or infinite during training."""
