"""Errors that reach the user as one clear line."""


class IseError(Exception):
    """A failure the user can act on: the CLI prints it as one line and exits non-zero."""


class InputError(IseError):
    """A malformed input or config file; the message names the file and line."""
