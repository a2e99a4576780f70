"""Errors meant for the user: the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """Bad input or environment, explained in one line; never shown as a traceback."""
