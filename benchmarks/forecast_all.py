"""Time to forecast every strategy: batch mode vs stacked per-strategy mode vs a sequential per-strategy loop.

All three train DLinear (input 104, horizon 52 by default) with the same scaler and no validation, then forecast
every strategy. Batch mode trains one global model (``--batch-steps`` steps of 1,024 windows). Per-strategy mode
gives every strategy its own model trained ``--member-steps`` steps of ``--member-batch`` windows (default 32):
stacked, all members at once; sequential, one fresh model per strategy in a Python loop, timed on ``--sample``
strategies and extrapolated to all of them. Measured one after the other in one process; the figures that matter
are the ratios.

    .venv/bin/python benchmarks/forecast_all.py [--data ../shared/data/strategies/eurusd_2016_2019_weekly.parquet]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.data.windows import PanelWindows, TrainSampler
from stratcast.daemon.engine.memory.device import describe_device, resolve_device, tune_cpu_allocator
from stratcast.daemon.engine.prediction.forecast import predict
from stratcast.daemon.engine.run.build import Prepared, forecaster, make_model, make_trainer, prepare
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.zoo.catalog import build_model, make_config

DEFAULT_DATA = "../shared/data/strategies/eurusd_2016_2019_weekly.parquet"


def spec_for(data: str, mode: str, steps: int, batch: int, args: argparse.Namespace) -> RunSpec:
    train = TrainConfig(input_size=args.input_size, horizon=args.horizon, max_steps=steps, batch_size=batch, val_size=0)
    return RunSpec(data=data, model="dlinear", out="-", mode=mode, device=args.device, train=train)


def timed_job(spec: RunSpec, prep: Prepared) -> tuple[float, Tensor]:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    trainer = make_trainer(spec, make_model(spec, prep.panel.n_series).to(prep.raw.device), prep, None, None)
    trainer.fit()
    rows = torch.arange(prep.panel.n_series, device=prep.raw.device)
    fc = forecaster(spec, trainer.model, prep)(prep.windows.forecast_inputs(), rows)
    sync(prep.raw.device)
    return time.perf_counter() - t0, fc


def sequential_seconds(spec: RunSpec, prep: Prepared, sample: int) -> float:
    """Seconds per strategy for a fresh model per strategy, trained and used in a Python loop."""
    cfg, rows = spec.train, torch.linspace(0, prep.panel.n_series - 1, sample).long()
    t0 = time.perf_counter()
    for i in rows.tolist():
        one = prep.windows.padded[i : i + 1, cfg.input_size : cfg.input_size + prep.panel.n_times]
        windows = PanelWindows(one, prep.start[i : i + 1], input_size=cfg.input_size, horizon=cfg.horizon)
        model = build_model("dlinear", make_config("dlinear"), input_size=cfg.input_size, horizon=cfg.horizon)
        Trainer(model, cfg, TrainSampler(windows, prep.split.train_end[i : i + 1], cfg.seed), None).fit()
        prep.scaler.inverse(predict(model, windows.forecast_inputs())[..., 0], torch.tensor([i]))
    sync(prep.raw.device)
    return (time.perf_counter() - t0) / sample


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="panel file; a generated 6,000 x 208 panel if missing")
    p.add_argument("--device", default="auto")
    p.add_argument("--input-size", type=int, default=104)
    p.add_argument("--horizon", type=int, default=52)
    p.add_argument("--batch-steps", type=int, default=500)
    p.add_argument("--member-steps", type=int, default=200)
    p.add_argument("--member-batch", type=int, default=32, help="windows per strategy per step (per-strategy)")
    p.add_argument("--sample", type=int, default=20, help="strategies timed in the sequential loop")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    tune_cpu_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data
    if not Path(data).exists():
        data = str(Path(tempfile.mkdtemp()) / "panel.parquet")
        make_strategy_panel(6000, 208, seed=0).to_parquet(data, index=False)
    device = resolve_device(args.device)
    print(f"device: {describe_device(device)}, torch threads: {torch.get_num_threads()}")
    batch = spec_for(data, "batch", args.batch_steps, 1024, args)
    stacked = spec_for(data, "per-strategy", args.member_steps, args.member_batch, args)
    prep = prepare(batch, device, lambda m: None)
    n = prep.panel.n_series
    print(f"panel: {n} strategies x {prep.panel.n_times} periods")
    t_batch, _ = timed_job(batch, prep)
    t_stacked, _ = timed_job(stacked, prep)
    per = sequential_seconds(stacked, prep, args.sample)
    t_seq = per * n
    print(f"\n{'method':<34}{'seconds':>10}{'vs sequential':>15}")
    print(f"{'batch (one global model)':<34}{t_batch:>10.1f}{t_seq / t_batch:>14.0f}x")
    print(f"{'per-strategy, stacked (vmap)':<34}{t_stacked:>10.1f}{t_seq / t_stacked:>14.0f}x")
    print(f"{'per-strategy, sequential loop':<34}{t_seq:>10.1f}{1:>14.0f}x")
    print(f"(sequential: {per * 1000:.0f} ms per strategy over {args.sample} strategies, times {n})")
    print(f"targets: batch >= 100x sequential: {t_seq / t_batch >= 100}; stacked >= 20x: {t_seq / t_stacked >= 20}")


if __name__ == "__main__":
    main()
