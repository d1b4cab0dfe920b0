"""Device memory as the planner and the trainer see it: what is allocated, what is still available, the peak.

:class:`DeviceMemory` is the interface; :class:`CudaMemory` reads the CUDA caching allocator, and tests on a CPU
pass a fake. There is no implementation for the CPU or MPS: there the planner does not probe and grow-back does
not check memory (:func:`device_memory` returns None).

The figures are the allocator's *allocated* bytes (tensors), which is what ``max_memory_allocated`` measures as a
peak. The bytes a step may reach are :func:`peak_budget`: what is allocated now plus the budget of what is still
available (:func:`~stratcast.daemon.engine.memory.planner.budget_bytes`: less a margin and a fixed reserve).
"""

from __future__ import annotations

from typing import Protocol

import torch

from stratcast.daemon.engine.memory.planner import DEFAULT_RESERVE, budget_bytes

MARGIN = 0.1
"""Share of the available memory a plan leaves unused, for growth the probes did not see."""


class DeviceMemory(Protocol):
    """The allocator figures of one device, for this process."""

    @property
    def name(self) -> str:
        """The device's model name (a plan cache key part), e.g. ``NVIDIA H100 80GB HBM3``."""
        ...

    def allocated(self) -> int:
        """Bytes held by tensors now."""
        ...

    def available(self) -> int:
        """Bytes this process could still allocate: free device memory plus its own cached blocks, within its cap."""
        ...

    def reset_peak(self) -> None:
        """Start a new peak measurement."""
        ...

    def peak(self) -> int:
        """The most bytes held by tensors since :meth:`reset_peak`."""
        ...


class CudaMemory:
    """:class:`DeviceMemory` of a CUDA device, from the caching allocator (no device synchronisation)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @property
    def name(self) -> str:
        """The GPU's model name."""
        return torch.cuda.get_device_name(self.device)

    def allocated(self) -> int:
        """``torch.cuda.memory_allocated``."""
        return int(torch.cuda.memory_allocated(self.device))

    def available(self) -> int:
        """Free device memory (within a ``set_per_process_memory_fraction`` cap) plus the unused cached blocks."""
        free, total = torch.cuda.mem_get_info(self.device)
        reserved = int(torch.cuda.memory_reserved(self.device))
        fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)  # torch >= 2.7
        cap = total if fraction is None else int(fraction(self.device) * total)
        return max(0, min(free, cap - reserved) + reserved - self.allocated())

    def reset_peak(self) -> None:
        """``torch.cuda.reset_peak_memory_stats``."""
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        """``torch.cuda.max_memory_allocated``."""
        return int(torch.cuda.max_memory_allocated(self.device))


def device_memory(device: torch.device) -> DeviceMemory | None:
    """The memory figures of ``device``: :class:`CudaMemory` on CUDA, None elsewhere."""
    if device.type == "cuda" and torch.cuda.is_available():
        return CudaMemory(device)
    return None


def peak_budget(memory: DeviceMemory, *, margin: float = MARGIN, reserve: int = DEFAULT_RESERVE) -> int:
    """The peak allocated bytes a step may reach: allocated now plus the budget of what is still available."""
    return memory.allocated() + budget_bytes(memory.available(), margin=margin, reserve=reserve)
