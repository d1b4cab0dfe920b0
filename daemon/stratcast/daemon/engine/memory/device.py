"""Choosing the compute device and describing it to the user."""

from __future__ import annotations

import ctypes
import os
import sys

import torch

GIB = 1024**3
THP_ENV = "THP_MEM_ALLOC_ENABLE"
GLIBC_MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)


def tune_cpu_allocator() -> bool:
    """Make large CPU tensors cheap to allocate again and again; true when freed memory now stays in the process.

    A training step frees and allocates the same large tensors every step (a stacked per-strategy step at 6,000
    members: ~1 GiB of windows, activations and ~130 MiB weight gradients). glibc serves every allocation above
    32 MiB with a fresh ``mmap`` and unmaps it on free, so each step's tensors fault their pages in again and the
    kernel zeroes them: a fresh 130 MiB fill costs 8x a reused one, and page faults were about a third of a
    stacked step (measured on 2 cores, see docs/benchmarks.md). Two remedies, each left alone where the user chose:

    - torch's CPU allocator backs large tensors with transparent huge pages (``THP_MEM_ALLOC_ENABLE=1``; torch
      reads it at its first large allocation, so call this before building models or panels);
    - glibc's ``malloc`` keeps large blocks in its heap (``mallopt``: no ``mmap``, no trimming), so a freed tensor's
      pages are reused by the next one. The process keeps its peak heap until it exits, which suits a worker that
      runs one job. Skipped where ``MALLOC_MMAP_MAX_``/``MALLOC_TRIM_THRESHOLD_`` are set or libc is not glibc.
    """
    os.environ.setdefault(THP_ENV, "1")
    if sys.platform != "linux" or any(name in os.environ for name in GLIBC_MALLOC_ENV):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


class DeviceError(ValueError):
    """The requested device does not exist here; the message says what is available."""


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked.

    Raises:
        DeviceError: for an unknown name or a device this machine lacks.
    """
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"--device {spec}: no CUDA GPU is visible here; use --device cpu or auto")
        if (dev.index or 0) >= count:
            raise DeviceError(f"--device {spec}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
        return torch.device("cuda", dev.index or 0)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps: MPS is not available here; use --device cpu or auto")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


def describe_device(dev: torch.device) -> str:
    """A line naming the device and its memory, e.g. ``cuda:0 NVIDIA H100 80GB HBM3 (79.1 GiB)``."""
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        return f"{dev} {props.name} ({props.total_memory / GIB:.1f} GiB)"
    if dev.type == "mps":
        return "mps (Apple GPU, shared memory)"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB if hasattr(os, "sysconf") else 0.0
    return f"cpu ({torch.get_num_threads()} threads, {mem:.1f} GiB RAM)"
