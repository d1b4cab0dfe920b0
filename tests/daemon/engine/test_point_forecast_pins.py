"""Pins the forecasts of every catalog model trained with the point losses (mse, mae, huber).

The hashes were recorded before the training losses and point forecasts moved into the zoo's output heads
(``zoo/heads.py``): the point heads must give bit-for-bit the forecasts the old ``elementwise_loss`` and
``point_forecast`` gave. Each case trains a tiny model for a few seeded steps on a small synthetic panel through
the job's own pieces (``prepare``, ``make_model``, ``make_trainer``, ``forecaster``) on the CPU and hashes the
forecast's float32 bytes. A hash that changes means the forecasts changed: if that is intended (a model or the
trainer changed on purpose), record the new hashes with ``STRATCAST_PRINT_PINS=1`` and say why in the commit.
Hashes of float bytes are stable for one torch build on one CPU; they are pinned to the build in ``TORCH``.
"""

import dataclasses
import hashlib
import os

import pytest
import torch

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.build import forecaster, make_model, make_trainer, prepare
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.zoo.catalog import CATALOG, get_entry

TORCH = "2.13.0"
TRAIN = TrainConfig(
    input_size=12, horizon=4, max_steps=6, batch_size=16, val_check_steps=3, seed=5, precision="fp32", huber_delta=0.5
)

PINS: dict[str, str] = {
    "dlinear/batch/mse": "6e676da9a1552309",
    "dlinear/batch/mae": "f004ab0348e8df0a",
    "dlinear/batch/huber": "01a63bfcb8d051fe",
    "mlp/batch/mse": "20912ea67a856abc",
    "mlp/batch/mae": "6f97b731215dde10",
    "mlp/batch/huber": "e862fb5e946ed23b",
    "nbeats/batch/mse": "57fb07802b5cd576",
    "nbeats/batch/mae": "e209749f2f07be93",
    "nbeats/batch/huber": "70f13d51560ef9f3",
    "nbeats-i/batch/mse": "5430191c10e00844",
    "nbeats-i/batch/mae": "13cef55fd6415611",
    "nbeats-i/batch/huber": "ce473be8385c606e",
    "nhits/batch/mse": "9c7b01c7cc8d2e68",
    "nhits/batch/mae": "eb8d8e20e061d811",
    "nhits/batch/huber": "0ec73d6d989775e2",
    "lstm/batch/mse": "c948c376311eec12",
    "lstm/batch/mae": "716c9ffdc862ce1b",
    "lstm/batch/huber": "2a373c3fc909d813",
    "gru/batch/mse": "e205cf5b78cdeff5",
    "gru/batch/mae": "092fcb384537e6a4",
    "gru/batch/huber": "e0eb1a01fd3c4c7d",
    "tcn/batch/mse": "63546b2264f92cb5",
    "tcn/batch/mae": "c6be7907f6596366",
    "tcn/batch/huber": "d8d867b24c3f040e",
    "tide/batch/mse": "d020aff961e316e4",
    "tide/batch/mae": "e0b4f66aed7c8f6d",
    "tide/batch/huber": "8f957c0e78c5f129",
    "patchtst/batch/mse": "b8f0f83e556b6530",
    "patchtst/batch/mae": "4e99f93c4257d28e",
    "patchtst/batch/huber": "96d0599b2f129ff9",
    "itransformer/batch/mse": "a424d6d770bf7324",
    "itransformer/batch/mae": "7f801903c049a440",
    "itransformer/batch/huber": "75e4e541213766a5",
    "nlinear/batch/mse": "5baee898de07d4db",
    "nlinear/batch/mae": "664c6769a8fa5245",
    "nlinear/batch/huber": "24908aec27fa171a",
    "fits/batch/mse": "4eb2517184dc28aa",
    "fits/batch/mae": "a2135a50f1fd9428",
    "fits/batch/huber": "9897416d49fbe476",
    "tsmixer/batch/mse": "ba7b8c50e18ba49d",
    "tsmixer/batch/mae": "0ea61db740f97a04",
    "tsmixer/batch/huber": "19b6dc5654db41a0",
    "kan/batch/mse": "de17dbd38843b002",
    "kan/batch/mae": "41c532ff4f8d98dc",
    "kan/batch/huber": "2083c839a6a2df35",
    "rbf/batch/mse": "3bee6bbaef4f32ab",
    "rbf/batch/mae": "6130729f0a5036d8",
    "rbf/batch/huber": "494d2c0c255bff99",
    "neuralgam/batch/mse": "90a7687f825f69f1",
    "neuralgam/batch/mae": "b3f2247c28df605a",
    "neuralgam/batch/huber": "b91991c6319a61dc",
    # models added after the heads: recorded when each was added
    "bitcn/batch/mse": "df71d29c229f588d",
    "bitcn/batch/mae": "8e5f9f4b0938cb2d",
    "bitcn/batch/huber": "9a8de6460c519299",
    "cnnlstm/batch/mse": "10ed9f5efb902cc6",
    "cnnlstm/batch/mae": "c5e8adebcde39328",
    "cnnlstm/batch/huber": "45a3f48b20340abc",
    "seq2seq/batch/mse": "984fb7c99b1cba49",
    "seq2seq/batch/mae": "b471483d51d516c9",
    "seq2seq/batch/huber": "5a61653e77918849",
    "transformer/batch/mse": "76a53c5fa2a0bdb8",
    "transformer/batch/mae": "a238ac9ae755189e",
    "transformer/batch/huber": "c92ecbde63ac563d",
    "informer/batch/mse": "1d5689e745df130c",
    "informer/batch/mae": "8dc7b0736d60026f",
    "informer/batch/huber": "fddb066e485d2417",
    "neuralarima/batch/mse": "b391017cf7cc4e9d",
    "neuralarima/batch/mae": "dc58623b2355f682",
    "neuralarima/batch/huber": "e1f1d356b1ad7d33",
    "neuralode/batch/mse": "0b5b782084bd7beb",
    "neuralode/batch/mae": "44852ea5477a8347",
    "neuralode/batch/huber": "10c125b12fd49e65",
    "snn/batch/mse": "5386458d3f4099bf",
    "snn/batch/mae": "479fb2de4cfd55c4",
    "snn/batch/huber": "4e5143e5754ea718",
    "timemixer/batch/mse": "38d0d440ad60cda5",
    "timemixer/batch/mae": "565c65a2ae9cee36",
    "timemixer/batch/huber": "f6114a7445bf35d6",
    "timesnet/batch/mse": "6783ca083ab495fc",
    "timesnet/batch/mae": "8e256efbefac8092",
    "timesnet/batch/huber": "35d94cd9e2aa5504",
    "dlinear/per-strategy/mse": "a4835a61bdec2e70",
    "dlinear/per-strategy/mae": "4c15a84bb08f76bb",
    "dlinear/per-strategy/huber": "fc2c72bdd5922125",
}


def cases() -> list[tuple[str, str, str]]:
    """(model, mode, loss): every model in batch mode, plus the stackable dlinear in per-strategy mode."""
    out = [(name, "batch", loss) for name in CATALOG for loss in ("mse", "mae", "huber")]
    return out + [("dlinear", "per-strategy", loss) for loss in ("mse", "mae", "huber")]


def forecast_hash(tmp_path, model: str, mode: str, loss: str) -> str:
    path = tmp_path / "panel.parquet"
    if not path.exists():
        make_strategy_panel(6, 40, seed=4).to_parquet(path, index=False)
    tiny = get_entry(model).config_cls.tiny()
    params = {f.name: getattr(tiny, f.name) for f in dataclasses.fields(tiny)}
    train = dataclasses.replace(TRAIN, loss=loss, batch_size=4 if mode == "per-strategy" else TRAIN.batch_size)
    spec = RunSpec(data=str(path), model=model, out="-", mode=mode, device="cpu", train=train, model_params=params)
    prep = prepare(spec, torch.device("cpu"), lambda line: None)
    torch.manual_seed(train.seed)
    net = make_model(prep.spec, prep.panel.n_series)
    trainer = make_trainer(prep.spec, net, prep, None, None)
    trainer.fit()
    rows = torch.arange(prep.panel.n_series)
    forecast = forecaster(prep.spec, trainer.model, prep)(prep.windows.forecast_inputs(), rows)
    assert forecast.dtype == torch.float32 and forecast.shape == (prep.panel.n_series, 4)
    return hashlib.sha256(forecast.contiguous().numpy().tobytes()).hexdigest()[:16]


@pytest.mark.skipif(torch.__version__.split("+")[0] != TORCH, reason=f"hashes recorded with torch {TORCH}")
@pytest.mark.parametrize(("model", "mode", "loss"), cases())
def test_point_losses_give_the_forecasts_recorded_before_heads(tmp_path, model, mode, loss):
    digest = forecast_hash(tmp_path, model, mode, loss)
    if os.environ.get("STRATCAST_PRINT_PINS"):
        print(f'    "{model}/{mode}/{loss}": "{digest}",')
    assert digest == PINS[f"{model}/{mode}/{loss}"]
