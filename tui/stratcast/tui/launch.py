"""Start the terminal UI: check that a daemon answers, then run the app on a live link to it."""

from __future__ import annotations

import argparse
import sys

from stratcast.shared.aclient import AsyncClient
from stratcast.shared.client import Client, CurveKeys, DaemonUnavailable, RequestFailed
from stratcast.shared.errors import ExitCode
from stratcast.shared.paths import resolve_home


def launch(args: argparse.Namespace, curve: CurveKeys | None) -> int:
    """Run the TUI until the user quits; 69 (with how to start a daemon) when none answers at start.

    Once running, a daemon that goes away is waited for: the UI says ``reconnecting`` and keeps its place.
    """
    from stratcast.tui.app import StratcastApp
    from stratcast.tui.link import ZmqLink

    endpoint: str | None = args.connect
    home = None if endpoint else resolve_home(args.home)
    try:
        with Client(home, endpoint=endpoint, timeout_s=args.timeout, curve=curve):
            pass  # the handshake proves a daemon answers before the screen is taken over
    except DaemonUnavailable as exc:
        print(f"stratcast: {exc}", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    except RequestFailed as exc:
        print(f"stratcast: error: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    client = AsyncClient(home, endpoint=endpoint, timeout_s=args.timeout, curve=curve)
    app = StratcastApp(ZmqLink(client), fps=getattr(args, "fps", 5.0), open_run=getattr(args, "run", None))
    app.run()
    client.close()
    return ExitCode.OK
