"""The memory planner on synthetic memory curves, Lightning's search, levers, and the probe."""

import json

import pytest
import torch

from stratcast.daemon.engine.memory.planner import (
    MIB,
    CudaProbe,
    MemoryPlan,
    budget_bytes,
    fit_line,
    levers,
    lightning_search,
    plan_micro_batch,
)
from stratcast.daemon.zoo.catalog import build_model, make_config

# --- synthetic memory curves: peak bytes of one step at micro-batch m -------------------------------------------


def linear(m):
    return 100 * MIB + MIB * m


def convex(m):
    return 50 * MIB + MIB * m // 2 + int(0.002 * MIB * m * m)


def fixed_optimizer_peak(m):
    # the optimizer step's 400 MiB peak hides the batch term below m = 300
    return max(400 * MIB, 100 * MIB + MIB * m)


def oom_wall(m, wall=300):
    if m > wall:
        raise torch.OutOfMemoryError(f"CUDA out of memory at {m}")
    return linear(m)


def cpu_oom_wall(m, wall=300):
    if m > wall:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
    return linear(m)


CURVES = {"linear": linear, "convex": convex, "fixed": fixed_optimizer_peak, "wall": oom_wall, "cpu_wall": cpu_oom_wall}


class Counting:
    """A measure function that records every call."""

    def __init__(self, curve):
        self.curve, self.calls = curve, []

    def __call__(self, m):
        self.calls.append(m)
        return self.curve(m)


def true_largest(curve, budget, cap=4096):
    def fits(m):
        try:
            return curve(m) <= budget
        except RuntimeError:
            return False

    return max((m for m in range(1, cap + 1) if fits(m)), default=0)


# --- plan_micro_batch ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget_mib", [300, 500, 1000, 2000])
@pytest.mark.parametrize("start", [64, 128])
def test_linear_curve_gives_exactly_the_largest_micro_batch_that_fits(budget_mib, start):
    budget = budget_mib * MIB
    plan = plan_micro_batch(linear, budget_bytes=budget, start=start, max_micro_batch=4096)
    assert plan.micro_batch == true_largest(linear, budget)
    assert plan.measured_peak == linear(plan.micro_batch) <= budget


@pytest.mark.parametrize("name", list(CURVES))
@pytest.mark.parametrize("budget_mib", [300, 500, 1000, 2000])
@pytest.mark.parametrize("start", [16, 64, 128])
def test_confirmed_choice_is_never_over_budget_and_close_to_the_largest(name, budget_mib, start):
    curve, budget = CURVES[name], budget_mib * MIB
    plan = plan_micro_batch(curve, budget_bytes=budget, start=start, max_micro_batch=4096)
    best = true_largest(curve, budget)
    assert plan.micro_batch <= best
    if best == 0:  # the fixed 400 MiB optimizer peak never fits 300 MiB
        assert not plan.fits and plan.measured_peak is None
        return
    assert plan.measured_peak is not None and plan.measured_peak <= budget
    # convex curves and OOM walls land a little below the optimum (the chord / the halving stops short)
    assert plan.micro_batch >= 0.9 * best


@pytest.mark.parametrize(
    ("curve", "budget_mib", "start"),
    [(linear, 300, 64), (linear, 500, 128), (linear, 1000, 128), (convex, 300, 128), (convex, 500, 128)],
)
def test_common_cases_use_at_most_four_probes_confirmation_included(curve, budget_mib, start):
    measure = Counting(curve)
    plan = plan_micro_batch(measure, budget_bytes=budget_mib * MIB, start=start, max_micro_batch=4096)
    assert plan.n_probes == len(measure.calls) <= 4


def test_fit_uses_the_last_two_points_so_a_fixed_optimizer_peak_does_not_mislead_it():
    # at m = 64 the optimizer's 400 MiB peak dominates; a line through it would flatten the batch slope
    points = [(64, fixed_optimizer_peak(64)), (512, fixed_optimizer_peak(512)), (1024, fixed_optimizer_peak(1024))]
    assert fit_line(points) == (100 * MIB, MIB)


def test_single_point_fit_goes_through_the_origin():
    assert fit_line([(10, 200)]) == (0.0, 20.0)


def test_extrapolation_is_capped_at_twice_the_largest_probe():
    measure = Counting(linear)
    plan = plan_micro_batch(measure, budget_bytes=100_000 * MIB, start=16, max_micro_batch=100_000)
    largest_probe_before_choice = max(measure.calls[:-1])
    assert plan.micro_batch == 2 * largest_probe_before_choice
    assert plan.measured_peak == linear(plan.micro_batch)


def test_unconfirmed_plan_also_respects_the_cap_and_measures_nothing_more():
    measure = Counting(linear)
    plan = plan_micro_batch(measure, budget_bytes=100_000 * MIB, start=16, max_micro_batch=100_000, confirm=False)
    assert plan.micro_batch == 2 * max(measure.calls)
    assert plan.measured_peak is None
    assert plan.predicted_peak == linear(plan.micro_batch)


def test_choice_never_exceeds_the_configured_batch_size():
    plan = plan_micro_batch(linear, budget_bytes=10_000 * MIB, start=16, max_micro_batch=100)
    assert plan.micro_batch == 100
    assert max(m for m, _ in plan.probes) == 100


def test_start_above_the_batch_size_is_clipped():
    plan = plan_micro_batch(linear, budget_bytes=10_000 * MIB, start=512, max_micro_batch=48)
    assert plan.micro_batch == 48 and plan.probes == ((48, linear(48)),)


def test_oom_during_probing_counts_as_not_fitting():
    plan = plan_micro_batch(oom_wall, budget_bytes=1000 * MIB, start=128, max_micro_batch=4096)
    assert (512, None) in plan.probes
    assert 256 <= plan.micro_batch <= 300
    assert plan.measured_peak == linear(plan.micro_batch)


def test_cpu_allocator_failure_counts_as_an_oom():
    plan = plan_micro_batch(cpu_oom_wall, budget_bytes=1000 * MIB, start=128, max_micro_batch=4096)
    assert (512, None) in plan.probes and plan.micro_batch >= 256


def test_start_that_does_not_fit_probes_downward():
    plan = plan_micro_batch(linear, budget_bytes=150 * MIB, start=256, max_micro_batch=4096)
    assert [m for m, _ in plan.probes][:3] == [256, 128, 64]
    assert plan.micro_batch == 50


def test_nothing_fits_gives_micro_batch_zero_and_says_so():
    plan = plan_micro_batch(linear, budget_bytes=50 * MIB, start=8, max_micro_batch=64)
    assert plan.micro_batch == 0 and not plan.fits and plan.measured_peak is None
    assert [m for m, _ in plan.probes] == [8, 4, 2, 1]
    assert "Not even a micro-batch of 1 fits" in plan.explain()


def test_other_errors_propagate():
    def broken(m):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        plan_micro_batch(broken, budget_bytes=MIB, start=1, max_micro_batch=8)


def test_rejects_nonpositive_sizes():
    with pytest.raises(ValueError):
        plan_micro_batch(linear, budget_bytes=MIB, start=0, max_micro_batch=8)


def test_plan_round_trips_through_a_dict_and_explains_itself():
    plan = plan_micro_batch(linear, budget_bytes=500 * MIB, start=128, max_micro_batch=1024)
    d = json.loads(json.dumps(plan.to_dict()))
    assert d["n_probes"] == plan.n_probes and d["micro_batch"] == 400
    assert MemoryPlan.from_dict(d) == plan
    text = plan.explain()
    assert "Micro-batch 400 of batch 1024 (3 accumulation step(s))" in text and "measured 500.0 MiB" in text


# --- budget_bytes --------------------------------------------------------------------------------------------------


def test_budget_is_free_memory_less_margin_less_reserve():
    assert budget_bytes(1000 * MIB, margin=0.1, reserve=100 * MIB) == 800 * MIB
    assert budget_bytes(100 * MIB) == 0
    with pytest.raises(ValueError):
        budget_bytes(MIB, margin=1.0)


# --- lightning_search ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CURVES))
@pytest.mark.parametrize("budget_mib", [300, 500, 1000])
def test_lightning_search_finds_the_largest_that_fits(name, budget_mib):
    curve, budget = CURVES[name], budget_mib * MIB
    chosen, probes = lightning_search(curve, budget, 64, 4096)
    assert chosen == true_largest(curve, budget)
    assert probes[0][0] == 64 and len(probes) >= 7


def test_lightning_search_stops_at_the_cap_and_at_zero():
    assert lightning_search(linear, 10_000 * MIB, 16, 100) == (
        100,
        [(16, linear(16)), (32, linear(32)), (64, linear(64)), (100, linear(100))],
    )
    chosen, probes = lightning_search(linear, 50 * MIB, 4, 64)
    assert chosen == 0 and [m for m, _ in probes] == [4, 2, 1]


# --- levers --------------------------------------------------------------------------------------------------------


PROBES = ((256, 356 * MIB), (512, 612 * MIB))  # a = 100 MiB, b = 1 MiB per sample


def test_levers_say_which_lever_makes_the_requested_batch_fit():
    text = levers(PROBES, requested=1024, budget_bytes=700 * MIB)
    assert text[0] == "Batch 1024 is predicted at 1124.0 MiB, over the budget of 700.0 MiB."
    assert text[1] == "Bf16 autocast (about -49% per sample) would make it fit: predicted 622.2 MiB."
    assert text[2] == "Activation checkpointing (about -33% per sample) would not be enough: predicted 786.1 MiB."
    assert text[3].startswith("Bf16 autocast with activation checkpointing (about -66% per sample) would make it fit")


def test_levers_skip_levers_already_on_and_report_a_batch_that_fits():
    text = levers(PROBES, requested=1024, budget_bytes=700 * MIB, bf16=True)
    assert len(text) == 2 and text[1].startswith("Activation checkpointing")
    assert levers(PROBES, requested=256, budget_bytes=700 * MIB) == [
        "Batch 256 already fits: predicted 356.0 MiB of 700.0 MiB."
    ]
    assert "No probe succeeded" in levers(((8, None),), requested=8, budget_bytes=MIB)[0]


def test_levers_say_when_the_model_has_no_activation_checkpointing():
    text = levers(PROBES, requested=1024, budget_bytes=700 * MIB, checkpointable=False)
    assert len(text) == 3 and text[1].startswith("Bf16 autocast (about -49% per sample) would make it fit")
    assert text[2] == "Activation checkpointing is not available for this model."
    assert not any("with activation checkpointing" in line for line in text)


# --- CudaProbe: state restoration with a real model on CPU (fake peak reader) --------------------------------------


def probe_setup(fail_at=None, error="can't allocate memory"):
    torch.manual_seed(0)
    config = make_config("mlp", {"dropout": 0.2}, tiny=True)
    net = build_model("mlp", config, input_size=24, horizon=8)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)

    def step(m):
        x, y = torch.randn(m, 24), torch.randn(m, 8, 1)
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        if fail_at is not None and m >= fail_at:
            raise RuntimeError(f"DefaultCPUAllocator: {error}")
        opt.step()
        opt.zero_grad()

    step(4)  # the optimizer has state to restore
    peaks = {"reset": 0}

    def reset():
        peaks["reset"] += 1

    probe = CudaProbe(net, opt, step, torch.device("cpu"), reset_peak=reset, read_peak=lambda: 1234)
    return net, opt, probe, peaks


def snapshot(net, opt):
    return (
        {k: v.clone() for k, v in net.state_dict().items()},
        {i: {k: v.clone() for k, v in s.items()} for i, s in opt.state_dict()["state"].items()},
        torch.get_rng_state().clone(),
    )


def assert_same(before, after):
    assert before[0].keys() == after[0].keys()
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1].keys() == after[1].keys()
    for i in before[1]:
        assert all(torch.equal(before[1][i][k], after[1][i][k]) for k in before[1][i])
    assert torch.equal(before[2], after[2])


def test_probe_leaves_weights_optimizer_and_rng_unchanged():
    net, opt, probe, peaks = probe_setup()
    before = snapshot(net, opt)
    assert probe.measure(32) == 1234 and peaks["reset"] == 1
    assert_same(before, snapshot(net, opt))
    assert all(p.grad is None for p in net.parameters())


def test_planning_with_the_probe_leaves_no_trace():
    net, opt, probe, _ = probe_setup()
    before = snapshot(net, opt)
    plan = plan_micro_batch(probe.measure, budget_bytes=10_000, start=4, max_micro_batch=32)
    assert plan.micro_batch == 32  # a flat fake peak of 1234 fits everywhere
    assert_same(before, snapshot(net, opt))


def test_probe_oom_is_raised_as_out_of_memory_after_restoring():
    net, opt, probe, _ = probe_setup(fail_at=64)
    before = snapshot(net, opt)
    with pytest.raises(torch.OutOfMemoryError, match="micro-batch 64"):
        probe.measure(64)
    assert_same(before, snapshot(net, opt))
    assert all(p.grad is None for p in net.parameters())
    plan = plan_micro_batch(probe.measure, budget_bytes=10_000, start=16, max_micro_batch=256)
    assert (64, None) in plan.probes and 32 <= plan.micro_batch < 64


def test_probe_other_errors_propagate_unchanged_after_restoring():
    net, opt, probe, _ = probe_setup(fail_at=8, error="index out of range")  # not an OOM
    before = snapshot(net, opt)
    with pytest.raises(RuntimeError, match="index out of range"):
        probe.measure(8)
    assert_same(before, snapshot(net, opt))


@pytest.mark.gpu
def test_cuda_probe_plans_a_real_model_within_budget_and_leaves_no_trace():
    dev = torch.device("cuda")
    torch.manual_seed(0)
    net = build_model("mlp", make_config("mlp"), input_size=96, horizon=24).to(dev)
    opt = torch.optim.AdamW(net.parameters())

    def step(m):
        x, y = torch.randn(m, 96, device=dev), torch.randn(m, 24, 1, device=dev)
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
        opt.zero_grad()

    step(8)
    probe = CudaProbe(net, opt, step, dev)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.cuda.get_rng_state()
    budget = probe.measure(256) * 3
    plan = plan_micro_batch(probe.measure, budget_bytes=budget, start=64, max_micro_batch=1 << 16)
    assert plan.fits and plan.measured_peak is not None and plan.measured_peak <= budget
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(rng, torch.cuda.get_rng_state())
