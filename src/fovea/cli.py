"""How stage scripts end: a user error prints one clear message, a bug keeps its traceback.

Every ``stages/*.py`` ends with ``run_stage(main)``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from fovea.errors import FoveaUserError

__all__ = ["USER_ERROR_EXIT", "is_user_error", "run_stage"]

USER_ERROR_EXIT = 1
INTERRUPTED_EXIT = 130  # the shell's code for a process stopped by SIGINT


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is one the user can fix from its message alone."""
    return isinstance(error, FoveaUserError)


def run_stage(main: Callable[[], object], name: str | None = None) -> None:
    """Run a stage's ``main``: a user error becomes ``<stage>: <message>`` on stderr and exit
    code 1, Ctrl-C a one-line note and exit code 130; any other exception propagates with its
    traceback, since it is a bug to fix in the code."""
    name = name or Path(sys.argv[0]).stem
    try:
        main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT)
    except Exception as error:  # noqa: BLE001 - re-raised unless it is a user error
        if not is_user_error(error):
            raise
        print(f"{name}: {error}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
