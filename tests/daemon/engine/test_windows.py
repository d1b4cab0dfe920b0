import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stratcast.daemon.engine.data.windows import PanelWindows, Split, TrainSampler, validation_windows


def positional_panel(n: int, t: int) -> torch.Tensor:
    """values[i, t] = 1000 * i + t + 1: every value names its own series and period."""
    return (1000 * torch.arange(n)[:, None] + torch.arange(t)[None, :] + 1).float()


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    t=st.integers(13, 60),  # above val + holdout (at most 12): Split needs training periods
    input_size=st.integers(1, 8),
    horizon=st.integers(1, 8),
    val=st.integers(0, 6),
    holdout=st.integers(0, 6),
    pad=st.booleans(),
    seed=st.integers(0, 1000),
    starts=st.lists(st.integers(0, 5), min_size=6, max_size=6),
)
def test_training_windows_never_look_ahead(n, t, input_size, horizon, val, holdout, pad, seed, starts):
    split = Split.make(t, val, holdout)
    start = torch.tensor(starts[:n])
    values = positional_panel(n, t)
    values[torch.arange(t)[None, :] < start[:, None]] = 0.0
    windows = PanelWindows(values, start, input_size=input_size, horizon=horizon, pad_start=pad)
    try:
        sampler = TrainSampler(windows, split.train_end, seed)
    except ValueError:
        assert ((windows.earliest_origin() < split.train_end).sum()) == 0
        return
    b = sampler.sample(64)
    for k in range(64):
        i, o = int(b.rows[k]), int(b.origin[k])
        assert o < split.train_end and o >= int(start[i]) + 1
        periods_in = torch.arange(o - input_size, o)
        expect_in = torch.where(periods_in >= start[i], 1000 * i + periods_in + 1, 0).float()
        assert torch.equal(b.x[k], expect_in)  # inputs are exactly the periods before the origin (0 before start)
        periods_out = torch.arange(o, o + horizon)
        scored = periods_out[b.mask[k]]
        assert (scored < split.train_end).all() and b.mask[k, 0]  # no target at/after train_end is scored
        assert torch.equal(b.y[k][b.mask[k]], (1000 * i + scored + 1).float())
        assert (b.y[k][~b.mask[k]] == 0).all()
        if not pad:
            assert o - input_size >= int(start[i])


def test_validation_windows_score_only_the_validation_part():
    values = positional_panel(3, 40)
    split = Split.make(40, 10, 5)
    windows = PanelWindows(values, torch.zeros(3, dtype=torch.long), input_size=6, horizon=4)
    val = validation_windows(windows, split)
    assert val is not None
    assert sorted(set(val.origin.tolist())) == [25, 29, 33]
    scored = (val.origin[:, None] + torch.arange(4))[val.mask]
    assert scored.min() >= split.train_end and scored.max() < split.val_end
    assert int(val.mask.sum()) == 3 * 10  # every validation period of every series scored exactly once


def test_validation_windows_at_stride_one_start_at_every_validation_origin_and_score_before_its_end():
    values = positional_panel(3, 40)
    split = Split.make(40, 10, 5)
    windows = PanelWindows(values, torch.zeros(3, dtype=torch.long), input_size=6, horizon=4)
    val = validation_windows(windows, split, stride=1)
    assert val is not None
    assert sorted(set(val.origin.tolist())) == list(range(25, 35))
    scored = (val.origin[:, None] + torch.arange(4))[val.mask]
    assert scored.min() >= split.train_end and scored.max() < split.val_end
    # origin o scores min(4, 35 - o) targets: 7 origins score 4, then 3, 2, 1
    assert int(val.mask.sum()) == 3 * (7 * 4 + 3 + 2 + 1)


def test_sampler_is_uniform_over_all_valid_windows_and_resumes_from_its_state():
    start = torch.tensor([0, 20])
    windows = PanelWindows(positional_panel(2, 40), start, input_size=5, horizon=3)
    sampler = TrainSampler(windows, 30, seed=1)
    assert sampler.n_windows == (30 - 5) + (30 - 25)
    rows = sampler.sample(20_000).rows
    share = (rows == 1).float().mean().item()
    assert abs(share - 5 / 30) < 0.02
    state = sampler.state_dict()
    first = sampler.sample(16)
    sampler.load_state_dict(state)
    assert torch.equal(sampler.sample(16).origin, first.origin)


def test_forecast_inputs_are_the_last_periods():
    windows = PanelWindows(positional_panel(2, 10), torch.zeros(2, dtype=torch.long), input_size=4, horizon=2)
    assert windows.forecast_inputs()[1].tolist() == [1007.0, 1008.0, 1009.0, 1010.0]


def test_periods_before_a_series_start_read_as_zero_whatever_the_scaled_values():
    scaled = torch.full((2, 10), -3.0)  # what a centring scaler makes of the zeros before a start
    windows = PanelWindows(scaled, torch.tensor([0, 4]), input_size=6, horizon=2, pad_start=True)
    batch = windows.origins_at(6)
    assert batch is not None
    assert batch.x[1].tolist() == [0.0, 0.0, 0.0, 0.0, -3.0, -3.0] and (batch.x[0] == -3.0).all()


def test_a_validation_part_shorter_than_the_horizon_scores_its_own_periods_only():
    values = positional_panel(3, 40)
    split = Split.make(40, 3, 5)  # train_end 32, val_end 35; the horizon (4) is longer than the validation part
    windows = PanelWindows(values, torch.tensor([0, 0, 30]), input_size=6, horizon=4)
    val = validation_windows(windows, split)
    assert val is not None
    assert val.rows.tolist() == [0, 1] and val.origin.tolist() == [32, 32]  # series 2 has too little input
    assert val.mask.tolist() == [[True, True, True, False]] * 2
    assert val.y.tolist() == [[33.0, 34.0, 35.0, 0.0], [1033.0, 1034.0, 1035.0, 0.0]]
    assert val.x[1].tolist() == [1027.0, 1028.0, 1029.0, 1030.0, 1031.0, 1032.0]


def test_a_split_without_training_periods_names_the_levers_with_the_numbers():
    with pytest.raises(ValueError) as info:
        Split.make(100, 52, 52)
    message = str(info.value)
    assert "val_size 52 + holdout 52 leave no training periods of 100" in message, message
    assert "lower --input-size, --horizon or --holdout, or --set val_size=N" in message, message


def test_a_sampler_without_training_windows_names_the_levers_with_the_numbers():
    windows = PanelWindows(positional_panel(2, 20), torch.zeros(2, dtype=torch.long), input_size=12, horizon=4)
    with pytest.raises(ValueError) as info:
        TrainSampler(windows, 10, seed=0)
    message = str(info.value)
    assert "input_size 12 + 1 periods before the validation part, which starts at period 10" in message, message
    assert "lower --input-size, --horizon or --holdout, or --set val_size=N" in message, message


@settings(max_examples=60, deadline=None)
@given(
    input_size=st.integers(1, 6),
    horizon=st.integers(1, 6),
    val=st.integers(0, 5),
    holdout=st.integers(0, 5),
    pad=st.booleans(),
    ends=st.lists(st.integers(0, 12), min_size=4, max_size=4),
    starts=st.lists(st.integers(0, 5), min_size=4, max_size=4),
)
def test_no_window_reads_or_scores_a_period_after_its_series_end(input_size, horizon, val, holdout, pad, ends, starts):
    t = 40
    end = t - torch.tensor(ends)
    start = torch.tensor(starts)
    split = Split.make(end, val, holdout)
    windows = PanelWindows(
        positional_panel(4, t), start, end=end, input_size=input_size, horizon=horizon, pad_start=pad
    )

    def own(i: int, periods: torch.Tensor) -> torch.Tensor:
        inside = (periods >= start[i]) & (periods < end[i])
        return torch.where(inside, 1000 * i + periods + 1, 0).float()

    batches = [TrainSampler(windows, split.train_end, 0).sample(64)]
    if (val_batch := validation_windows(windows, split)) is not None:
        batches.append(val_batch)
    for b in batches:
        for k in range(b.rows.numel()):
            i, o = int(b.rows[k]), int(b.origin[k])
            assert torch.equal(b.x[k], own(i, torch.arange(o - input_size, o)))  # 0 past the end, never data
            scored = torch.arange(o, o + horizon)[b.mask[k]]
            assert (scored < end[i] - holdout).all()
            assert torch.equal(b.y[k][b.mask[k]], own(i, scored))
    inputs = windows.forecast_inputs()
    for i in range(4):
        assert torch.equal(inputs[i], own(i, torch.arange(int(end[i]) - input_size, int(end[i]))))


def test_validation_is_the_val_size_periods_before_each_series_holdout():
    end = torch.tensor([40, 31])
    split = Split.make(end, 6, 5)
    windows = PanelWindows(positional_panel(2, 40), torch.zeros(2, dtype=torch.long), end=end, input_size=4, horizon=4)
    val = validation_windows(windows, split)
    assert val is not None
    assert sorted(zip(val.rows.tolist(), val.origin.tolist(), strict=True)) == [(0, 29), (0, 33), (1, 20), (1, 24)]
    scored = {i: (val.origin[:, None] + torch.arange(4))[val.mask & (val.rows == i)[:, None]].tolist() for i in (0, 1)}
    assert scored == {0: list(range(29, 35)), 1: list(range(20, 26))}
