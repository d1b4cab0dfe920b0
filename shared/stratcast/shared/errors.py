"""Exit codes and error kinds shared by the daemon, the CLI and the TUI."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of ``stratcastd`` and ``stratcast``, so scripts can tell bad input from failure."""

    OK = 0
    """The job finished and wrote its outputs."""
    FAILED = 1
    """The job failed for a reason other than its input (a bug, the device, the disk)."""
    USAGE = 2
    """The command line was wrong (argparse's own code)."""
    BAD_INPUT = 3
    """The data file or an option value was rejected; the message says what to change."""
    UNAVAILABLE = 69
    """No daemon answered (``EX_UNAVAILABLE`` of sysexits.h); the message says how to start one."""
    INTERRUPTED = 130
    """Stopped by SIGINT/SIGTERM; a checkpoint was written where one was possible."""
