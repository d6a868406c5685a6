"""Starting an actor process from the application's process.

Two things the multiprocess start does not do for an embedded engine: keep the
application's ``__main__`` out of the child (``start_child``), and hold a Ctrl-C that
lands mid-start until the child is whole and known to whoever must stop it
(``interrupts_held``).
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager


def start_child(process) -> None:
    """``process.start()``, without the application's ``__main__`` in the child."""
    with _application_main_hidden():
        process.start()


_NO_VALUE = object()
_main_lock = threading.Lock()


@contextmanager
def interrupts_held():
    """Hold a Ctrl-C until the block is done, then deliver it to the handler that was
    there.  A KeyboardInterrupt while a child's preparation data is being sent leaves
    the forkserver's child reading half of it (it dies printing an EOFError traceback);
    one after the start but before the child is recorded leaves it running unknown to
    the cleanup.  Only the main thread sets handlers (and only it ever sees a
    KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is None  # set outside Python: not ours to swap
    ):
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)


@contextmanager
def _application_main_hidden():
    """Start a child without re-running the application's ``__main__`` in it.

    spawn and forkserver children normally import the parent's main module
    (as ``__mp_main__``) so pickled objects from it resolve.  Actors need
    nothing from it, and importing it would run an unguarded application
    script's top-level code once per actor - or fail outright for a script
    read from stdin.  Preparing the child while main names no file or spec
    skips that step.
    """
    main = sys.modules["__main__"]
    with _main_lock:
        saved_file = main.__dict__.pop("__file__", _NO_VALUE)
        saved_spec = main.__dict__.get("__spec__", _NO_VALUE)
        main.__spec__ = None
        try:
            yield
        finally:
            if saved_file is not _NO_VALUE:
                main.__file__ = saved_file
            if saved_spec is _NO_VALUE:
                del main.__spec__
            else:
                main.__spec__ = saved_spec
