"""The ``featvis`` command's errors: exit codes, :class:`CLIError`, and messages on one line.

Kept apart from the command's other modules and free of torch, so that the command can parse its
arguments (and answer ``--help``) before anything heavy is imported.

Example:
    >>> one_line(CLIError("no such   file"))
    'no such file'
"""

from __future__ import annotations

__all__ = ["RUNTIME_ERROR", "USAGE_ERROR", "CLIError", "one_line"]

#: exit status for a command that asks for something impossible (also argparse's own)
USAGE_ERROR = 2
#: exit status for a failure while running
RUNTIME_ERROR = 1


class CLIError(Exception):
    """An error the command reports as one line (``featvis: error: ...``) with an exit code.

    Example:
        >>> error = CLIError("no such file: x.py")
        >>> str(error), error.code
        ('no such file: x.py', 2)
    """

    def __init__(self, message: str, code: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.code = code


def one_line(error: BaseException) -> str:
    """An exception's message on one line (a ``KeyError``'s without its quotes; the type's name if it has none).

    Example:
        >>> one_line(ValueError("a message   with  its spaces"))
        'a message with its spaces'
        >>> one_line(KeyError("layer9")), one_line(RuntimeError())
        ('layer9', 'RuntimeError')
    """
    text = " ".join(str(error).split())
    if isinstance(error, KeyError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    return text or type(error).__name__
