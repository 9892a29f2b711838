"""The exception that marks a user's bad input, as opposed to a fault in cryoposes itself.

Functions that read what a user gives them (a file, a name, a command-line value) raise
:class:`InputError` when it is unusable; ``cryoposes VERB`` prints its message without a
traceback and exits with status 2. Any other exception is a bug: the command line lets it
through with its traceback (exit status 1).
"""

__all__ = ["InputError"]


class InputError(ValueError):
    """Unusable input from the user (a corrupt or mismatched file, an unknown name, a bad value).

    A subclass of :class:`ValueError`, so ``except ValueError`` keeps catching it.

    Examples
    --------
    >>> from cryoposes.errors import InputError
    >>> isinstance(InputError("no STAR file at x.star"), ValueError)
    True
    """
