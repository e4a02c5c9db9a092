"""One exception type for bad input: its message is one sentence a user can act on."""


class HybridError(Exception):
    """Bad input or state, described in one sentence (which file, which field, what was expected).

    The CLI prints the message alone and exits with status 2; library callers can catch it.
    """
