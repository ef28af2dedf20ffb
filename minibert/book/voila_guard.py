"""Run Voilà for `minibert app`, and stop it as soon as `minibert app` is gone, however it died.

    python voila_guard.py FD VOILA_ARGUMENTS...

FD is the read end of a pipe whose write end only the parent `minibert app` holds. Nobody ever writes to it,
so reading it blocks until the parent's end closes, which the operating system does when the parent exits for
any reason, SIGKILL included (a signal the parent cannot catch, so it cannot clean up itself). Then this
process sends itself SIGTERM, on which Voilà shuts its kernels down and exits; if that takes longer than
GRACE seconds, SIGKILL. (Linux's prctl(PR_SET_PDEATHSIG) would do the same on Linux only; a pipe also works
on macOS.)

Run by path, not as `-m minibert...`, so that nothing of the course is imported into Voilà's process.
"""

import os
import signal
import sys
import threading
import time

GRACE = 10.0  # seconds Voilà gets to shut its kernels down before SIGKILL


def _watch(fd: int) -> None:
    try:
        while os.read(fd, 1024):  # the parent never writes; b"" means its end is closed
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)  # Voilà's handler stops the server and shuts its kernels down
    time.sleep(GRACE)
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    fd = int(argv[0])
    os.set_inheritable(fd, False)  # the kernels Voilà starts need nothing of the parent's
    threading.Thread(target=_watch, args=(fd,), name="minibert-parent-watch", daemon=True).start()
    sys.argv = ["voila", *argv[1:]]
    from voila.app import main as voila_main

    voila_main()


if __name__ == "__main__":
    main(sys.argv[1:])
