"""``stratcastd forecast`` and ``stratcastd saved ...``: saved models in the foreground, on a home folder directly.

``stratcastd forecast --saved NAME[@ALIAS|:VERSION] --data NEW_PATH [--out DIR]`` scores new data with a saved
model without retraining (:func:`~stratcast.daemon.engine.saved.score.score`: the outputs a run writes).
``stratcastd saved save RUN_OUT_DIR NAME`` saves a finished run's outputs as the next version of ``NAME``; ``saved
ls``, ``show``, ``alias``, ``rm``, ``export`` and ``import`` manage the versions in ``HOME/models``
(:mod:`stratcast.daemon.engine.saved.store`). The home is ``--home``, else ``$STRATCAST_HOME``, else the XDG
state folder, as for ``stratcastd serve``. A saved model that is missing, damaged or does not fit the data exits 3
with the message, as bad input does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stratcast.shared.errors import ExitCode
from stratcast.shared.paths import resolve_home
from stratcast.shared.report import SAVED_TEXT

COMMANDS = ("forecast", "saved")
"""The top-level commands this module adds."""


def add_saved_commands(sub: Any) -> None:
    """Add ``forecast`` and ``saved`` to ``stratcastd``'s subcommands ``sub``."""
    forecast = sub.add_parser("forecast", help="score new data with a saved model, without retraining (no server)")
    forecast.add_argument("--saved", required=True, metavar="REF", help="NAME, NAME@ALIAS or NAME:VERSION")
    forecast.add_argument("--data", required=True, help="the new long-format parquet or CSV file")
    forecast.add_argument("--out", help="output folder (default: ./forecast-NAME-vVERSION)")
    forecast.add_argument("--device", default="cpu", help="cpu (the default), auto, cuda, cuda:N, mps")
    forecast.add_argument("--json", action="store_true", help="print metrics.json's scored section as JSON")
    _home(forecast)
    saved = sub.add_parser("saved", help="saved models: save a run, list, show, alias, remove, export, import")
    what = saved.add_subparsers(dest="saved_command", required=True)
    save = what.add_parser("save", help="save a finished run's output folder as the next version of NAME")
    save.add_argument("run_out", metavar="RUN_OUT_DIR")
    save.add_argument("name", metavar="NAME")
    ls = what.add_parser("ls", help="list the saved models, their versions and aliases")
    show = what.add_parser("show", help="show a version's manifest (without its strategy list)")
    show.add_argument("ref", metavar="REF")
    alias = what.add_parser("alias", help="point ALIAS at the version REF names (--remove: remove ALIAS of NAME)")
    alias.add_argument("ref", metavar="REF")
    alias.add_argument("alias", metavar="ALIAS")
    alias.add_argument("--remove", action="store_true", help="remove the alias (REF is the model's name)")
    rm = what.add_parser("rm", help="remove the version REF names")
    rm.add_argument("ref", metavar="REF")
    rm.add_argument("--force", action="store_true", help="remove it even when an alias points at it")
    export = what.add_parser("export", help="write a version to a plain .tar (manifest and weights)")
    export.add_argument("ref", metavar="REF")
    export.add_argument("path", metavar="PATH")
    imp = what.add_parser("import", help="check an exported .tar and add it as a new version")
    imp.add_argument("path", metavar="PATH")
    imp.add_argument("--name", help="the model to add it to (default: the name it was saved under)")
    for p in (save, ls, show, alias, rm, export, imp):
        p.add_argument("--json", action="store_true", help="print JSON")
        _home(p)


def _home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", help="the daemon's home folder (default: $STRATCAST_HOME or XDG)")


def saved_command(args: argparse.Namespace) -> int:
    """Run ``forecast`` or ``saved ...``; exit 3 with the message for a :class:`SavedModelError`."""
    from stratcast.daemon.engine.saved.store import SavedModelError

    home = resolve_home(args.home).state
    try:
        if args.command == "forecast":
            return _forecast(home, args)
        result = _saved(home, args)
    except SavedModelError as exc:
        print(f"stratcastd: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(SAVED_TEXT[args.saved_command](result))
    return ExitCode.OK


def _forecast(home: Path, args: argparse.Namespace) -> int:
    """``stratcastd forecast``."""
    from stratcast.daemon.engine.saved.score import score
    from stratcast.daemon.engine.saved.versions import load_saved

    saved = load_saved(home, args.saved)
    out = Path(args.out or f"forecast-{saved.version.name}-v{saved.version.version}")
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    result = score(saved, args.data, out, device=args.device, log=log)
    if args.json:
        print(json.dumps(result.metrics["scored"], indent=2))
    for line in (f"{s}: skipped, {why}" for s, why in result.skipped.items()):
        print(line, file=sys.stderr)
    return ExitCode.OK


def _saved(home: Path, args: argparse.Namespace) -> Any:
    """``stratcastd saved ...``: what the command did or found, as JSON data (the daemon's replies' shape)."""
    from stratcast.daemon.engine.saved import store, versions

    command = args.saved_command
    if command == "save":
        return versions.save_run(home, Path(args.run_out), args.name).info()
    if command == "ls":
        return store.list_models(home)
    if command == "show":
        return versions.describe(versions.load_saved(home, args.ref))
    if command == "alias":
        if args.remove:
            store.remove_alias(home, args.ref, args.alias)
            return {"name": args.ref, "alias": args.alias, "removed": True}
        return store.set_alias(home, args.ref, args.alias).info() | {"alias": args.alias}
    if command == "rm":
        return store.remove_version(home, args.ref, force=args.force).info() | {"removed": True}
    if command == "export":
        path = Path(args.path)
        exported = versions.export_version(home, args.ref, path).info()
        return exported | {"exported_to": str(path), "bytes": path.stat().st_size}
    if command == "import":
        return versions.import_version(home, Path(args.path), args.name).info()
    raise AssertionError(command)
