"""The errors a user can cause, one type per kind, so the CLI can answer them in one line."""


class DigitlabError(Exception):
    """Base of every error digitlab raises on purpose; its message is meant for the user."""


class DataError(DigitlabError):
    """A data file or data set is missing, malformed, or fails its checksum."""


class ImageError(DigitlabError):
    """An image cannot be decoded or is unsuitable (empty, too large, unknown format)."""


class ModelFileError(DigitlabError):
    """A model or checkpoint file is missing, corrupt, foreign, or does not match its spec."""


class UsageError(DigitlabError):
    """An argument or setting is invalid (unknown preset, negative epochs, ...)."""


class TrainingError(DigitlabError):
    """Training cannot go on (non-finite loss, nothing to resume)."""


class TrainingInterrupted(TrainingError):
    """The user pressed Ctrl-C; the last finished epoch's checkpoint is kept for --resume."""
