"""Saved models through the daemon: save a run, list, show, alias, remove, export and import versions.

``save_run``, ``list_saved``, ``show_saved``, ``set_alias``, ``remove_saved``, ``export_saved`` and
``import_saved`` work on the store in ``HOME/models``, in a thread (saving, loading and checking a version read
its weights), with the functions the foreground ``stratcastd saved`` commands use
(:mod:`stratcast.daemon.engine.saved`). A :class:`~stratcast.daemon.engine.saved.store.SavedModelError` becomes a
``bad_saved_model`` error reply with its message (the model, the file, the problem and what to do). Paths are on
the daemon's machine and must be absolute.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from stratcast.daemon.handlers.common import BadState, HandlerError, require
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import (
    ExportSaved,
    ImportSaved,
    ListSaved,
    RemoveSaved,
    SaveRun,
    SetAlias,
    ShowSaved,
)
from stratcast.shared.runfiles import RunFolder

T = TypeVar("T")


class BadSavedModel(HandlerError):
    """A saved model that is missing, damaged, cannot be written or does not fit the request."""

    code = "bad_saved_model"


async def _in_thread(work: Callable[[], T]) -> T:
    """``work()`` in a thread, its :class:`SavedModelError` a :class:`BadSavedModel`."""
    from stratcast.daemon.engine.saved.store import SavedModelError

    try:
        return await asyncio.to_thread(work)
    except SavedModelError as exc:
        raise BadSavedModel(str(exc)) from None


def _absolute(path: str, what: str) -> Path:
    """``path`` when absolute.

    Raises:
        BadSavedModel: when it is relative (the daemon does not share the client's working folder).
    """
    if not Path(path).is_absolute():
        raise BadSavedModel(f"{what} {path!r} must be absolute: the daemon does not share your working folder")
    return Path(path)


async def save(d: DaemonContext, req: SaveRun) -> dict[str, Any]:
    """Save a succeeded training run (not a backtest, not a scoring job) as the next version of ``req.name``."""
    from stratcast.daemon.engine.saved.versions import save_run

    run = d.db.get_run(req.run)
    require(run, ("succeeded",), "save")
    if run.job.backtest is not None or run.job.saved is not None:
        what = "a backtest" if run.job.backtest is not None else f"a scoring job (of saved model {run.job.saved})"
        raise BadState(f"cannot save run {run.id}: it is {what}, which trains no model of its own to keep")
    out = RunFolder(Path(run.out)).out.path
    version = await _in_thread(lambda: save_run(d.home.workspace, out, req.name, source=f"run {run.id}"))
    return version.info() | {"run": run.id}


async def list_saved(d: DaemonContext, req: ListSaved) -> list[dict[str, Any]]:
    """Every saved model: ``name``, ``versions``, ``latest`` and ``aliases``."""
    from stratcast.daemon.engine.saved.store import list_models

    return await _in_thread(lambda: list_models(d.home.workspace))


async def show(d: DaemonContext, req: ShowSaved) -> dict[str, Any]:
    """The version ``req.ref`` names, loaded and checked, with its manifest."""
    from stratcast.daemon.engine.saved.versions import describe, load_saved

    return describe(await _in_thread(lambda: load_saved(d.home.workspace, req.ref)))


async def alias(d: DaemonContext, req: SetAlias) -> dict[str, Any]:
    """Point ``req.alias`` at ``req.ref``'s version, or remove it (``req.remove``; ``req.ref`` is then the name)."""
    from stratcast.daemon.engine.saved.store import parse_ref, remove_alias, set_alias

    home = d.home.workspace
    if req.remove:
        name, at, number = await _in_thread(lambda: parse_ref(req.ref))
        if at is not None or number is not None:
            raise BadSavedModel(f"remove alias {req.alias!r}: give the model's name, not a version ({req.ref!r})")
        await _in_thread(lambda: remove_alias(home, name, req.alias))
        return {"name": name, "alias": req.alias, "removed": True}
    return (await _in_thread(lambda: set_alias(home, req.ref, req.alias))).info() | {"alias": req.alias}


async def remove(d: DaemonContext, req: RemoveSaved) -> dict[str, Any]:
    """Remove the version ``req.ref`` names (one an alias points at only with ``req.force``)."""
    from stratcast.daemon.engine.saved.store import remove_version

    version = await _in_thread(lambda: remove_version(d.home.workspace, req.ref, force=req.force))
    return version.info() | {"removed": True}


async def export(d: DaemonContext, req: ExportSaved) -> dict[str, Any]:
    """Write the version ``req.ref`` names to the tar ``req.path`` (never over an existing file)."""
    from stratcast.daemon.engine.saved.versions import export_version

    path = _absolute(req.path, "export path")
    version = await _in_thread(lambda: export_version(d.home.workspace, req.ref, path))
    return version.info() | {"exported_to": str(path), "bytes": path.stat().st_size}


async def import_(d: DaemonContext, req: ImportSaved) -> dict[str, Any]:
    """Check the exported tar ``req.path`` and add it as a new version of ``req.name`` (default: its own)."""
    from stratcast.daemon.engine.saved.versions import import_version

    path = _absolute(req.path, "import path")
    return (await _in_thread(lambda: import_version(d.home.workspace, path, req.name))).info()
