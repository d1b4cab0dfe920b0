"""The plan cache: its key, a round trip, budget tolerance, and unreadable files ignored with a warning."""

import json
from typing import Any

import pytest

from stratcast.daemon.engine.memory.plancache import PlanCache, PlanCacheWarning, plan_key
from stratcast.daemon.engine.memory.planner import MIB, plan_micro_batch


def linear(m):
    return 100 * MIB + MIB * m


def key(**over):
    args: dict[str, Any] = {
        "model_name": "nhits",
        "model_config": {"hidden": 512, "stacks": 3},
        "input_size": 96,
        "horizon": 24,
        "n_outputs": 1,
        "batch_size": 1024,
        "precision": "bf16",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "torch_version": "2.13.0",
        "activation_checkpointing": False,
    }
    return plan_key(**(args | over))


def a_plan(budget=500 * MIB):
    return plan_micro_batch(linear, budget_bytes=budget, start=128, max_micro_batch=1024)


def test_cache_round_trip(tmp_path):
    cache, plan = PlanCache(tmp_path / "plans.json"), a_plan()
    assert cache.get(key()) is None
    cache.put(key(), plan)
    assert PlanCache(tmp_path / "plans.json").get(key(), budget_bytes=plan.budget_bytes) == plan
    assert [p.name for p in tmp_path.iterdir()] == ["plans.json"]  # no temp file left behind


@pytest.mark.parametrize(
    "change",
    [
        {"model_name": "mlp"},
        {"model_config": {"hidden": 256, "stacks": 3}},
        {"input_size": 48},
        {"horizon": 12},
        {"n_outputs": 3},
        {"batch_size": 512},
        {"precision": "fp32"},
        {"gpu_name": "NVIDIA A100"},
        {"torch_version": "2.12.0"},
        {"activation_checkpointing": True},
        {"extra": {"mode": "per-strategy"}},
    ],
)
def test_cache_key_changes_with_everything_that_changes_memory(tmp_path, change):
    assert key(**change) != key()
    cache = PlanCache(tmp_path / "plans.json")
    cache.put(key(), a_plan())
    assert cache.get(key(**change)) is None


def test_cache_key_ignores_config_dict_order():
    assert key(model_config={"stacks": 3, "hidden": 512}) == key()


def test_a_different_budget_replans_a_close_one_reuses(tmp_path):
    cache, plan = PlanCache(tmp_path / "plans.json"), a_plan(500 * MIB)
    cache.put(key(), plan)
    assert cache.get(key(), budget_bytes=510 * MIB) == plan
    assert cache.get(key(), budget_bytes=800 * MIB) is None  # more memory: plan again to use it
    assert cache.get(key(), budget_bytes=490 * MIB) is None  # the measured 500 MiB no longer fits


@pytest.mark.parametrize("content", ["{not json", "[]", '{"version": 99, "plans": {}}', ""])
def test_corrupt_cache_file_is_ignored_with_a_warning_and_rewritten(tmp_path, content):
    path = tmp_path / "plans.json"
    path.write_text(content)
    cache = PlanCache(path)
    with pytest.warns(PlanCacheWarning):
        assert cache.get(key()) is None
    with pytest.warns(PlanCacheWarning):
        cache.put(key(), a_plan())
    assert cache.get(key()) == a_plan().__class__.from_dict(json.loads(path.read_text())["plans"][key()])


def test_malformed_entry_is_ignored_with_a_warning(tmp_path):
    path = tmp_path / "plans.json"
    path.write_text(json.dumps({"version": 1, "plans": {key(): {"probes": []}}}))
    with pytest.warns(PlanCacheWarning, match="malformed"):
        assert PlanCache(path).get(key()) is None
