import time

import pytest


@pytest.fixture
def utc(monkeypatch):
    """Show times in UTC (snapshots must not depend on the machine's time zone)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
