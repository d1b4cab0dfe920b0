from stratcast.shared.events import Event, WarningGiven
from stratcast.tui.render import Watcher, show_text


def shown_run(events):
    run = {
        "id": 4,
        "name": "r4",
        "state": "succeeded",
        "job": {"model": "nhits", "mode": "batch", "data": "/d.parquet", "sets": []},
        "placement": {"priority": 0, "after": [], "gpu": None, "memory_gib": None},
        "attempts": 1,
        "created": 0.0,
    }
    return {"run": run, "events": events}


def test_show_prints_a_warning_event_as_its_message():
    event = {"id": 9, "time": 0.0, "run": 4, "kind": "warning", "data": {"kind": "loss", "message": "use loss=mse"}}
    text = show_text(shown_run([event]))
    (line,) = [line for line in text.splitlines() if "use loss=mse" in line]
    assert line.endswith("  warning: use loss=mse") and "{" not in line


def test_watch_prints_a_runs_warning():
    event = Event(session="s", seq=1, time=0.0, run=4, data=WarningGiven(kind="loss", message="m"))
    (line,) = Watcher().lines(event)
    assert line.endswith("run 4 warning: m")


def test_a_trials_cutoff_and_prune_events_read_as_words():
    from stratcast.tui.render import event_text

    assert event_text({"kind": "cutoff", "data": {"cutoff": 3, "value": 0.25}}) == "cutoff 3 scored 0.25"
    pruned = {"kind": "pruned", "data": {"cutoff": 3, "value": 0.25, "reason": "pruned at cutoff 4 (value 0.25)"}}
    assert event_text(pruned) == "pruned by its study: pruned at cutoff 4 (value 0.25)"
