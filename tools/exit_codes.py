"""The exit codes of every ``jetstore`` command: one table, so that a script can
tell a failed operation from a typo and from damage whichever command it ran.

    0    OK           the command did what was asked
    1    FAILED       the operation failed; stderr names the ESE error
    2    USAGE        bad arguments or paths: nothing was done
    3    DAMAGED      damage was found (verify-backup, inspect verify, restore)
    4    NO_INSTANCE  ctl: no instance at that directory or endpoint
    5    TIMED_OUT    ctl: the instance did not answer in --timeout
    6    BUSY         ctl: a backup is already running
    7    REFUSED      ctl: the tcp server refused this client's CURVE key
    130  INTERRUPTED  Ctrl-C
"""

from __future__ import annotations

OK, FAILED, USAGE, DAMAGED, NO_INSTANCE, TIMED_OUT, BUSY, REFUSED = range(8)
INTERRUPTED = 130

EPILOG = (
    "Exit codes: 0 ok, 1 the operation failed (the ESE error is printed), 2 usage, "
    "3 damage found, 130 interrupted."
)
