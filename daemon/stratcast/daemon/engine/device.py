"""Choosing the compute device and describing it to the user."""

from __future__ import annotations

import os

import torch

GIB = 1024**3
THP_ENV = "THP_MEM_ALLOC_ENABLE"


def enable_cpu_huge_pages() -> None:
    """Ask torch's CPU allocator to back large tensors with transparent huge pages (unless the user chose).

    Without them every fresh CPU tensor above 32 MiB is a new ``mmap`` that faults in 4 KiB pages: a stacked
    per-strategy step at 6,000 members allocates its ~130 MiB weight gradients afresh each step, and the faults
    cost a third of the step (measured on 2 cores, see docs/benchmarks.md). torch reads the variable at its first
    large allocation, so call this before building models or panels. No effect on CUDA or where the kernel
    disables THP.
    """
    os.environ.setdefault(THP_ENV, "1")


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
