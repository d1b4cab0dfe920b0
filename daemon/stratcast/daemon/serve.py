"""``stratcastd serve`` (also ``stratcastd`` with no command): run the daemon in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from stratcast.shared.cli import non_negative_int, positive_float, positive_int
from stratcast.shared.errors import ExitCode
from stratcast.shared.paths import Home, HomeError, resolve_home

if TYPE_CHECKING:
    from stratcast.daemon.telemetry import GpuId


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``serve``."""
    p.add_argument("--home", help="folder for this daemon's state and sockets (default: $STRATCAST_HOME or XDG)")
    p.add_argument("--sockets", help="folder for the sockets (default: HOME/sock, or $STRATCAST_SOCKETS)")
    p.add_argument(
        "--cpu-slots", type=positive_int, default=1, help="concurrent runs on a machine without GPUs (default 1)"
    )
    p.add_argument("--telemetry-hz", type=positive_float, default=5.0, help="GPU/host samples per second (4-10)")
    p.add_argument(
        "--restart-budget", type=non_negative_int, default=3, help="automatic resumes of a run after daemon crashes"
    )
    p.add_argument(
        "--gpus",
        type=gpu_list,
        default=os.environ.get(GPUS_ENV),
        metavar="0,2",
        help=f"use only these GPUs (NVML indices, as nvidia-smi numbers them; default ${GPUS_ENV}, else those "
        f"${CUDA_ENV} shows, as in a Slurm allocation, else all)",
    )
    p.add_argument(
        "--executor",
        type=executor_name,
        default="local",
        metavar="NAME",
        help="what runs the runs: local (worker processes on this machine, the default), "
        "ray (each run a task on a Ray cluster; the optional extra stratcast[ray]), "
        "or slurm (each run a Slurm job through submitit; the optional extra stratcast[slurm])",
    )
    p.add_argument(
        "--ray-address",
        default="auto",
        metavar="ADDR",
        help="the Ray cluster of --executor ray: auto (the one `ray start` runs on this machine, the default), "
        "HEAD:6379, ray://HEAD:10001, or local (start a Ray instance with --cpu-slots CPUs inside the daemon)",
    )
    p.add_argument(
        "--ray-temp-dir",
        type=Path,
        metavar="DIR",
        help="Ray's session folder of --ray-address local (default Ray's, /tmp/ray; keep the path short)",
    )
    p.add_argument(
        "--slurm-cluster",
        choices=("slurm", "local"),
        help="where --executor slurm runs its jobs: slurm (sbatch on this machine, the default), "
        "or local (submitit's local executor: jobs as processes on this machine; tests, a box without Slurm)",
    )
    p.add_argument("--slurm-partition", metavar="P", help="the Slurm partition of the jobs (default: the cluster's)")
    p.add_argument(
        "--slurm-time",
        type=positive_float,
        metavar="MIN",
        help="each job's time limit in minutes (default 240); a job reaching it checkpoints and is requeued",
    )
    p.add_argument(
        "--slurm-gpus-per-job", type=non_negative_int, metavar="N", help="GPUs per job (default 1; 0: on the CPU)"
    )
    p.add_argument(
        "--slurm-max-jobs",
        type=positive_int,
        metavar="N",
        help="how many jobs run at once (default 4); further runs wait in the daemon's queue",
    )
    p.add_argument(
        "--shared-dir",
        type=Path,
        metavar="DIR",
        help="storage every node of the cluster reaches: run folders (checkpoints, logs, outputs) go to DIR/runs "
        "(default: HOME/runs)",
    )
    p.add_argument("--min-free-gib", type=positive_float, default=1.0, help="a GPU with less free memory gets no run")
    p.add_argument("--allow-uid", type=non_negative_int, action="append", default=[], help="also admit this UID on ipc")
    p.add_argument("--tcp", metavar="tcp://HOST:PORT", help="also serve over TCP (events on PORT+1); needs --curve-dir")
    p.add_argument("--curve-dir", type=Path, help="CURVE certificates for --tcp (see `stratcastd keys`)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument(
        "--detach",
        action="store_true",
        help="serve in the background and return once the daemon answers (its log in HOME/daemon.log)",
    )


GPUS_ENV = "STRATCAST_GPUS"
"""Default of ``--gpus`` (a systemd drop-in sets it with ``Environment=``)."""


CUDA_ENV = "CUDA_VISIBLE_DEVICES"
"""Without ``--gpus`` or :data:`GPUS_ENV`, a daemon started with this set (inside a Slurm allocation, a container)
uses only the GPUs it shows."""


def cuda_visible(text: str) -> tuple[GpuId, ...]:
    """The GPUs a ``CUDA_VISIBLE_DEVICES`` value shows, read as CUDA reads it.

    Indices (``4,5``; under ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, the daemon's workers' order, NVML's) and GPU UUIDs
    (``GPU-8f3c...``, or a unique prefix) up to the first item that is neither, as CUDA ignores the rest (``-1``
    hides every GPU); an empty value shows none. MIG instances (``MIG-...``) are not GPUs the daemon places runs
    on: they end the list like any other item CUDA would not take as a GPU.
    """
    chosen: list[GpuId] = []
    for item in (part.strip() for part in text.split(",")):
        if item.isdigit():
            chosen.append(int(item))
        elif item.startswith("GPU-"):
            chosen.append(item)
        else:
            break
    return tuple(dict.fromkeys(chosen))


def gpu_list(text: str) -> tuple[int, ...]:
    """``0,2`` as the GPU indices (0, 2), sorted, each once; argparse reports a bad list as a usage error.

    Raises:
        argparse.ArgumentTypeError: when an item is not a non-negative integer, or the list is empty.
    """
    items = [item.strip() for item in text.split(",")]
    if not all(item.isdigit() for item in items):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of GPU indices like 0,2")
    return tuple(sorted({int(item) for item in items}))


def executor_name(text: str) -> str:
    """An ``--executor`` name this install has; argparse reports any other as a usage error naming the choices.

    Raises:
        argparse.ArgumentTypeError: for a name not in :data:`stratcast.daemon.executors.base.EXECUTORS`.
    """
    from stratcast.daemon.executors.base import EXECUTORS, UnknownExecutor, missing_extra

    if text not in EXECUTORS:
        raise argparse.ArgumentTypeError(str(UnknownExecutor(text)))
    if (missing := missing_extra(text)) is not None:
        raise argparse.ArgumentTypeError(missing)
    return text


def serve(args: argparse.Namespace) -> int:
    """Run the daemon until shutdown; exit codes: 0 clean, 3 unusable home, 1 another daemon or a crash."""
    from stratcast.daemon.channels import ChannelError
    from stratcast.daemon.executors.ray import RayOptions
    from stratcast.daemon.executors.slurm import SlurmOptions
    from stratcast.daemon.instance import DaemonRunning
    from stratcast.daemon.server import Daemon, Options
    from stratcast.daemon.statedb import StoreError
    from stratcast.daemon.telemetry import GpuSelectionError

    os.umask(0o077)  # state, logs and checkpoints readable by the daemon's user only
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if not 0.5 <= args.telemetry_hz <= 20:
        print("stratcastd: error: --telemetry-hz must be between 0.5 and 20", file=sys.stderr)
        return ExitCode.USAGE
    if (args.tcp is None) != (args.curve_dir is None):
        print("stratcastd: error: --tcp and --curve-dir go together (TCP is CURVE-only)", file=sys.stderr)
        return ExitCode.USAGE
    if args.executor != "ray" and (args.ray_address != "auto" or args.ray_temp_dir is not None):
        print("stratcastd: error: --ray-address and --ray-temp-dir go with --executor ray", file=sys.stderr)
        return ExitCode.USAGE
    slurm = {
        "cluster": args.slurm_cluster,
        "partition": args.slurm_partition,
        "time_min": args.slurm_time,
        "gpus_per_job": args.slurm_gpus_per_job,
        "max_jobs": args.slurm_max_jobs,
    }
    slurm = {key: value for key, value in slurm.items() if value is not None}
    if args.executor != "slurm" and slurm:
        print("stratcastd: error: the --slurm-* options go with --executor slurm", file=sys.stderr)
        return ExitCode.USAGE
    if args.detach:
        return detach(args)
    gpus: tuple[GpuId, ...] | None = args.gpus
    given = "--gpus"
    if gpus is None and CUDA_ENV in os.environ:
        gpus, given = cuda_visible(os.environ[CUDA_ENV]), f"{CUDA_ENV}={os.environ[CUDA_ENV]}"
        logging.getLogger(__name__).info("%s: the daemon uses only the GPUs it shows", given)
    options = Options(
        cpu_slots=max(1, args.cpu_slots),
        telemetry_hz=args.telemetry_hz,
        restart_budget=args.restart_budget,
        min_free_gib=args.min_free_gib,
        gpus=gpus,
        executor=args.executor,
        ray=RayOptions(address=args.ray_address, cpus=max(1, args.cpu_slots), temp_dir=args.ray_temp_dir),
        slurm=SlurmOptions(**slurm),
        uids=tuple(args.allow_uid),
        tcp=args.tcp,
        curve_dir=args.curve_dir,
    )
    try:
        home = resolve_home(args.home, args.sockets)
        shared = None if args.shared_dir is None else args.shared_dir.expanduser().resolve()
        asyncio.run(Daemon(dataclasses.replace(home, shared=shared), options).serve())
    except (HomeError, StoreError, ChannelError) as exc:
        print(f"stratcastd: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except GpuSelectionError as exc:
        if given == "--gpus":
            print(f"stratcastd: error: --gpus {','.join(map(str, gpus or ()))}: {exc}", file=sys.stderr)
        else:
            print(f"stratcastd: error: {given}: {exc} (give --gpus to choose others)", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except DaemonRunning as exc:
        print(f"stratcastd: error: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK


def detach(args: argparse.Namespace) -> int:
    """Fork a daemon into its own session (output to ``HOME/daemon.log``); return once it answers or has failed.

    The parent waits for the daemon to answer a handshake, so the next command of a script finds it serving
    (``stratcastd serve &`` returns at once, and a client started right after it finds no socket yet).
    """
    try:
        home = resolve_home(args.home, args.sockets)
    except HomeError as exc:
        print(f"stratcastd: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        home.state.mkdir(parents=True, exist_ok=True)
        log_path = home.daemon_log
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        print(f"stratcastd: error: cannot write the daemon's log in {home.state}: {exc.strerror}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if (other := _serving_pid(home)) is not None:
        print(f"stratcastd: error: another stratcastd (pid {other}) already serves {home.state}", file=sys.stderr)
        return ExitCode.FAILED
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the daemon: a session of its own, no terminal, output to the log
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        code: int = ExitCode.FAILED
        try:
            code = serve(argparse.Namespace(**{**vars(args), "detach": False}))
        finally:  # never return into the parent's code path, whatever happened
            os._exit(code)
    os.close(log_fd)
    return _await_detached(home, pid, log_path)


def _await_detached(home: Home, pid: int, log_path: Path) -> int:
    """Wait until the forked daemon answers (0) or exits (its code, with the log's last lines)."""
    from stratcast.daemon.embedded import STARTUP_S

    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            print(f"stratcastd: the daemon exited at start ({log_path}):", *tail, sep="\n  ", file=sys.stderr)
            return os.waitstatus_to_exitcode(status) or ExitCode.FAILED
        if _serving_pid(home) == pid:
            print(f"stratcastd serving {home.state} (pid {pid}; log {log_path}); `stratcast shutdown` stops it")
            return ExitCode.OK
        time.sleep(0.2)
    print(f"stratcastd: the daemon (pid {pid}) did not answer within {STARTUP_S:g} s; see {log_path}", file=sys.stderr)
    return ExitCode.FAILED


def _serving_pid(home: Home) -> int | None:
    """The pid of the daemon that answers at ``home``, or None when none does (one connection, one request)."""
    from stratcast.shared.client import Client, DaemonUnavailable, RequestFailed
    from stratcast.shared.protocol import Status

    if not Path(home.control.removeprefix("ipc://")).exists():  # no socket: nothing to wait a second for
        return None
    try:
        with Client(home, timeout_s=2.0) as client:
            return int(client.call(Status())["pid"])
    except (DaemonUnavailable, RequestFailed):
        return None


def add_keys_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``keys``."""
    p.add_argument("--curve-dir", type=Path, required=True, help="folder of the daemon's CURVE certificates")
    p.add_argument("--client", required=True, help="name of the client certificate to create")


def make_keys(args: argparse.Namespace) -> int:
    """Create the daemon's certificate (once) and a client's; say which files go to the client."""
    from stratcast.daemon.channels import make_keys as create

    server, client = create(args.curve_dir, args.client)
    print(f"client {args.client!r} is allowed; give the client these two files:")
    print(f"  {server}   (the daemon's public certificate: stratcast --server-key)")
    print(f"  {client}   (the client's secret certificate: stratcast --client-key; keep it private)")
    return ExitCode.OK
