import pytest

from stratcast.daemon.queue import DeviceView, Plan, plan
from stratcast.shared.protocol import JobSpec, Placement, RunInfo

GIB = 1024.0


def run(run_id, state="queued", *, created=None, **placement) -> RunInfo:
    return RunInfo(
        id=run_id,
        name=f"r{run_id}",
        state=state,
        job=JobSpec(data="x.parquet"),
        placement=Placement(**placement),
        created=float(run_id) if created is None else created,
    )


def gpu(index, *, total=16.0, free=None, foreign=(), runs=(), caps=None) -> DeviceView:
    free = total - 0.5 if free is None else free
    caps = (None,) * len(runs) if caps is None else caps
    return DeviceView(f"cuda:{index}", index, total * GIB, free * GIB, tuple(foreign), tuple(runs), tuple(caps))


def cpu(runs=()) -> DeviceView:
    return DeviceView("cpu", None, 64 * GIB, 32 * GIB, (), tuple(runs), (None,) * len(runs))


def make_plan(runs, devices, *, paused=False, cpu_slots=2) -> Plan:
    return plan(runs, devices, paused=paused, cpu_slots=cpu_slots)


# -- reasons that do not depend on devices -------------------------------------------------------------------


def test_held_runs_wait_with_reason_held():
    result = make_plan([run(1, "held"), run(2)], [gpu(0)])
    assert result == Plan(starts=[(2, "cuda:0")], reasons={1: "held"})


def test_a_paused_queue_starts_nothing():
    result = make_plan([run(1), run(2, "held")], [gpu(0)], paused=True)
    assert result == Plan(starts=[], reasons={1: "queue paused", 2: "held"})


def test_runs_in_other_states_are_neither_started_nor_explained():
    states = ["running", "succeeded", "failed", "oom-failed", "stopped", "killed", "interrupted"]
    result = make_plan([run(i, state) for i, state in enumerate(states, 1)], [gpu(0), gpu(1)])
    assert result == Plan(starts=[], reasons={})


def test_a_run_waits_for_its_dependencies_until_they_succeed():
    runs = [run(3, "running", gpu=1), run(4, "stopped"), run(5, after=[3, 4])]
    assert make_plan(runs, [gpu(0)]).reasons == {5: "waiting for run 3 (running), run 4 (stopped)"}
    runs = [run(3, "succeeded"), run(4, "succeeded"), run(5, after=[3, 4])]
    assert make_plan(runs, [gpu(0)]).starts == [(5, "cuda:0")]


@pytest.mark.parametrize(
    ("state", "what"),
    [("failed", "failed"), ("oom-failed", "ran out of GPU memory"), ("killed", "was killed")],
)
def test_a_run_after_a_failed_dependency_says_it_can_never_start(state, what):
    result = make_plan([run(3, state), run(5, after=[3])], [gpu(0)], paused=True)
    assert result.reasons == {5: f"run 3 {what}, so this run cannot start: remove it or restart run 3"}


def test_a_run_after_a_removed_dependency_says_it_was_removed():
    result = make_plan([run(5, after=[3])], [gpu(0)])
    assert result.reasons == {5: "run 3 was removed, so this run cannot start: remove this run"}


def test_a_run_after_a_dependency_that_never_existed_says_to_remove_it():
    result = make_plan([run(5, after=[7])], [gpu(0)])
    assert result.reasons == {5: "run 7 does not exist, so this run cannot start: remove this run"}


def test_dependencies_given_apart_from_the_runs_to_plan_are_judged_too():
    dependencies = [run(3, "succeeded"), run(4, "queued")]
    result = plan(
        [run(5, after=[3]), run(6, after=[4])], [gpu(0)], paused=False, cpu_slots=1, dependencies=dependencies
    )
    assert result == Plan(starts=[(5, "cuda:0")], reasons={6: "waiting for run 4 (queued)"})


# -- order -----------------------------------------------------------------------------------------------------


def test_higher_priority_starts_first_then_first_come_first_served():
    runs = [run(1, created=5.0), run(2, created=1.0, priority=1), run(3, created=1.0), run(4, created=0.0)]
    result = make_plan(runs, [gpu(0), gpu(1)])
    assert result.starts == [(2, "cuda:0"), (4, "cuda:1")]
    assert result.reasons == {3: "all 2 GPUs busy (runs 2, 4)", 1: "all 2 GPUs busy (runs 2, 4)"}


def test_equal_created_times_fall_back_to_the_id():
    result = make_plan([run(9, created=1.0), run(8, created=1.0)], [gpu(0)])
    assert result.starts == [(8, "cuda:0")]


# -- exclusive runs on GPUs ------------------------------------------------------------------------------------


def test_one_plan_never_puts_two_exclusive_runs_on_one_gpu():
    result = make_plan([run(1), run(2), run(3)], [gpu(0), gpu(1)])
    assert result.starts == [(1, "cuda:0"), (2, "cuda:1")]
    assert result.reasons == {3: "all 2 GPUs busy (runs 1, 2)"}


def test_a_pinned_run_waits_for_its_busy_gpu():
    result = make_plan([run(7, gpu=1)], [gpu(0), gpu(1, runs=[4])])
    assert result.reasons == {7: "GPU 1 busy with run 4"}


def test_a_pin_to_a_missing_gpu_names_the_gpus_there_are():
    result = make_plan([run(7, gpu=3)], [gpu(0), gpu(1)])
    assert result.reasons == {
        7: "GPU 3 is not one of the daemon's GPUs (0, 1): remove this run, submit it on one of those"
    }


def test_a_gpu_with_foreign_processes_is_not_used():
    result = make_plan([run(7)], [gpu(0, foreign=[1234])])
    assert result.reasons == {7: "GPU 0 has processes stratcastd does not own (pid 1234)"}
    result = make_plan([run(7)], [gpu(0, foreign=[1234]), gpu(1)])
    assert result.starts == [(7, "cuda:1")]


def test_an_exclusive_run_needs_min_free_memory():
    result = make_plan([run(7)], [gpu(0, free=0.3)])
    assert result.reasons == {7: "not enough free memory on GPU 0 (needs 1.0 GiB, 0.3 GiB free)"}


def test_reasons_from_several_gpus_are_grouped_by_kind():
    devices = [gpu(0, runs=[4]), gpu(1, foreign=[99, 98]), gpu(2, runs=[5]), gpu(3, foreign=[97]), gpu(4, free=0.2)]
    assert make_plan([run(7)], devices).reasons == {
        7: "GPUs 0, 2 busy (runs 4, 5); GPUs 1, 3 have processes stratcastd does not own (pids 97, 98, 99); "
        "not enough free memory on GPU 4 (needs 1.0 GiB, 0.2 GiB free)"
    }


# -- sharing runs (memory_gib) ---------------------------------------------------------------------------------


def test_sharing_runs_join_a_gpu_while_their_caps_fit():
    runs = [run(1, memory_gib=6.0), run(2, memory_gib=6.0), run(3, memory_gib=6.0)]
    result = make_plan(runs, [gpu(0, total=16.0, free=15.5)])
    assert result.starts == [(1, "cuda:0"), (2, "cuda:0")]
    assert result.reasons == {3: "not enough free memory on GPU 0 (needs 6.0 GiB, 3.5 GiB free)"}


def test_sharing_counts_the_caps_of_running_runs_not_only_free_memory():
    # run 4 holds 1 GiB so far but may grow to its 12 GiB cap: only 4 GiB are left to promise
    device = gpu(0, total=16.0, free=15.0, runs=[4], caps=[12.0])
    result = make_plan([run(7, memory_gib=5.0)], [device])
    assert result.reasons == {7: "not enough free memory on GPU 0 (needs 5.0 GiB, 4.0 GiB free)"}
    assert make_plan([run(7, memory_gib=4.0)], [device]).starts == [(7, "cuda:0")]


def test_sharing_and_exclusive_runs_do_not_mix():
    result = make_plan([run(7, memory_gib=2.0)], [gpu(0, runs=[4])])
    assert result.reasons == {7: "GPU 0 busy with run 4"}
    result = make_plan([run(7)], [gpu(0, runs=[4], caps=[2.0])])
    assert result.reasons == {7: "GPU 0 busy with run 4"}


def test_sharing_runs_pack_onto_a_shared_gpu_and_leave_empty_ones_to_exclusive_runs():
    devices = [gpu(0), gpu(1, runs=[4], caps=[4.0])]
    result = make_plan([run(7, memory_gib=4.0), run(8)], devices)
    assert result.starts == [(7, "cuda:1"), (8, "cuda:0")]


def test_a_cap_larger_than_every_gpu_says_so():
    result = make_plan([run(7, memory_gib=100.0)], [gpu(0, total=80.0), gpu(1, total=40.0)])
    assert result.reasons == {7: "needs 100.0 GiB, more than any GPU has (largest: GPU 0, 80.0 GiB)"}
    result = make_plan([run(7, memory_gib=50.0, gpu=1)], [gpu(0, total=80.0), gpu(1, total=40.0)])
    assert result.reasons == {7: "needs 50.0 GiB, more than GPU 1 has (40.0 GiB in all)"}


# -- backfill and its limit ------------------------------------------------------------------------------------


def test_a_later_run_backfills_a_free_gpu_while_an_earlier_one_waits_for_its_pinned_gpu():
    result = make_plan([run(7, priority=5, gpu=1), run(8)], [gpu(0), gpu(1, runs=[4])])
    assert result.starts == [(8, "cuda:0")]
    assert result.reasons == {7: "GPU 1 busy with run 4"}


def test_no_run_starts_on_a_gpu_that_a_higher_priority_waiting_run_could_use():
    # run 7 (exclusive) waits for GPU 0; run 8 could share GPU 0 with run 4 but must not delay run 7
    devices = [gpu(0, runs=[4], caps=[2.0]), gpu(1, runs=[5])]
    result = make_plan([run(7, priority=1), run(8, memory_gib=2.0)], devices)
    assert result.starts == []
    assert result.reasons == {
        7: "all 2 GPUs busy (runs 4, 5)",
        8: "GPU 1 busy with run 5; GPU 0 kept for run 7, which is ahead in the queue",
    }


def test_an_earlier_run_of_the_same_priority_also_keeps_its_gpus():
    devices = [gpu(0, runs=[4], caps=[2.0])]
    result = make_plan([run(7), run(8, memory_gib=2.0)], devices)
    assert result.reasons == {7: "GPU 0 busy with run 4", 8: "GPU 0 kept for run 7, which is ahead in the queue"}


def test_several_kept_gpus_are_named_together():
    devices = [gpu(0, runs=[4], caps=[2.0]), gpu(1, runs=[5], caps=[2.0])]
    result = make_plan([run(7), run(8, memory_gib=2.0)], devices)
    assert result.reasons[8] == "GPUs 0, 1 kept for run 7, which is ahead in the queue"


def test_runs_waiting_for_dependencies_or_too_big_for_any_gpu_keep_nothing():
    runs = [run(3, "running", gpu=1), run(7, priority=9, after=[3]), run(8, priority=5, memory_gib=99.0), run(9)]
    result = make_plan(runs, [gpu(0), gpu(1, runs=[3])])
    assert result.starts == [(9, "cuda:0")]
    assert set(result.reasons) == {7, 8}


# -- CPU-only machines -----------------------------------------------------------------------------------------


def test_a_cpu_machine_runs_up_to_cpu_slots_at_once():
    result = make_plan([run(1), run(2), run(3)], [cpu(runs=[4])], cpu_slots=3)
    assert result.starts == [(1, "cpu"), (2, "cpu")]
    assert result.reasons == {3: "CPU busy (3 of 3 slots: runs 1, 2, 4)"}


def test_a_full_cpu_says_which_runs_hold_its_slots():
    result = make_plan([run(7)], [cpu(runs=[4, 5])], cpu_slots=2)
    assert result.reasons == {7: "CPU busy (2 of 2 slots: runs 4, 5)"}


def test_a_cpu_machine_ignores_memory_caps_but_not_gpu_pins():
    result = make_plan([run(7, memory_gib=500.0), run(8, gpu=0)], [cpu()])
    assert result.starts == [(7, "cpu")]
    assert result.reasons == {8: "GPU 0 does not exist (this machine has no GPUs)"}


def test_without_any_device_nothing_starts():
    assert make_plan([run(7)], []).reasons == {7: "no GPU or CPU to run on"}


# -- inputs ----------------------------------------------------------------------------------------------------


def test_a_device_view_needs_one_cap_per_run():
    with pytest.raises(ValueError, match="2 runs but 1 memory caps"):
        DeviceView("cuda:0", 0, 1.0, 1.0, runs=(1, 2), caps_gib=(None,))


def test_cpu_slots_must_be_positive():
    with pytest.raises(ValueError, match="cpu_slots"):
        plan([], [cpu()], paused=False, cpu_slots=0)


# -- a run over several devices (--gpus-per-run) ------------------------------------------------------------------


def test_a_data_parallel_run_takes_the_lowest_free_gpus_and_names_them_all():
    devices = [gpu(0, runs=(9,)), gpu(1), gpu(2, foreign=(77,)), gpu(3)]
    result = make_plan([run(9, "running"), run(1, gpus=2), run(2)], devices)
    assert result.starts == [(1, "cuda:1,cuda:3")] and 2 in result.reasons  # the single-GPU run finds none left


def test_a_data_parallel_run_waits_for_enough_gpus_and_keeps_the_free_ones_from_later_runs():
    devices = [gpu(0, runs=(9,)), gpu(1), gpu(2, runs=(8,))]
    result = make_plan([run(1, gpus=2), run(2)], devices)
    assert result.starts == []  # GPU 1 is free, but run 1 was first and keeps it
    assert result.reasons[1] == "needs 2 GPUs, 1 free: GPUs 0, 2 busy (runs 8, 9)"
    assert result.reasons[2] == "GPUs 0, 2 busy (runs 8, 9); GPU 1 kept for run 1, which is ahead in the queue"


def test_a_data_parallel_run_over_more_gpus_than_the_daemon_has_says_so():
    result = make_plan([run(1, gpus=3)], [gpu(0), gpu(1)])
    assert result.reasons[1].startswith("needs 3 GPUs (--gpus-per-run 3) and the daemon has 2 (0, 1)")


def test_on_a_cpu_machine_a_data_parallel_run_takes_a_slot_per_process():
    assert make_plan([run(1, gpus=2), run(2)], [cpu()], cpu_slots=3).starts == [(1, "cpu"), (2, "cpu")]
    result = make_plan([run(1, gpus=2)], [cpu(runs=(5,))], cpu_slots=2)
    assert result.reasons == {1: "CPU busy (1 of 2 slots: run 5)"}
    result = make_plan([run(1, gpus=4)], [cpu()], cpu_slots=2)
    assert "needs 4 CPU slots (--gpus-per-run 4) and the daemon has 2" in result.reasons[1]
