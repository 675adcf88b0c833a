"""The one error type for bad input: a file or argument the user can fix.

Commands print it as one line (`bachbridge: FILE: reason`) and exit with status 2.
"""


class BadInput(Exception):
    """A bad file or argument. `str()` is the one-line reason, naming the file when there is one."""

    def __init__(self, reason: str, path=None):
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path is not None else reason)
