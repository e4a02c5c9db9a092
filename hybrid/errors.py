"""One exception type for bad input: its message is one sentence a user can act on."""


class HybridError(Exception):
    """Bad input or state, described in one sentence (which file, which field, what was expected).

    The CLI prints the message alone and exits with status 2; library callers can catch it.
    """


def not_a_file(path) -> str:
    """How a path that should be a file fails, for the one-sentence errors: 'does not exist' or
    'is a folder, not a file'."""
    from pathlib import Path

    return "is a folder, not a file" if Path(path).is_dir() else "does not exist"
