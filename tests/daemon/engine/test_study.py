"""Studies end to end on a tiny panel: trials run, told and read back with Optuna's own API; failures and pruning."""

import json
from pathlib import Path

import msgspec
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from stratcast.daemon.engine.memory.oom import FAULT_ENV, OutOfMemory
from stratcast.daemon.engine.study.local import PruneWatch, run_trial_locally
from stratcast.daemon.engine.study.objectives import parse_objectives
from stratcast.daemon.engine.study.space import build_space
from stratcast.daemon.engine.study.study import (
    ASKED_BY,
    JOURNAL,
    StudyError,
    ask,
    best,
    final_job,
    kept_trial,
    open_storage,
    open_study,
    pruner_warmup,
    reap_orphans,
    report,
    tell_result,
    wilcoxon_pruner,
)
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.shared.events import ProgressReported, RanOutOfMemory
from stratcast.shared.protocol import JobSpec
from tests.daemon.engine.small_jobs import write_small_panel

FIXED_SETS = ["max_steps=12", "batch_size=32", "val_check_steps=4", "early_stop_patience=-1"]
SMALL = {"train": {"lr_schedule": "cosine", "warmup_steps": 0}, "mlp": {"hidden_size": {"choices": [8, 16]}}}
"""A space the tiny panel trains in a blink: small widths, no warm-up longer than the run."""


@pytest.fixture
def fixed(tmp_path) -> JobSpec:
    panel = write_small_panel(tmp_path / "panel.parquet")
    return JobSpec(data=str(panel), model="mlp", horizon=4, input_size=8, holdout=4, device="cpu", sets=FIXED_SETS)


def run_trials(study, space, fixed, out, n, objectives=("holdout-rmse",)):
    chosen = parse_objectives(list(objectives))
    outcomes = []
    for _ in range(n):
        plan = ask(study, space, fixed, device="cpu")
        outcomes.append(run_trial_locally(study, plan, fixed, chosen, out=out, device="cpu", log=lambda line: None))
    return outcomes


def test_a_four_trial_study_is_read_back_from_the_journal_with_optunas_own_api(tmp_path, fixed):
    storage = open_storage(None, tmp_path / "home")
    study = open_study(storage, "mlp-study", ["minimize"], "tpe", "none")
    space = build_space(["mlp"], fixed=fixed.sets, overrides=SMALL)
    outcomes = run_trials(study, space, fixed, tmp_path / "trials", 4)
    assert [o.state for o in outcomes] == [TrialState.COMPLETE] * 4
    journal = tmp_path / "home" / JOURNAL
    loaded = optuna.load_study(study_name="mlp-study", storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = loaded.get_trials()
    assert len(trials) == 4
    for trial, outcome in zip(trials, outcomes, strict=True):
        assert trial.state == TrialState.COMPLETE and trial.value == pytest.approx(outcome.values[0])
        assert {"learning_rate", "mlp.hidden_size", "mlp.num_layers"} <= set(trial.params)
        assert trial.user_attrs["model"] == "mlp" and trial.values[0] > 0
    assert best(loaded)[0].values == min(t.values for t in trials)
    assert (tmp_path / "trials" / "trial-0" / "holdout" / "metrics.json").is_file()


def test_an_rdb_storage_holds_the_study_too(tmp_path, fixed):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = open_study(open_storage(url, tmp_path), "rdb", ["minimize"], "random", "none")
    space = build_space(["mlp"], fixed=fixed.sets, overrides=SMALL)
    run_trials(study, space, fixed, tmp_path / "trials", 1, objectives=["holdout-rmse-raw"])
    loaded = optuna.load_study(study_name="rdb", storage=url)
    [trial] = loaded.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.params and trial.values[0] > 0


def test_an_invalid_configuration_is_pruned_with_its_reason_and_the_study_goes_on(tmp_path, fixed):
    study = open_study(open_storage(None, tmp_path), "invalid", ["minimize"], "tpe", "none")
    bad = build_space(["mlp"], fixed=fixed.sets, overrides={**SMALL, "train": {"scaler": "revin", "loss": "quantile"}})
    plan = ask(study, bad, fixed, device="cpu")
    assert plan.invalid is not None and "revin" in plan.invalid
    outcome = run_trial_locally(study, plan, fixed, parse_objectives("holdout-rmse"), out=tmp_path, device="cpu")
    assert outcome.state == TrialState.PRUNED and not (tmp_path / "trial-0").exists()
    told = study.trials[0]
    assert told.state == TrialState.PRUNED and told.user_attrs["fail_reason"] == "invalid"
    assert told.user_attrs["reason"].startswith("invalid: scaler=revin")
    good = build_space(["mlp"], fixed=fixed.sets, overrides=SMALL)
    [after] = run_trials(study, good, fixed, tmp_path / "trials", 1)
    assert after.state == TrialState.COMPLETE


def test_an_out_of_memory_trial_is_told_fail_with_reason_oom(tmp_path, fixed, monkeypatch):
    def out_of_memory(self):
        raise OutOfMemory("not even one window fits")

    monkeypatch.setattr(Trainer, "fit", out_of_memory)
    study = open_study(open_storage(None, tmp_path), "oom", ["minimize"], "tpe", "none")
    [outcome] = run_trials(study, build_space(["mlp"], fixed=fixed.sets, overrides=SMALL), fixed, tmp_path, 1)
    told = study.trials[0]
    assert outcome.state == TrialState.FAIL and told.state == TrialState.FAIL
    assert told.user_attrs["fail_reason"] == "oom" and "not even one window fits" in told.user_attrs["reason"]


def test_a_trial_over_the_memory_limit_recovers_by_halving_and_its_runner_hears_each_oom(tmp_path, fixed, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "16")  # the batch of 32 needs twice what the testing aid lets through
    study = open_study(open_storage(None, tmp_path), "oom-recovered", ["minimize"], "tpe", "none")
    plan = ask(study, build_space(["mlp"], fixed=fixed.sets, overrides=SMALL), fixed, device="cpu")
    events: list[RanOutOfMemory] = []
    outcome = run_trial_locally(
        study, plan, fixed, parse_objectives("holdout-rmse"), out=tmp_path, device="cpu", log=lambda line: None,
        plan_cache=tmp_path / "plans.json", on_oom=events.append,
    )  # fmt: skip
    assert outcome.state == TrialState.COMPLETE and study.trials[0].state == TrialState.COMPLETE
    assert [(e.old_micro_batch, e.new_micro_batch) for e in events] == [(32, 16)]


def test_orphaned_running_trials_are_told_fail_crashed_and_the_next_ask_works(tmp_path, fixed):
    storage = open_storage(None, tmp_path)
    study = open_study(storage, "orphans", ["minimize"], "tpe", "none")
    space = build_space(["mlp"], fixed=fixed.sets, overrides=SMALL)
    running, orphan = ask(study, space, fixed), ask(study, space, fixed)
    restarted = open_study(open_storage(None, tmp_path), "orphans", ["minimize"], "tpe", "none")
    assert reap_orphans(restarted, alive=[running.number]) == [orphan.number]
    states = {t.number: t for t in restarted.get_trials()}
    assert states[orphan.number].state == TrialState.FAIL
    assert states[orphan.number].user_attrs["fail_reason"] == "crashed"
    assert states[running.number].state == TrialState.RUNNING
    following = ask(restarted, space, fixed)
    assert following.number == 2 and following.invalid is None


def test_a_client_reaps_only_the_running_trials_it_asked(tmp_path, fixed):
    study = open_study(open_storage(None, tmp_path), "two-clients", ["minimize"], "random", "none")
    space = build_space(["mlp"], fixed=fixed.sets, overrides=SMALL)
    mine, theirs = ask(study, space, fixed, client="a"), ask(study, space, fixed, client="b")
    assert reap_orphans(study, client="a") == [mine.number]
    states = {t.number: t for t in study.get_trials()}
    assert states[mine.number].state == TrialState.FAIL and states[theirs.number].state == TrialState.RUNNING
    assert states[theirs.number].user_attrs[ASKED_BY] == "b"


def test_a_study_opened_again_with_one_seed_draws_new_configurations(tmp_path, fixed):
    space = build_space(["mlp"], fixed=fixed.sets, overrides=SMALL)
    drawn = []
    for _ in range(2):  # two clients of one seed, one after the other, as a restart or a second daemon does
        study = open_study(open_storage(None, tmp_path), "seeded", ["minimize"], "random", "none", seed=7)
        drawn.append(ask(study, space, fixed).params)
    assert drawn[0] != drawn[1]


def progress(step, val):
    return ProgressReported(
        step=step,
        max_steps=100,
        epoch=0.0,
        train_loss=val,
        val_loss=val,
        best_val_loss=val,
        windows_per_s=1.0,
        eta_s=0.0,
        learning_rate=1e-3,
        micro_batch=32,
        val_score=val,
    )


def test_the_pruner_sees_the_validation_score_not_the_loss(tmp_path):
    study = open_study(open_storage(None, tmp_path), "score", ["minimize"], "random", "median")
    watch = PruneWatch(study, study.ask().number, should_stop=None)
    watch(msgspec.structs.replace(progress(4, 50.0), val_score=None))  # a loss alone is in no comparable unit
    watch(msgspec.structs.replace(progress(8, 50.0), val_score=0.93))
    assert study.trials[0].intermediate_values == {8: 0.93}


def test_the_median_pruner_stops_a_clearly_worse_trial(tmp_path):
    study = open_study(open_storage(None, tmp_path), "prune", ["minimize"], "random", "median")
    for _ in range(5):
        trial = study.ask()
        for step in (4, 8, 12):
            assert not report(study, trial.number, step, 1.0 / step)
        tell_result(study, trial.number, [0.1])
    worse = study.ask()
    watch = PruneWatch(study, worse.number, should_stop=None)
    watch(progress(2, None))  # between validation checks: nothing reported
    assert not watch.stop()
    watch(progress(4, 50.0))
    assert watch.stop() and watch.pruned_at == (4, 50.0)
    better = study.ask()
    assert not report(study, better.number, 4, 0.01)


def test_nsga2_with_two_objectives_returns_the_pareto_front(tmp_path):
    study = open_study(open_storage(None, tmp_path), "pareto", ["minimize", "maximize"], "nsga2", "none")
    for values in ([1.0, 1.0], [2.0, 3.0], [3.0, 2.0], [0.5, 0.2]):
        tell_result(study, study.ask().number, values)
    assert sorted(t.number for t in best(study)) == [0, 1, 3]
    assert not report(study, study.ask().number, 1, 0.5)  # several objectives never prune


def test_a_pruner_for_several_objectives_is_refused(tmp_path):
    with pytest.raises(StudyError, match="cannot prune"):
        open_study(open_storage(None, tmp_path), "x", ["minimize", "maximize"], "nsga2", "median")


def test_two_objectives_are_told_from_one_trial(tmp_path, fixed):
    study = open_study(open_storage(None, tmp_path), "two", ["minimize", "minimize"], "nsga2", "none")
    space = build_space(["mlp"], fixed=fixed.sets, overrides=SMALL)
    [outcome] = run_trials(study, space, fixed, tmp_path, 1, objectives=["holdout-rmse", "holdout-rmse-raw"])
    assert outcome.state == TrialState.COMPLETE and len(study.trials[0].values) == 2
    assert best(study)[0].number == 0


def test_stratcastd_tune_runs_a_study_in_the_foreground(tmp_path, fixed, capsys):
    from stratcast.daemon.cli import main

    space = tmp_path / "space.toml"
    space.write_text("[mlp]\nhidden_size = { choices = [8, 16] }\n[train]\nwarmup_steps = 0\n")
    args = ["tune", "--data", fixed.data, "--model", "mlp", "--horizon", "4", "--input-size", "8", "--device", "cpu"]
    args += ["--trials", "2", "--space", str(space), "--home", str(tmp_path / "home"), "--out", str(tmp_path / "t")]
    args += ["--save-as", "fg"]
    for item in FIXED_SETS:
        args += ["--set", item]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trial 0 COMPLETE" in printed and "trial 1 COMPLETE" in printed and "best:" in printed
    assert (tmp_path / "home" / JOURNAL).is_file()
    assert "saved as fg:1" in printed  # --keep all-data (the default): the best trained on everything and saved
    manifest = json.loads((tmp_path / "home" / "models" / "fg" / "1" / "manifest.json").read_text())
    kept = kept_trial(open_study(open_storage(None, tmp_path / "home"), "tune-mlp", ["minimize"], "tpe", "median"))
    assert kept is not None and manifest["spec"]["model_params"]["hidden_size"] == kept.params["mlp.hidden_size"]
    assert manifest["spec"]["holdout"] == 0
    assert manifest["study"] == {
        "study": "tune-mlp", "trial": kept.number, "objectives": ["holdout-rmse"], "values": kept.values,
        "keep": "all-data", "complete": 2,
    }  # fmt: skip


def test_the_kept_trial_is_the_pareto_fronts_best_on_the_first_objective(tmp_path, fixed):
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert kept_trial(study) is None
    space = build_space(["mlp"], fixed=fixed.sets, overrides=SMALL)
    for values in ([1.0, 1.0], [3.0, 5.0], [2.0, 0.5], [0.5, 9.0]):  # the front: 1, 2; the best first: 1
        plan = ask(study, space, fixed, device="cpu")
        tell_result(study, plan.number, values)
    assert [t.number for t in best(study)] == [1, 2]
    assert getattr(kept_trial(study), "number", None) == 1
    assert getattr(kept_trial(study, 2), "number", None) == 2
    plan = ask(study, space, fixed, device="cpu")  # RUNNING
    with pytest.raises(StudyError, match=r"^trial: trial 4 is RUNNING"):
        kept_trial(study, plan.number)
    with pytest.raises(StudyError, match=r"^trial: trial 9 is not asked yet"):
        kept_trial(study, 9)
    trial = study.trials[2]
    job = final_job(trial, fixed, ("mlp",), "all-data", fixed)
    assert (job.holdout, job.backtest, job.model) == (0, None, "mlp")
    assert job.sets == [*fixed.sets, *trial.user_attrs["sets"]]
    assert final_job(trial, fixed, ("mlp",), "holdout", fixed).holdout == fixed.holdout == 4
    study.enqueue_trial({})
    foreign = study.ask()  # asked by another client: no configuration recorded
    study.tell(foreign, [0.0, 0.0])
    with pytest.raises(StudyError, match="no recorded configuration"):
        final_job(study.trials[foreign.number], fixed, ("mlp",), "all-data", fixed)


def test_an_invalid_space_file_exits_3_naming_the_field(tmp_path, fixed, capsys):
    from stratcast.daemon.cli import main

    space = tmp_path / "space.toml"
    space.write_text("[mlp]\ndropout = { low = 0.0, high = 2.0 }\n")
    args = ["tune", "--data", fixed.data, "--model", "mlp", "--space", str(space), "--home", str(tmp_path)]
    assert main(args) == 3
    assert "mlp.dropout" in capsys.readouterr().err
    assert not Path(tmp_path / JOURNAL).exists()


def test_a_backtest_objective_reports_per_cutoff_values_whose_mean_is_the_objective(tmp_path, fixed):
    from stratcast.shared.protocol import BacktestOptions

    pruner = wilcoxon_pruner()
    study = optuna.create_study(storage=open_storage(None, tmp_path), direction="maximize", pruner=pruner)
    space = build_space(["mlp"], fixed=fixed.sets, overrides=SMALL)
    options = BacktestOptions(cutoffs=3, every=2, refit_every=3, top=["2"], draws=20)
    plan = ask(study, space, fixed, device="cpu")
    objective = parse_objectives("backtest-top-k")
    outcome = run_trial_locally(
        study, plan, fixed, objective, out=tmp_path, backtest=options, device="cpu", log=lambda line: None
    )
    assert outcome.state == TrialState.COMPLETE
    told = study.trials[0]
    per_cutoff = [told.intermediate_values[k] for k in sorted(told.intermediate_values)]
    assert len(per_cutoff) == 3
    assert told.values[0] == pytest.approx(sum(per_cutoff) / 3)


def test_a_real_trial_worse_than_the_median_is_pruned_at_a_validation_check(tmp_path, fixed):
    study = open_study(open_storage(None, tmp_path), "prune-run", ["minimize"], "random", "median")
    for _ in range(5):  # finished trials whose validation losses no real one reaches
        trial = study.ask()
        for step in (4, 8, 12):
            report(study, trial.number, step, 1e-9)
        tell_result(study, trial.number, [1e-9])
    space = build_space(["mlp"], fixed=fixed.sets, overrides=SMALL)
    [outcome] = run_trials(study, space, fixed, tmp_path / "trials", 1)
    told = study.trials[5]
    assert outcome.state == TrialState.PRUNED and told.state == TrialState.PRUNED
    assert told.user_attrs["reason"].startswith("pruned at step 4") and list(told.intermediate_values) == [4]
    assert not (tmp_path / "trials" / "trial-5" / "holdout" / "metrics.json").exists()


def test_a_study_reopened_with_other_directions_is_refused(tmp_path):
    open_study(open_storage(None, tmp_path), "dirs", ["minimize"], "tpe", "none")
    with pytest.raises(StudyError, match="minimize"):
        open_study(open_storage(None, tmp_path), "dirs", ["maximize"], "tpe", "none")


def test_a_models_own_fixed_setting_reaches_that_models_trials_only():
    from stratcast.daemon.engine.study.study import TrialPlan

    fixed = JobSpec(data="p.parquet", sets=["max_steps=5", "nhits.dropout=0.1", "dlinear.moving_avg=9"])
    nhits = TrialPlan(0, "nhits", {}, ("train.learning_rate=0.001",), models=("nhits", "dlinear"))
    job = nhits.job(fixed)
    assert job.model == "nhits"
    assert job.sets == ["max_steps=5", "model.dropout=0.1", "train.learning_rate=0.001"]


def test_a_holdout_trial_calibrates_no_intervals_and_the_kept_run_has_the_studys_levels(tmp_path):
    from stratcast.daemon.engine.study.study import TrialPlan
    from stratcast.shared.protocol import BacktestOptions

    plan = TrialPlan(0, "mlp", {}, ("learning_rate=0.01",), models=("mlp",))
    fixed = JobSpec(data="/d.parquet", model="mlp", holdout=4, levels=[80, 95])
    assert plan.job(fixed).levels == [] and plan.job(fixed).sets == ["learning_rate=0.01"]
    assert plan.job(msgspec.structs.replace(fixed, rank_by="lo80")).levels == [80, 95]  # ranked by a bound
    assert plan.job(msgspec.structs.replace(fixed, backtest=BacktestOptions())).levels == [80, 95]
    study = optuna.create_study()
    study.enqueue_trial({})
    trial = study.ask()
    trial.set_user_attr("model", "mlp")
    trial.set_user_attr("sets", ["learning_rate=0.01"])
    study.tell(trial, 1.0)
    kept = final_job(study.trials[0], fixed, ["mlp"], "all-data", fixed)
    assert kept.levels == [80, 95] and kept.holdout == 0


def test_the_median_pruner_judges_a_trial_from_its_third_validation_check(tmp_path, fixed):
    job = msgspec.structs.replace(fixed, sets=[*fixed.sets, "val_check_steps=4"])
    warmup = pruner_warmup(job)
    assert warmup == 9
    study = open_study(open_storage(None, tmp_path), "warm", ["minimize"], "random", "median", warmup_steps=warmup)
    for _ in range(5):
        trial = study.ask()
        for step in (4, 8, 12):
            report(study, trial.number, step, 0.5)
        tell_result(study, trial.number, [0.5])
    worse = study.ask().number
    assert not report(study, worse, 4, 50.0) and not report(study, worse, 8, 50.0)  # its first two checks
    assert report(study, worse, 12, 50.0)
