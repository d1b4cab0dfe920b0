import os

import pytest
import torch

from stratcast.daemon.engine.device import THP_ENV, DeviceError, enable_cpu_huge_pages, resolve_device


def test_huge_pages_are_turned_on_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv(THP_ENV, raising=False)
    enable_cpu_huge_pages()
    assert os.environ[THP_ENV] == "1"
    monkeypatch.setenv(THP_ENV, "0")
    enable_cpu_huge_pages()
    assert os.environ[THP_ENV] == "0"


def test_auto_falls_back_to_the_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "vulkan"])
def test_unknown_devices_name_the_choices(spec, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="auto, cpu"):
        resolve_device(spec)
