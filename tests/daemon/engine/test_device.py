import os
import subprocess
import sys

import pytest
import torch

from stratcast.daemon.engine.memory.device import THP_ENV, DeviceError, resolve_device, tune_cpu_allocator


def test_huge_pages_are_turned_on_unless_the_user_chose(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")  # keeps this process's malloc as it is
    monkeypatch.delenv(THP_ENV, raising=False)
    assert tune_cpu_allocator() is False
    assert os.environ[THP_ENV] == "1"
    monkeypatch.setenv(THP_ENV, "0")
    tune_cpu_allocator()
    assert os.environ[THP_ENV] == "0"


# resident pages after freeing a 256 MiB tensor, in a fresh interpreter, with the allocator tuned or not
FREED_RSS = """
import sys, torch
from stratcast.daemon.engine.memory.device import tune_cpu_allocator
tuned = tune_cpu_allocator() if sys.argv[1] == "tune" else False
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
t = torch.ones(64 * 2**20)
before = rss()
del t
print(int(tuned), before - rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is tuned on Linux only")
@pytest.mark.parametrize("mode", ["tune", "plain"])
def test_a_tuned_allocator_keeps_freed_tensors_for_reuse(mode):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", FREED_RSS, mode], capture_output=True, text=True, env=env, check=True)
    tuned, returned = map(int, out.stdout.split())
    if mode == "plain":
        assert returned > 200 * 2**20  # glibc unmapped the tensor's pages
    elif tuned:  # glibc: the pages stay in the heap for the next tensor
        assert returned < 16 * 2**20


def test_auto_falls_back_to_the_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "vulkan"])
def test_unknown_devices_name_the_choices(spec, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="auto, cpu"):
        resolve_device(spec)
