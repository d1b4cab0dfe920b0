"""From one control frame to one reply: decoding, the handshake, the handler, and errors as replies.

Nothing a client sends can take the daemon down: a bad frame, an unknown request, a request in the wrong state
or a bug in a handler all become an ``error`` reply, and an unauthenticated or malformed payload is never
logged in full.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import zmq

from stratcast.daemon.channels import Channel
from stratcast.daemon.handlers import (
    add_schedule,
    check_data,
    export_results,
    hello,
    hold_run,
    kill_run,
    list_gpus,
    list_models,
    list_runs,
    list_schedules,
    queue,
    read_history,
    read_logs,
    read_results,
    release_run,
    remove_run,
    remove_schedule,
    restart_run,
    resume_run,
    run_schedule_now,
    saved,
    schedule_state,
    set_priority,
    show_run,
    shutdown,
    snapshot,
    status,
    stop_run,
    studies,
    submit,
)
from stratcast.daemon.handlers.common import HandlerError
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.daemon.schedules import ScheduleError
from stratcast.daemon.store import NotFound
from stratcast.shared.protocol import Error, Hello, ProtocolError, Reply, Request, decode_request, encode

log = logging.getLogger("stratcastd")

Handler = Callable[[DaemonContext, Any], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {
    "hello": hello.handle,
    "snapshot": snapshot.handle,
    "status": status.handle,
    "submit": submit.handle,
    "list_runs": list_runs.handle,
    "show_run": show_run.handle,
    "stop_run": stop_run.handle,
    "resume_run": resume_run.handle,
    "hold_run": hold_run.handle,
    "release_run": release_run.handle,
    "kill_run": kill_run.handle,
    "restart_run": restart_run.handle,
    "remove_run": remove_run.handle,
    "set_priority": set_priority.handle,
    "read_logs": read_logs.handle,
    "read_history": read_history.handle,
    "read_results": read_results.handle,
    "export_results": export_results.handle,
    "check_data": check_data.handle,
    "list_gpus": list_gpus.handle,
    "list_models": list_models.handle,
    "add_schedule": add_schedule.handle,
    "list_schedules": list_schedules.handle,
    "remove_schedule": remove_schedule.handle,
    "pause_schedule": schedule_state.pause,
    "resume_schedule": schedule_state.resume,
    "run_schedule_now": run_schedule_now.handle,
    "pause_queue": queue.pause,
    "resume_queue": queue.resume,
    "save_run": saved.save,
    "list_saved": saved.list_saved,
    "show_saved": saved.show,
    "set_alias": saved.alias,
    "remove_saved": saved.remove,
    "export_saved": saved.export,
    "import_saved": saved.import_,
    "submit_study": studies.submit,
    "list_studies": studies.list_studies,
    "show_study": studies.show,
    "stop_study": studies.stop,
    "resume_study": studies.resume,
    "retrain_study": studies.retrain,
    "shutdown": shutdown.handle,
}


async def handle_request(d: DaemonContext, channel: Channel, identity: bytes, frames: list[bytes]) -> None:
    """Answer one request from ``identity`` on ``channel``; every outcome is a reply frame."""
    if len(frames) != 1:
        error = Error(id=None, code="bad_request", message=f"a request is 1 frame, got {len(frames)}")
        _send(channel, identity, error)
        return
    try:
        req = decode_request(frames[0])
    except ProtocolError as exc:
        _send(channel, identity, Error(id=exc.request_id, code=exc.code, message=str(exc)))
        return
    _send(channel, identity, await _answer(d, channel, identity, req))


def _send(channel: Channel, identity: bytes, reply: Reply | Error) -> None:
    with contextlib.suppress(zmq.ZMQError):  # a client gone before its reply is not the daemon's problem
        channel.router.send_multipart([identity, encode(reply)], flags=zmq.NOBLOCK)


async def _answer(d: DaemonContext, channel: Channel, identity: bytes, req: Request) -> Reply | Error:
    kind = type(req).__struct_config__.tag
    peer = (channel.name, identity)
    if not isinstance(req, Hello) and peer not in d.peers:
        return Error(id=req.id, code="handshake_required", message="send hello with the protocol version first")
    try:
        result = await HANDLERS[str(kind)](d, req)
    except HandlerError as exc:
        return Error(id=req.id, code=exc.code, message=str(exc))
    except NotFound as exc:
        return Error(id=req.id, code="not_found", message=str(exc).strip("'\""))
    except ScheduleError as exc:
        return Error(id=req.id, code="invalid_spec", message=str(exc))
    except Exception:  # a bug in a handler must not take the daemon down
        log.exception("request %s failed", kind)
        return Error(id=req.id, code="internal", message=f"internal error handling {kind}; see the daemon's log")
    if isinstance(req, Hello):
        d.greet(peer)
        result["events"] = channel.events  # the event endpoint of the transport this client came in on
    return Reply(id=req.id, result=result)
