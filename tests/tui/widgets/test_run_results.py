from stratcast.tui.widgets.run_results import summary_text


def test_the_summary_gives_the_training_time_of_all_segments_of_a_resumed_run():
    metrics = {"run": {"steps": 600, "train_seconds": 41.0, "train_segment_seconds": [38.0, 3.0]}}
    assert summary_text(metrics).plain == "600 steps · trained 41s over 2 segments"


def test_the_summary_of_a_run_trained_in_one_go_or_written_before_segments_names_none():
    assert summary_text({"run": {"train_seconds": 41.0, "train_segment_seconds": [41.0]}}).plain == "trained 41s"
    assert summary_text({"run": {"train_seconds": 41.0}}).plain == "trained 41s"
