"""Runs argv[1:] with its stdout and stderr on a pseudo-terminal (as when a person runs it in a
shell), copies what it writes to our stdout, passes SIGTERM and SIGINT on to it, and exits with its
exit code."""
import os
import pty
import signal
import sys

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])

for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
while True:
    try:
        data = os.read(fd, 65536)
    except InterruptedError:
        continue
    except OSError:
        break  # EIO: the child closed the terminal
    if not data:
        break
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
while True:
    try:
        _, status = os.waitpid(pid, 0)
        break
    except InterruptedError:
        continue
sys.exit(os.waitstatus_to_exitcode(status))
