import torch

from stratcast.daemon.engine.build import prepare
from stratcast.daemon.engine.config import TrainConfig
from stratcast.daemon.engine.demo import make_strategy_panel
from stratcast.daemon.engine.spec import RunSpec


def test_periods_before_a_series_start_stay_zero_after_a_centring_scaler(tmp_path):
    frame = make_strategy_panel(4, 60, seed=0)
    late = frame["No."] == 2
    frame = frame[~late | (frame["week"] >= frame["week"].min() + (frame["week"].max() - frame["week"].min()) / 4)]
    path = tmp_path / "p.parquet"
    frame.to_parquet(path, index=False)
    train = TrainConfig(input_size=8, horizon=4, scaler="standard", pad_start=True)
    prep = prepare(RunSpec(data=str(path), model="dlinear", out="-", train=train), torch.device("cpu"), lambda m: None)
    row = list(prep.panel.ids).index(2)
    first = int(prep.start[row])
    assert first > 0 and float(prep.scaler.loc[row]) != 0.0
    scaled = prep.windows.padded[row, train.input_size : train.input_size + prep.panel.n_times]
    assert torch.all(scaled[:first] == 0) and torch.any(scaled[first:] != 0)
