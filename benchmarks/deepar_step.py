"""DeepAR's training step against a bare ``nn.LSTM`` of the same shape: what our model adds to the LSTM's own cost.

Forward and backward of the catalog DeepAR's teacher-forced loss (3 layers, 40 wide, Student-t head) on ``--windows``
windows of ``--input-size`` + ``--horizon`` steps, and of ``nn.LSTM(2, 40, 3)`` over the same ``L + H - 1`` steps,
alternated ``--rounds`` times in one process (the machine's noise hits both alike); prints each round and the ratio
of the medians. ``benchmarks/vs_neuralforecast.py`` compares the whole loop with NeuralForecast's.

    .venv/bin/python benchmarks/deepar_step.py [--windows 256] [--input-size 104] [--horizon 52] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from stratcast.daemon.zoo.models.deepar import DeepAR, DeepARConfig


def seconds(step: Callable[[], None], repeats: int) -> float:
    """Mean seconds of ``step`` over ``repeats`` calls, after one warm-up call."""
    step()
    began = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - began) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", type=int, default=256)
    p.add_argument("--input-size", type=int, default=104)
    p.add_argument("--horizon", type=int, default=52)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = DeepARConfig()
    model = DeepAR(config, input_size=args.input_size, horizon=args.horizon)
    bare = nn.LSTM(2, config.hidden_size, config.num_layers, batch_first=True, dropout=config.dropout)
    x, y = torch.randn(args.windows, args.input_size), torch.randn(args.windows, args.horizon)
    steps = torch.randn(args.windows, args.input_size + args.horizon - 1, 2)

    def ours() -> None:
        model.training_loss(x, y).mean().backward()

    def lstm() -> None:
        out, _ = bare(steps)
        out.sum().backward()

    times: dict[str, list[float]] = {"deepar": [], "nn.LSTM": []}
    for r in range(args.rounds):
        times["deepar"].append(seconds(ours, args.repeats))
        times["nn.LSTM"].append(seconds(lstm, args.repeats))
        print(f"round {r + 1}: deepar {times['deepar'][-1]:.3f} s, nn.LSTM {times['nn.LSTM'][-1]:.3f} s")
    a, b = statistics.median(times["deepar"]), statistics.median(times["nn.LSTM"])
    print(f"deepar / nn.LSTM: {a / b:.3f} (medians {a:.3f} / {b:.3f} s; {args.windows} windows, {args.threads} thread)")


if __name__ == "__main__":
    main()
