"""The ``compile`` option: the forward pass through torch.compile in training and prediction, same forecasts.

The catalog models are traced with the ``aot_eager`` backend (dynamo's tracing and AOT autograd, without building
C++ kernels, so the suite stays fast and needs no compiler); one model goes through inductor itself where a C++
compiler is installed.
"""

import dataclasses
import os
import shutil

import pytest
import torch

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.build import forecaster, make_model, make_trainer, prepare
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.engine.training import trainparts
from stratcast.daemon.zoo.catalog import CATALOG, get_entry

TRAIN = TrainConfig(input_size=12, horizon=4, max_steps=4, batch_size=16, val_check_steps=2, seed=3, precision="fp32")
SERVED = [n for n, e in CATALOG.items() if not e.capabilities.own_loss]
"""The models compile serves: all but those that train through their own loss (the option refuses those)."""
FAMILIES = ("nlinear", "nhits", "gru", "patchtst", "tide", "fits", "snn")
"""One model per family here (linear, MLP stacks, recurrent, attention, encoder-decoder MLP, Fourier, a custom
autograd function); ``STRATCAST_COMPILE_ALL=1`` runs every served model (about four minutes on two cores)."""
CASES = SERVED if os.environ.get("STRATCAST_COMPILE_ALL") else [n for n in FAMILIES if n in SERVED]
QUIET = (
    "ignore:The .grad attribute of a Tensor that is not a leaf",  # dynamo reading nn.LSTM's flat weights
    "ignore::DeprecationWarning",  # raised inside dynamo and inductor themselves (autograd.Function, jit)
)


def spec_for(tmp_path, model: str, *, compile: bool, mode: str = "batch") -> RunSpec:
    path = tmp_path / "panel.parquet"
    if not path.exists():
        make_strategy_panel(6, 40, seed=4).to_parquet(path, index=False)
    params = dataclasses.asdict(get_entry(model).config_cls.tiny())
    train = dataclasses.replace(TRAIN, compile=compile)
    return RunSpec(data=str(path), model=model, out="-", mode=mode, device="cpu", train=train, model_params=params)


def trained_forecast(spec: RunSpec) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.nn.Module]:
    prep = prepare(spec, torch.device("cpu"), lambda line: None)
    torch.manual_seed(spec.train.seed)
    trainer = make_trainer(spec, make_model(prep.spec, prep.panel.n_series), prep, None, None)
    trainer.fit()
    rows = torch.arange(prep.panel.n_series)
    forecast = forecaster(prep.spec, trainer.model, prep)(prep.windows.forecast_inputs(), rows)
    return forecast.detach(), trainer.model.state_dict(), trainer.run_model


@pytest.fixture
def aot_eager(monkeypatch):
    torch._dynamo.reset()
    monkeypatch.setattr(trainparts, "COMPILE_BACKEND", "aot_eager")
    yield
    torch._dynamo.reset()


@pytest.mark.usefixtures("aot_eager")
@pytest.mark.filterwarnings(*QUIET)
@pytest.mark.parametrize("model", CASES)
def test_a_compiled_model_trains_and_forecasts_as_the_eager_one(tmp_path, model):
    eager, eager_state, eager_run = trained_forecast(spec_for(tmp_path, model, compile=False))
    fast, state, run_model = trained_forecast(spec_for(tmp_path, model, compile=True))
    assert type(run_model).__name__ == "OptimizedModule" and eager_run is not run_model
    assert list(state) == list(eager_state)  # what is saved is the model's own state dict, not the wrapper's
    torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-4 * float(eager.abs().max().clamp(min=1)))


def test_compile_refuses_per_strategy_mode_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="compile does not apply in per-strategy mode"):
        spec_for(tmp_path, "dlinear", compile=True, mode="per-strategy")


def test_without_a_cpp_compiler_compile_says_what_to_install(monkeypatch):
    monkeypatch.setattr(trainparts, "COMPILE_BACKEND", "inductor")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match=r"needs a C\+\+ compiler.*install g\+\+ or leave compile off"):
        trainparts.compiled(torch.nn.Linear(2, 2), torch.device("cpu"))


@pytest.mark.filterwarnings(*QUIET)
@pytest.mark.skipif(not shutil.which("g++"), reason="inductor builds C++ kernels on a CPU: no g++ here")
def test_inductor_compiles_a_model_to_the_same_forecast(tmp_path):
    torch._dynamo.reset()
    eager, _, _ = trained_forecast(spec_for(tmp_path, "dlinear", compile=False))
    fast, _, _ = trained_forecast(spec_for(tmp_path, "dlinear", compile=True))
    torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-4 * float(eager.abs().max().clamp(min=1)))


def test_compile_refuses_a_model_that_trains_through_its_own_loss(tmp_path):
    own = next(n for n, e in CATALOG.items() if e.capabilities.own_loss)
    with pytest.raises(ValueError, match=f"compile does not apply to model '{own}': it trains through its own loss"):
        spec_for(tmp_path, own, compile=True)
