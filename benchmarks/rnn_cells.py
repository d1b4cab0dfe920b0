"""The cost of the hand-written LSTM cells against ``nn.LSTM``, and of a per-strategy step that needs them.

``blocks/rnn.py`` keeps ``nn.LSTM`` (its fused kernel; cuDNN on a GPU) for batch mode and runs hand-written cells,
a Python loop over the window's steps, only under ``vmap`` (per-strategy mode). This times one training step
(forward, loss, backward, AdamW) of the ``lstm`` model at the same shapes through both paths, and one step of a
stacked per-strategy ensemble of the same model, side by side, with their ratios to the ``nn.LSTM`` step.

    .venv/bin/python benchmarks/rnn_cells.py [--batch 1024] [--input-size 52] [--hidden 64] [--layers 2]
        [--horizon 4] [--strategies 100] [--per-strategy-batch 32] [--repeats 5] [--threads 1]

One intra-op thread by default: on a machine whose cores other work shares, more threads spin and the figures
swing tenfold (measured: the nn.LSTM step 0.4 s on one thread, 5 s on two busy cores).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from stratcast.daemon.engine.training.stacked import StackedModel
from stratcast.daemon.zoo.blocks.rnn import cells_by_hand
from stratcast.daemon.zoo.catalog import build_model, make_config


def main() -> None:
    """Time the three steps and print them with their ratios."""
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    def factory() -> nn.Module:
        config = make_config("lstm", {"hidden_size": args.hidden, "num_layers": args.layers, "dropout": 0.0})
        return build_model("lstm", config, input_size=args.input_size, horizon=args.horizon)

    x = torch.randn(args.batch, args.input_size)
    y = torch.randn(args.batch, args.horizon, 1)
    fused_model = factory()
    fused = timed(training_step(fused_model, x, y), args.repeats)
    with cells_by_hand():
        by_hand = timed(training_step(fused_model, x, y), args.repeats)
    stacked_model = StackedModel(factory, args.strategies)
    stacked_model.match_grad_layout(args.input_size)  # as the per-strategy trainer does
    xs = torch.randn(args.strategies, args.per_strategy_batch, args.input_size)
    ys = torch.randn(args.strategies, args.per_strategy_batch, args.horizon, 1)
    stacked = timed(training_step(stacked_model, xs, ys), args.repeats)

    shape = f"L={args.input_size}, hidden {args.hidden} x {args.layers} layers, horizon {args.horizon}"
    print(f"lstm training step on the CPU ({torch.get_num_threads()} threads), {shape}; median of {args.repeats}")
    rows = [
        (f"batch mode, nn.LSTM, B={args.batch}", fused, args.batch),
        (f"batch mode, hand-written cells, B={args.batch}", by_hand, args.batch),
        (
            f"per-strategy, {args.strategies} stacked members x {args.per_strategy_batch} windows (vmap, cells)",
            stacked,
            args.strategies * args.per_strategy_batch,
        ),
    ]
    for label, seconds, windows in rows:
        per_window = 1e6 * seconds / windows
        print(f"  {label:<72} {1e3 * seconds:9.1f} ms  {per_window:7.1f} us/window  x{seconds / fused:5.2f}")


def training_step(model: nn.Module, x: Tensor, y: Tensor) -> Callable[[], None]:
    """One AdamW step of ``model`` on ``x`` against ``y`` under the squared error."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = (model(x) - y).square().mean()
        loss.backward()
        optimizer.step()

    return step


def timed(step: Callable[[], None], repeats: int) -> float:
    """The median seconds of ``repeats`` calls of ``step`` after one warm-up call."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse_args() -> argparse.Namespace:
    """The shapes and repetitions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024, help="windows per batch-mode step")
    parser.add_argument("--input-size", type=int, default=52, help="window length")
    parser.add_argument("--hidden", type=int, default=64, help="the LSTM's width")
    parser.add_argument("--layers", type=int, default=2, help="stacked LSTM layers")
    parser.add_argument("--horizon", type=int, default=4, help="forecast horizon")
    parser.add_argument("--strategies", type=int, default=100, help="members of the per-strategy ensemble")
    parser.add_argument("--per-strategy-batch", type=int, default=32, help="windows per member and step")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
