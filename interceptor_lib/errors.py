"""Exceptions with messages a user can act on. The command line prints them without a traceback."""


class InterceptorError(Exception):
    """Base class: an input problem the user can fix (bad params, wrong folder, corrupt file)."""


class ParamsError(InterceptorError, ValueError):
    """A params file has an unknown key, a wrong type or a missing path; the message names the key."""


class DatasetLayoutError(InterceptorError, FileNotFoundError):
    """A dataset root does not look like the layout its indexer expects; the message shows that layout."""


class LeakageError(InterceptorError, ValueError):
    """A split would leak: a group in two splits, or a test-list video outside test."""


class PreprocessError(InterceptorError, RuntimeError):
    """Preprocessing cannot go on (e.g. the failure rate passed its ceiling)."""


class MediaError(InterceptorError, ValueError):
    """One video or frame sequence cannot be read (undecodable, empty, no face, no audio)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # short machine-readable code used in the failures table
