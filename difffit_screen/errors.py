"""Exceptions raised for bad input: each names the file and the problem."""


class InputError(ValueError):
    """A bad input file or value; the message names the file and the problem.

    The CLI prints the message (no traceback); in a screen the candidate is recorded in the
    failures table with this message as its reason and the screen goes on.
    """
