"""The one exception type for expected user errors.

Command-line tools catch :class:`UserError`, print its one-line message (which names the problem and the
fix) and exit non-zero without a traceback. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """An expected failure caused by input: a bad path, a wrong flag, a model from elsewhere."""
