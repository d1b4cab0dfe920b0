"""CUDA code paths: bf16 autocast training, fused AdamW, on-device sampling and CUDA-graph prediction."""

import dataclasses

import pytest
import torch

from stratcast.daemon.engine.data.windows import PanelWindows, Split, TrainSampler, validation_windows
from stratcast.daemon.engine.memory.device import describe_device, resolve_device
from stratcast.daemon.engine.prediction.forecast import predict, predict_series
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.engine.training.trainparts import autocast_for, side_inputs
from stratcast.daemon.zoo.catalog import CATALOG, build_model, make_config

pytestmark = pytest.mark.gpu

SERIES = 5
"""The panel a per-series model is built for; a multivariate model's windows hold all of it."""


def cuda_trainer(model_name="nhits", precision="auto"):
    dev = torch.device("cuda")
    g = torch.Generator().manual_seed(0)
    values = torch.sin(torch.arange(120.0) / 4)[None, :] + 0.1 * torch.randn(64, 120, generator=g)
    cfg = TrainConfig(input_size=24, horizon=8, max_steps=80, batch_size=256, val_check_steps=20, precision=precision)
    split = Split.make(120, cfg.effective_val_size(120, 0), 0)
    windows = PanelWindows(values.to(dev), torch.zeros(64, dtype=torch.long, device=dev), input_size=24, horizon=8)
    torch.manual_seed(0)
    net = build_model(model_name, make_config(model_name, tiny=True), input_size=24, horizon=8)
    sampler = TrainSampler(windows, split.train_end, 0)
    return Trainer(net, cfg, sampler, validation_windows(windows, split))


def test_auto_device_picks_cuda_and_names_it():
    dev = resolve_device("auto")
    assert dev.type == "cuda" and "GiB" in describe_device(dev)


def test_bf16_training_on_cuda_uses_fused_adamw_and_learns():
    trainer = cuda_trainer()
    assert trainer.optimizer.defaults.get("fused") is True
    before = float(trainer.validation_loss())
    result = trainer.fit()
    assert result.best_val_loss < 0.5 * before
    assert all(p.device.type == "cuda" for p in trainer.model.parameters())


ONE_SERIES_PER_ROW = sorted(
    n for n, e in CATALOG.items() if not (e.capabilities.multivariate or e.capabilities.per_series)
)
"""Models predicted through CUDA graphs; multivariate ones are predicted without (``predict_series``)."""


@pytest.mark.parametrize("name", ONE_SERIES_PER_ROW)
def test_cuda_graph_prediction_equals_plain_prediction(name):
    torch.manual_seed(0)
    caps = CATALOG[name].capabilities
    net = build_model(name, make_config(name, tiny=True), input_size=24, horizon=8, n_series=SERIES)
    net = net.cuda().eval()
    series = torch.arange(SERIES, device="cuda")
    rows = series.expand(5000, SERIES) if caps.multivariate else series.repeat(1000)  # [M, S] or [M]
    x = torch.randn(*rows.shape, 24, device="cuda")
    side = side_inputs(caps, rows, torch.full_like(rows, 30))  # the ids and origins the model declares
    graphed = predict(net, x, side=side, chunk=1024, graphs=True, precision="fp32")
    plain = predict(net, x, side=side, chunk=1024, graphs=False, precision="fp32")
    assert torch.allclose(graphed, plain, atol=1e-5)


@pytest.mark.parametrize("name", ["mtgnn", "stemgnn"])
def test_a_graph_model_trains_under_bf16_and_predicts_every_series_on_cuda_as_on_the_cpu(name):
    torch.manual_seed(0)
    net = build_model(name, make_config(name, tiny=True), input_size=24, horizon=8, n_series=300)
    ids = torch.randperm(300)[:40].expand(4, 40)
    side = {"ids": ids} if CATALOG[name].capabilities.per_series else {}
    with autocast_for(torch.device("cuda"), "auto"):
        out = net.cuda()(torch.randn(4, 40, 24, device="cuda"), **{k: v.cuda() for k, v in side.items()})
    out.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in net.parameters())
    x, rows = torch.randn(300, 24), torch.arange(300)
    every = {"ids": rows} if side else {}
    on_cpu = predict_series(net.cpu(), x, series=64, side=every, precision="fp32")
    on_cuda = predict_series(
        net.cuda(), x.cuda(), series=64, side={k: v.cuda() for k, v in every.items()}, precision="fp32"
    )
    assert on_cuda.shape == (300, 8, 1) and bool(on_cuda.isfinite().all())
    if name == "mtgnn":  # StemGNN's eigenbasis of a near-uniform (untrained) graph is each solver's own choice
        torch.testing.assert_close(on_cuda.cpu(), on_cpu, atol=1e-3, rtol=1e-3)


def test_autocast_is_bf16_on_cuda_only_when_asked_or_auto():
    dev = torch.device("cuda")
    with autocast_for(dev, "auto"):
        assert (torch.ones(2, 2, device=dev) @ torch.ones(2, 2, device=dev)).dtype == torch.bfloat16
    with autocast_for(dev, "fp32"):
        assert (torch.ones(2, 2, device=dev) @ torch.ones(2, 2, device=dev)).dtype == torch.float32


def test_training_on_cuda_is_reproducible_for_a_seed_in_fp32():
    a, b = cuda_trainer(precision="fp32"), cuda_trainer(precision="fp32")
    a.cfg = b.cfg = dataclasses.replace(a.cfg, max_steps=20)
    a.fit(), b.fit()
    for va, vb in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.allclose(va, vb, atol=1e-5)
