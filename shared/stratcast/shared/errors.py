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
    OUT_OF_MEMORY = 76
    """``stratcastd run``: not even a micro-batch of one window fits, or the optimizer step ran out of memory."""
    INTERRUPTED = 130
    """Stopped by SIGINT/SIGTERM; a checkpoint was written where one was possible."""


def refusal_exit_code(error_code: str) -> ExitCode:
    """The exit code for a request the daemon refused with ``error_code`` (docs/protocol.md's error codes).

    ``invalid_spec`` is the daemon's bad input (the job or its data, as ``stratcastd run`` would reject them).
    """
    return ExitCode.BAD_INPUT if error_code == "invalid_spec" else ExitCode.FAILED
