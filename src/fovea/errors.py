"""The base class of errors a user can fix: stages print their message, not a traceback."""

from __future__ import annotations


class FoveaUserError(Exception):
    """Bad params, a missing or unusable input, or a run that yields nothing usable.

    The message must say what is wrong and, where it can, how to fix it: stage scripts print it
    as one line on stderr and exit non-zero (:func:`fovea.cli.run_stage`). Anything else is a bug
    and keeps its traceback.
    """
