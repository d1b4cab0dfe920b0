"""stratcast against NeuralForecast on the same panel, architecture and settings, measured side by side.

Setup, once (NeuralForecast lives in its own git-ignored venv and is never a project dependency; torch is pinned
in the same command so pip keeps the local CPU wheel instead of pulling the CUDA build)::

    python3 -m venv benchmarks/.venv-nf
    benchmarks/.venv-nf/bin/pip install torch==2.13.0 neuralforecast

Run, from the repository root (``--models all``, or any list of the table's names; ``--nf-python`` and
``--data`` may be absolute)::

    .venv/bin/python benchmarks/vs_neuralforecast.py [--models all] [--quick] [--threads 2] [--repeats 3]

Each side runs as a fresh subprocess (stratcast with this interpreter, NeuralForecast with ``--nf-python``), one
after the other, with the same thread count (``torch.set_num_threads`` and ``OMP_NUM_THREADS``), so import costs
count in the process wall time (spawn to the first forecast in hand). Repeats alternate which side goes first,
each run waits (up to ``--max-wait`` s) for other processes to leave the cores idle, and the table shows the best
run of each side: the machine is shared, and other load only ever slows a run. A side that fails is reported with
its error and the run goes on. Per model and side it reports:

* training steps/s, excluding the first ``WARMUP`` steps (NF: a Lightning callback timing
  ``on_train_batch_end``; stratcast: the trainer's progress reports, every 10 steps of the real ``fit`` loop);
* predict seconds for every strategy x horizon, as a DataFrame (first call and best of ``--predict-repeats``);
* parameters, and the model's forward+backward FLOPs per step (``FlopCounterMode``; ``n/a`` where the generic
  step does not fit the model, e.g. NF's distribution outputs), the GFLOP/s that gives, and that as a share of a
  float32 matmul peak measured on the same threads (in every worker after its figures; the best is used).

Settings, identical on both sides: input 104, horizon 52, MSE loss, learning rate 1e-3, gradient norm clipped at
1.0, no validation and no early stopping (NF ``val_size=0``; stratcast ``val_size=0``), no scaling (``identity``
on both: NF's ``robust`` and stratcast's ``robust`` are different algorithms), dropout 0 on both, and the same
windows per step (1,024; 256 for the recurrent, convolutional and attention models that are slow per window, so
that ``--models all --quick --repeats 1`` takes about 20 minutes on 2 busy cores; ``Bench.windows``). Left as
each library does them: NF samples its windows from 32 series per step (its default ``batch_size``) and uses Adam
with StepLR; stratcast samples from every series and uses AdamW (weight decay 0, the same update) with a cosine
schedule; each model's catalog ``train_defaults`` (e.g. 1e-4 for attention) are not applied, the settings above
are. NF runs without progress bar, logger or model summary, which only spares it work.

Architecture: ``BENCHES`` maps each catalog config to NF's constructor (widths, layers, heads, kernels). What
could not be matched exactly, per model (the parameter counts in the table show how close each pair is):

* N-HiTS, NF's defaults: 3 stacks of 1 block, max-pool kernels (2, 2, 1), downsampling (4, 2, 1), linear
  interpolation. NF's ``mlp_units=3 * [[512, 512]]`` builds, per block, ``Linear(in, 512)`` with *no* activation,
  then three ``Linear(512, 512) + ReLU``, then one output layer (a quirk of its block); stratcast is given
  ``mlp_units=(512, 512, 512, 512)``, the same matmuls and FLOPs with one more ReLU. NF adds the last input value
  as a level and re-masks the residual after each block, and NF's last block also emits a backcast that feeds
  nothing (16.4 against 16.0 GFLOP per step); stratcast's heads are two matmuls (backcast, forecast) where NF's are
  one. N-BEATS (generic) is built the same way: three blocks of four 512-wide layers (NF: three ``identity``
  stacks of one block, ``mlp_units=3 * [[512, 512]]``).
* DLinear: a 25-period moving average on both; FLOPs are matmul FLOPs (elementwise work is left out), so
  stratcast's DLinear shows half of NF's: it folds the moving average into one weight and runs one matmul.
* TSMixer, TimeMixer, iTransformer: NF's are multivariate (``n_series`` channels per window); ours are univariate
  and mix channels derived from the one series (TSMixer: a 16-feature embedding per step; TimeMixer: 16 features
  per step, one series per window; iTransformer: four derived variates as tokens). The like-for-like shape is NF on
  a sub-panel of as many strategies as our channels: TSMixer ``n_series=16`` (a window is ``[104, 16]`` on both),
  iTransformer ``n_series=4`` (four tokens of 104 steps on both), TimeMixer ``n_series=16`` with
  ``channel_independence=1`` and 16 windows per step (16 x 16 = 256 one-series windows, ours 256). NF then
  forecasts only that sub-panel, so its predict time is not comparable and the table prints n/a for it. NF's
  TSMixer has no embedding or read-out layer (its channels are the series), ours has both; NF's iTransformer has
  no per-variate normalisation here (``use_norm=False``, as ours).
* SOFTS is multivariate on both: every strategy in one window (NF ``n_series=6000``, stratcast
  ``series_per_window=0``), 4 windows per step on both (24,000 series-windows). Ours also embeds each window's
  nonzero indicator (``zero_indicator``, on by default).
* DeepAR: a likelihood loss on both, Student-t (NF ``DistributionLoss("StudentT")``, ours
  ``loss=student-t``); 3 LSTM layers of 40; both forecast the mean of 100 sampled paths (one predict call per run).
* LSTM, GRU: 2 encoder layers of 128 and a 2-layer, 128-wide MLP decoder on both (NF's GRU default width is 200;
  set to 128).
* TCN: 6 levels of kernel 3, dilations 1..32, 64 channels on both; NF's encoder is one causal convolution per
  level and a linear map across time to the horizon feeding an MLP decoder (64 wide, 1 layer), ours two
  (weight-normalised) convolutions per residual level and a linear head from the last step.
* BiTCN: hidden size 16, kernel 2 and 7 levels (NF derives them from the input size: 7 for 104); NF adds a
  dense layer across time.
* KAN: one hidden layer of 64, grid 5, spline order 3, grid range [-3, 3]; NF's layer also has a standalone
  spline scale per edge (``enable_standalone_scale_spline``).
* Vanilla Transformer, Informer, Autoformer, FEDformer: d_model 64, 4 heads, feed-forward 128, 2 encoder layers
  and 1 decoder layer on both; Informer factor 5, Autoformer factor 1 and a 25-period moving average. FEDformer:
  8 heads (NF's FEDformer accepts no other), one 25-period moving average (ours is given ``moving_avg=(25,)``)
  and the 16 lowest Fourier modes (NF's random selection fails in its cross-attention when the decoder is
  shorter than the encoder: it indexes past the decoder's modes). NF's decoder reads a label of
  ``decoder_input_size_multiplier * 104`` steps: 26 for the three with our ``label_len=26``, and 1 for the vanilla
  Transformer, whose decoder in stratcast reads horizon queries only (NF's cannot take 0). NF embeds each step
  with a 3-tap convolution and a positional embedding; ours embed the value and its nonzero indicator.
* TimesNet: d_model 16, feed-forward 32, 2 layers, top-3 periods, 3 inception kernels on both; NF picks the
  periods per batch (the paper's way), ours per window.
* TFT: hidden 64, 4 heads, one LSTM layer on both, MSE (the catalog trains it with quantiles).
* PatchTST: patches of 16 every 8, d_model 128, 16 heads, feed-forward 256, 3 layers on both, NF without RevIN
  and without residual attention scores (ours has neither).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = "../shared/data/strategies/eurusd_2016_2019_weekly.parquet"
"""The real strategy panel, relative to the repository root."""
DEFAULT_NF_PYTHON = "benchmarks/.venv-nf/bin/python"
INPUT_SIZE, HORIZON, WINDOWS = 104, 52, 1024
LEARNING_RATE, GRAD_CLIP, SEED = 1e-3, 1.0, 1
WARMUP = 10
"""Steps left out of the steps/s figure on both sides (stratcast reports progress every 10 steps)."""
PREDICT_TARGET = 3.0
"""NF predict seconds over stratcast's, at least."""
RESULT_PREFIX = "RESULT "


@dataclass(frozen=True)
class Bench:
    """One model's like-for-like setting on both sides."""

    params: dict[str, Any]
    """stratcast's ``model_params`` (the catalog config's fields)."""
    nf_class: str
    """The class in ``neuralforecast.models``."""
    nf_kwargs: dict[str, Any]
    """Its architecture arguments, mapped to ``params`` (training settings are common to every model)."""
    steps: int
    quick_steps: int
    target: float
    """stratcast steps/s over NF's, at least (2x on the light models, linear and MLP-based, 1x elsewhere)."""
    windows: int = WINDOWS
    """Windows per step on both sides (reduced for the heavy models to keep the run short)."""
    nf_series: int = 0
    """NF multivariate models: 0 univariate on the full panel; -1 every series in one window (``n_series`` = the
    panel); ``k`` the first ``k`` strategies as ``n_series`` (a window of ``k`` channels, our derived channels)."""
    nf_windows: int = 0
    """NF's ``windows_batch_size`` where it differs from ``windows`` (a multivariate window holds many series)."""
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    """stratcast ``TrainConfig`` fields beyond the common ones."""
    nf_loss: str = "mse"
    """``mse``, or ``student-t`` (NF's ``DistributionLoss("StudentT")``) for DeepAR."""
    predict_repeats: int = 0
    """Predict calls per run where fewer than ``--predict-repeats`` (sampling models)."""


_ATTENTION = {"hidden_size": 64, "n_head": 4, "conv_hidden_size": 128, "encoder_layers": 2, "decoder_layers": 1}
_ATTENTION_OURS = {"d_model": 64, "n_heads": 4, "d_ff": 128, "encoder_layers": 2, "decoder_layers": 1, "dropout": 0.0}
BENCHES: dict[str, Bench] = {
    # linear and MLP-based
    "dlinear": Bench({"moving_avg": 25}, "DLinear", {"moving_avg_window": 25}, 200, 50, 2.0),
    "nlinear": Bench({}, "NLinear", {}, 200, 50, 2.0),
    "mlp": Bench(
        {"hidden_size": 1024, "num_layers": 2, "dropout": 0.0},
        "MLP",
        {"hidden_size": 1024, "num_layers": 2},
        100,
        30,
        2.0,
    ),
    "nbeats": Bench(
        {"stack_types": ("generic",), "n_blocks": 3, "num_layers": 4, "layer_width": 512},
        "NBEATS",
        {"stack_types": ["identity"] * 3, "n_blocks": [1, 1, 1], "mlp_units": 3 * [[512, 512]]},
        50,
        20,
        2.0,
    ),
    "nhits": Bench(
        {
            "n_pool_kernel_size": (2, 2, 1),
            "n_freq_downsample": (4, 2, 1),
            "n_blocks": 1,
            "mlp_units": (512, 512, 512, 512),  # NF's 3 * [[512, 512]]: input layer + three 512x512 layers
            "interpolation": "linear",
            "activation": "relu",
            "dropout": 0.0,
        },
        "NHITS",
        {
            "n_blocks": [1, 1, 1],
            "mlp_units": 3 * [[512, 512]],
            "n_pool_kernel_size": [2, 2, 1],
            "n_freq_downsample": [4, 2, 1],
            "pooling_mode": "MaxPool1d",
            "interpolation_mode": "linear",
            "dropout_prob_theta": 0.0,
            "activation": "ReLU",
        },
        50,
        20,
        2.0,
    ),
    "tide": Bench(
        {
            "hidden_size": 256,
            "num_encoder_layers": 2,
            "num_decoder_layers": 2,
            "decoder_output_dim": 16,
            "temporal_decoder_hidden": 64,
            "dropout": 0.0,
            "layer_norm": True,
        },
        "TiDE",
        {
            "hidden_size": 256,
            "num_encoder_layers": 2,
            "num_decoder_layers": 2,
            "decoder_output_dim": 16,
            "temporal_decoder_dim": 64,
            "dropout": 0.0,
            "layernorm": True,
        },
        100,
        30,
        2.0,
    ),
    "tsmixer": Bench(
        {"n_blocks": 2, "n_features": 16, "ff_dim": 64, "dropout": 0.0, "instance_norm": True},
        "TSMixer",
        {"n_block": 2, "ff_dim": 64, "dropout": 0.0, "revin": True},
        50,
        20,
        2.0,
        nf_series=16,
    ),
    "timemixer": Bench(
        {"d_model": 16, "d_ff": 32, "n_layers": 2, "n_scales": 3, "moving_avg": 13, "dropout": 0.0},
        "TimeMixer",
        {
            "d_model": 16,
            "d_ff": 32,
            "e_layers": 2,
            "down_sampling_layers": 3,
            "down_sampling_window": 2,
            "decomp_method": "moving_avg",
            "moving_avg": 13,
            "channel_independence": 1,
            "dropout": 0.0,
            "use_norm": True,
        },
        30,
        20,
        2.0,
        windows=256,
        nf_series=16,
        nf_windows=16,
    ),
    "kan": Bench(
        {"hidden_sizes": (64,), "grid_size": 5, "spline_order": 3, "grid_range": 3.0},
        "KAN",
        {"hidden_size": 64, "n_hidden_layers": 1, "grid_size": 5, "spline_order": 3, "grid_range": [-3, 3]},
        50,
        20,
        2.0,
    ),
    # recurrent and convolutional
    "lstm": Bench(
        {"hidden_size": 128, "num_layers": 2, "dropout": 0.0, "decoder_hidden_size": 128, "decoder_layers": 2},
        "LSTM",
        {"encoder_n_layers": 2, "encoder_hidden_size": 128, "decoder_hidden_size": 128, "decoder_layers": 2},
        30,
        20,
        1.0,
        windows=256,
        predict_repeats=1,
    ),
    "gru": Bench(
        {"hidden_size": 128, "num_layers": 2, "dropout": 0.0, "decoder_hidden_size": 128, "decoder_layers": 2},
        "GRU",
        {"encoder_n_layers": 2, "encoder_hidden_size": 128, "decoder_hidden_size": 128, "decoder_layers": 2},
        30,
        20,
        1.0,
        windows=256,
        predict_repeats=1,
    ),
    "tcn": Bench(
        {"channels": 64, "num_levels": 6, "kernel_size": 3, "dropout": 0.0},
        "TCN",
        {
            "kernel_size": 3,
            "dilations": [1, 2, 4, 8, 16, 32],
            "encoder_hidden_size": 64,
            "decoder_hidden_size": 64,
            "decoder_layers": 1,
        },
        30,
        20,
        1.0,
        windows=256,
    ),
    "bitcn": Bench(
        {"hidden_size": 16, "num_levels": 7, "kernel_size": 2, "dropout": 0.0},
        "BiTCN",
        {"hidden_size": 16, "dropout": 0.0},
        50,
        20,
        1.0,
    ),
    "deepar": Bench(
        {"hidden_size": 40, "num_layers": 3, "dropout": 0.0, "likelihood": "student-t"},
        "DeepAR",
        {"lstm_n_layers": 3, "lstm_hidden_size": 40, "lstm_dropout": 0.0, "trajectory_samples": 100},
        30,
        20,
        1.0,
        windows=256,
        train={"loss": "student-t"},
        nf_loss="student-t",
        predict_repeats=1,
    ),
    # attention
    "patchtst": Bench(
        {"patch_len": 16, "stride": 8, "d_model": 128, "n_heads": 16, "d_ff": 256, "n_layers": 3, "dropout": 0.0},
        "PatchTST",
        {
            "patch_len": 16,
            "stride": 8,
            "hidden_size": 128,
            "n_heads": 16,
            "linear_hidden_size": 256,
            "encoder_layers": 3,
            "dropout": 0.0,
            "fc_dropout": 0.0,
            "head_dropout": 0.0,
            "attn_dropout": 0.0,
            "revin": False,
            "res_attention": False,
        },
        30,
        20,
        1.0,
        windows=256,
    ),
    "itransformer": Bench(
        {"d_model": 128, "n_heads": 8, "d_ff": 256, "n_layers": 2, "dropout": 0.0},
        "iTransformer",
        {"hidden_size": 128, "n_heads": 8, "d_ff": 256, "e_layers": 2, "dropout": 0.0, "use_norm": False},
        50,
        20,
        1.0,
        nf_series=4,
    ),
    "softs": Bench(
        {"d_model": 128, "d_core": 64, "d_ff": 256, "n_layers": 2, "dropout": 0.0, "instance_norm": True},
        "SOFTS",
        {"hidden_size": 128, "d_core": 64, "d_ff": 256, "e_layers": 2, "dropout": 0.0, "use_norm": True},
        30,
        20,
        1.0,
        windows=4,
        nf_series=-1,
        train={"series_per_window": 0},
    ),
    "transformer": Bench(
        _ATTENTION_OURS,
        "VanillaTransformer",
        {**_ATTENTION, "decoder_input_size_multiplier": 1 / INPUT_SIZE},
        30,
        20,
        1.0,
        windows=256,
    ),
    "informer": Bench(
        {**_ATTENTION_OURS, "factor": 5, "label_len": 26},
        "Informer",
        {**_ATTENTION, "factor": 5, "decoder_input_size_multiplier": 0.25},
        30,
        20,
        1.0,
        windows=256,
    ),
    "autoformer": Bench(
        {**_ATTENTION_OURS, "moving_avg": 25, "factor": 1, "label_len": 26},
        "Autoformer",
        {**_ATTENTION, "MovingAvg_window": 25, "factor": 1, "decoder_input_size_multiplier": 0.25},
        30,
        20,
        1.0,
        windows=256,
    ),
    "fedformer": Bench(
        {**_ATTENTION_OURS, "n_heads": 8, "modes": 16, "mode_select": "lowest", "moving_avg": (25,), "label_len": 26},
        "FEDformer",
        {
            **_ATTENTION,
            "n_head": 8,
            "modes": 16,
            "mode_select": "low",
            "MovingAvg_window": 25,
            "decoder_input_size_multiplier": 0.25,
        },
        30,
        20,
        1.0,
        windows=256,
    ),
    "timesnet": Bench(
        {"d_model": 16, "d_ff": 32, "n_layers": 2, "top_k": 3, "n_kernels": 3, "dropout": 0.0},
        "TimesNet",
        {"hidden_size": 16, "conv_hidden_size": 32, "encoder_layers": 2, "top_k": 3, "num_kernels": 3, "dropout": 0.0},
        30,
        20,
        1.0,
        windows=256,
    ),
    "tft": Bench(
        {"d_model": 64, "n_heads": 4, "lstm_layers": 1, "dropout": 0.0},
        "TFT",
        {"hidden_size": 64, "n_head": 4, "n_rnn_layers": 1, "dropout": 0.0, "attn_dropout": 0.0},
        30,
        20,
        1.0,
        windows=256,
    ),
}
MODELS = tuple(BENCHES)


# -- the parent: spawn, collect, report ------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    if args.worker:
        job = json.loads(args.job)
        result = stratcast_worker(job) if args.worker == "stratcast" else nf_worker(job)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return
    nf_python = REPO / args.nf_python  # not resolved: the venv's python is a symlink that must stay one
    if not nf_python.exists():
        sys.exit(f"{nf_python} not found; create the NF venv first (see the setup note: {__file__})")
    if args.models == ["all"]:
        args.models = list(MODELS)
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; choose from: all {' '.join(MODELS)}")
    steps = {m: args.steps or (b.quick_steps if args.quick else b.steps) for m, b in BENCHES.items()}
    repeats = args.repeats or (1 if args.quick else 3)
    runs = run_all(args, nf_python, steps, repeats)
    report(runs, args, steps, repeats)
    if args.json:
        save(runs, args.json)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="long-format panel, relative to the repository root")
    p.add_argument("--nf-python", default=DEFAULT_NF_PYTHON, help="python of the NeuralForecast venv")
    p.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    p.add_argument("--models", nargs="+", default=["dlinear", "nhits"], help=f"all, or any of: {' '.join(MODELS)}")
    p.add_argument("--steps", type=int, default=0, help="training steps for every model (default: per model)")
    p.add_argument("--quick", action="store_true", help="fewer steps (each model's quick_steps) and one repeat")
    p.add_argument("--repeats", type=int, default=0, help="runs of each side, alternating order (default 3)")
    p.add_argument("--predict-repeats", type=int, default=3, help="predict calls per run (best is reported)")
    p.add_argument(
        "--max-wait", type=float, default=30.0, help="seconds to wait before each run for other load to drop"
    )
    p.add_argument("--json", default="", help="also write every run's figures to this file")
    p.add_argument("--worker", choices=("stratcast", "nf"), help=argparse.SUPPRESS)
    p.add_argument("--job", default="{}", help=argparse.SUPPRESS)
    return p.parse_args()


Runs = dict[tuple[str, str], list[dict[str, Any]]]


def run_all(args: argparse.Namespace, nf_python: Path, steps: dict[str, int], repeats: int) -> Runs:
    """Every (repeat, model, side), alternating which side goes first, each after waiting for a quiet machine."""
    data = (REPO / args.data).resolve()
    runs: Runs = {}
    for r in range(repeats):
        for model in args.models:
            for side in ("stratcast", "nf") if r % 2 == 0 else ("nf", "stratcast"):
                busy = wait_for_quiet(args.max_wait)
                job = {
                    "model": model,
                    "steps": steps[model],
                    "threads": args.threads,
                    "data": str(data),
                    "predict_repeats": BENCHES[model].predict_repeats or args.predict_repeats,
                }
                python = sys.executable if side == "stratcast" else str(nf_python)
                res = {**spawn(python, side, job, args.threads), "busy_cores_before": busy}
                runs.setdefault((model, side), []).append(res)
                if args.json:  # after every run, so that an interrupted run keeps what it measured
                    save(runs, args.json)
                if "error" in res:
                    print(f"[{r + 1}/{repeats}] {model:8s} {side:9s} FAILED: {res['error']}", flush=True)
                    continue
                print(
                    f"[{r + 1}/{repeats}] {model:8s} {side:9s} {res['steps_per_s']:7.1f} steps/s  "
                    f"predict {res['predict_best_s']:.3f} s  wall {res['wall_s']:5.1f} s  "
                    f"(other load before: {busy:.1f} cores)",
                    flush=True,
                )
    return runs


def save(runs: Runs, path: str) -> None:
    """Write every run's figures as JSON, keyed ``model/side``."""
    Path(path).write_text(json.dumps({f"{m}/{s}": v for (m, s), v in runs.items()}, indent=2))


def busy_cores(interval: float = 0.5) -> float:
    """Cores kept busy by any process over ``interval`` seconds, from ``/proc/stat`` (0 where it is missing)."""

    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # total, idle + iowait

    try:
        total0, idle0 = snapshot()
        time.sleep(interval)
        total1, idle1 = snapshot()
    except OSError:
        return 0.0
    return (1 - (idle1 - idle0) / max(total1 - total0, 1)) * (os.cpu_count() or 1)


def wait_for_quiet(limit_s: float, quiet: float = 0.5) -> float:
    """Wait up to ``limit_s`` for other processes to use under ``quiet`` cores; returns the last reading.

    Other developers' tests share these cores, and with every core taken a 2-thread torch process stalls at each
    parallel region waiting for a descheduled thread (we saw 5-15x slower steps), so a run is started in a quiet
    moment where one comes within the limit.
    """
    deadline = time.monotonic() + limit_s
    busy = busy_cores()
    while busy > quiet and time.monotonic() < deadline:
        time.sleep(2.0)
        busy = busy_cores()
    return busy


def spawn(python: str, side: str, job: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run one side in a fresh process (in a scratch folder) and return its figures, wall time included."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env["PYTHONWARNINGS"] = "ignore"
    with tempfile.TemporaryDirectory(prefix=f"vs-nf-{side}-") as scratch:
        job = {**job, "t0": time.time()}
        cmd = [python, str(Path(__file__).resolve()), "--worker", side, "--job", json.dumps(job)]
        proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stdout[-3000:] + proc.stderr[-3000:]).strip()
        sys.stderr.write(f"{side} {job['model']} failed (exit {proc.returncode}):\n{tail}\n")
        last = tail.splitlines()[-1] if tail else f"exit {proc.returncode}"
        return {"error": last[:300]}
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return result


def report(runs: Runs, args: argparse.Namespace, steps: dict[str, int], repeats: int) -> None:
    """Print the best run per model and side, the ratios against the targets, and the versions.

    Best, not median: other processes can only slow a run down, so the fastest of the repeats is the closest to
    what the code does on a quiet machine, and each side gets the same benefit. A model where a side failed is
    listed with the error instead of a figure.
    """

    def ok(model: str, side: str) -> list[dict[str, Any]]:
        return [r for r in runs.get((model, side), []) if "error" not in r]

    def best(model: str, side: str, key: str) -> float:
        values = [r[key] for r in ok(model, side)]
        return float(max(values) if key == "steps_per_s" else min(values))

    done = [m for m in args.models if ok(m, "stratcast") and ok(m, "nf")]
    failed = [m for m in args.models if m not in done]
    peaks = [r["matmul_gflops"] for rs in runs.values() for r in rs if "error" not in r]
    peak = max((p["peak"] for p in peaks), default=float("nan"))
    first = ok(done[0], "stratcast")[0] if done else {"panel": "?", "versions": {}}
    print()
    print(
        f"stratcast vs NeuralForecast: {first['panel']}, input {INPUT_SIZE}, horizon {HORIZON}, "
        f"{args.threads} threads, best of {repeats} run(s) per side"
    )
    head = (
        f"{'model':12s} {'side':9s} {'win':>5s} {'steps':>5s} {'steps/s':>8s} {'predict s':>10s} {'(1st)':>7s} "
        f"{'series':>6s} {'wall s':>7s} {'import s':>8s} {'params':>9s} {'GFLOP/step':>10s} {'GFLOP/s':>8s} "
        f"{'% peak':>7s}"
    )
    print(head)
    print("-" * len(head))
    for model in done:
        bench = BENCHES[model]
        for side in ("stratcast", "nf"):
            run = ok(model, side)[0]
            series = int(run["forecast_rows"]) // HORIZON
            win = bench.windows if side == "stratcast" else (bench.nf_windows or bench.windows)
            gflop = run["flops_per_step"] / 1e9
            rate = best(model, side, "steps_per_s")
            flops = (
                f"{gflop:10.2f} {gflop * rate:8.1f} {100 * gflop * rate / peak:6.0f}%"
                if gflop > 0
                else (f"{'n/a':>10s} {'':8s} {'':7s}")
            )
            print(
                f"{model:12s} {side:9s} {win:5d} {steps[model]:5d} {rate:8.2f} "
                f"{best(model, side, 'predict_best_s'):10.3f} {best(model, side, 'predict_first_s'):7.3f} "
                f"{series:6d} {best(model, side, 'wall_s'):7.1f} {best(model, side, 'import_s'):8.1f} "
                f"{run['params']:9d} {flops}"
            )
    print()
    if peaks:
        square = max(p["square_2048"] for p in peaks)
        shaped = max(p["nhits_1024x512x512"] for p in peaks)
        print(
            f"float32 matmul peak on {args.threads} threads, best seen: {peak:.0f} GFLOP/s "
            f"(2048^3: {square:.0f}; N-HiTS's [1024,512]x[512,512]: {shaped:.0f})"
        )
    print(
        f"{'ratio (stratcast vs NF)':24s} {'steps/s':>8s} {'target':>12s} {'predict':>8s} {'target':>12s} {'wall':>6s}"
    )
    for model in done:
        train = best(model, "stratcast", "steps_per_s") / best(model, "nf", "steps_per_s")
        target = BENCHES[model].target
        t_ok = "ok" if train >= target else "MISS"
        same = ok(model, "stratcast")[0]["forecast_rows"] == ok(model, "nf")[0]["forecast_rows"]
        if same:
            pred = best(model, "nf", "predict_best_s") / best(model, "stratcast", "predict_best_s")
            wall = best(model, "nf", "wall_s") / best(model, "stratcast", "wall_s")
            p_ok = "ok" if pred >= PREDICT_TARGET else "MISS"
            pred_s, wall_s = f"{pred:7.1f}x {'>= ' + str(PREDICT_TARGET) + 'x':>7s} {p_ok:4s}", f"{wall:5.2f}x"
        else:
            pred_s, wall_s = f"{'n/a':>8s} {'(NF forecasts a sub-panel)':>12s}", ""
        print(f"{model:24s} {train:7.2f}x {'>= ' + str(target) + 'x':>7s} {t_ok:4s} {pred_s} {wall_s}")
    for model in failed:
        errors = [
            f"{side}: {r['error']}" for side in ("stratcast", "nf") for r in runs.get((model, side), []) if "error" in r
        ]
        print(f"{model:24s} FAILED ({'; '.join(errors)[:300]})")
    if done:
        nf_info = ok(done[0], "nf")[0]["versions"]
        print(f"versions: {first['versions']} (stratcast side); {nf_info} (NF side)")


# -- shared by both workers ------------------------------------------------------------------------------------


def matmul_peak(threads: int) -> dict[str, float]:
    """Best float32 matmul GFLOP/s on ``threads`` threads: 2048^3, and N-HiTS's own [1024,512] x [512,512]."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, (m, k, n) in {"square_2048": (2048, 2048, 2048), "nhits_1024x512x512": (1024, 512, 512)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        reps = max(2, int(4e9 / (2 * m * k * n)))
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            best = min(best, (time.perf_counter() - began) / reps)
        out[name] = 2 * m * k * n / best / 1e9
    out["peak"] = max(out.values())
    return out


def steps_per_s(marks: list[tuple[int, float]]) -> float:
    """Steps per second between the first mark at or after ``WARMUP`` and the last mark."""
    later = [(s, t) for s, t in marks if s >= WARMUP]
    (s0, t0), (s1, t1) = later[0], later[-1]
    if s1 <= s0:
        raise ValueError(f"too few steps to time past the {WARMUP} warm-up steps")
    return (s1 - s0) / (t1 - t0)


def count_flops(step: Any) -> int:
    """FLOPs of one forward+backward pass, ``step`` being a function that runs it (0 where it cannot be run so)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            step()
    except Exception as e:  # a model whose batch or loss the generic step does not fit: no figure, not a failure
        print(f"FLOPs not counted: {type(e).__name__}: {e}", file=sys.stderr)
        return 0
    return int(counter.get_total_flops())


def best_of(fn: Any, first: float, repeats: int) -> float:
    """The fastest of ``first`` (already timed) and ``repeats - 1`` more timed calls of ``fn``."""
    times = [first]
    for _ in range(repeats - 1):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


# -- the stratcast side ----------------------------------------------------------------------------------------


def stratcast_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Train and predict with stratcast's engine API; runs in a fresh process."""
    began = time.perf_counter()
    import torch

    torch.set_num_threads(job["threads"])
    import numpy as np
    import pandas as pd

    from stratcast.daemon.engine.run.build import forecaster, make_model, make_trainer, prepare
    from stratcast.daemon.engine.run.outputs import forecast_future
    from stratcast.daemon.engine.spec.config import TrainConfig
    from stratcast.daemon.engine.spec.runspec import RunSpec
    from stratcast.shared.events import ProgressReported

    imported = time.perf_counter()
    bench = BENCHES[job["model"]]
    settings: dict[str, Any] = {
        "input_size": INPUT_SIZE,
        "horizon": HORIZON,
        "max_steps": job["steps"],
        "batch_size": bench.windows,
        "learning_rate": LEARNING_RATE,
        "grad_clip": GRAD_CLIP,
        "val_size": 0,
        "early_stop_patience": -1,
        "scaler": "identity",
        "loss": "mse",
        "seed": SEED,
    }
    train = TrainConfig(**{**settings, **bench.train})
    with tempfile.TemporaryDirectory() as out:
        spec = RunSpec(
            data=job["data"], model=job["model"], out=out, device="cpu", train=train, model_params=bench.params
        )
    marks: list[tuple[int, float]] = []
    threads_seen: list[int] = []

    def on_progress(p: ProgressReported) -> None:
        marks.append((p.step, time.perf_counter()))
        threads_seen.append(torch.get_num_threads())

    prep = prepare(spec, torch.device("cpu"), lambda _: None)
    model = make_model(spec, prep.panel.n_series)
    trainer = make_trainer(spec, model, prep, on_progress, None)
    trainer.fit()
    forecast_fn = forecaster(spec, trainer.model, prep)

    def predict_frame() -> pd.DataFrame:
        fc = forecast_future(spec, prep, forecast_fn).cpu().numpy()  # [N, H]
        n, h = fc.shape
        ids, steps = np.repeat(prep.panel.ids, h), np.tile(np.arange(1, h + 1), n)
        return pd.DataFrame({"strategy": ids, "step": steps, "forecast": fc.ravel()})

    t = time.perf_counter()
    frame = predict_frame()
    predict_first = time.perf_counter() - t
    wall = time.time() - job["t0"]
    predict_best = best_of(predict_frame, predict_first, job["predict_repeats"])

    def one_step() -> None:
        trainer.model.train()
        batch = trainer.sample()
        trainer.batch_loss(trainer.elementwise_loss(batch), batch).backward()

    return {
        "steps_per_s": steps_per_s(marks),
        "predict_first_s": predict_first,
        "predict_best_s": predict_best,
        "wall_s": wall,
        "import_s": imported - began,
        "flops_per_step": count_flops(one_step),
        "matmul_gflops": matmul_peak(job["threads"]),
        "threads": sorted(set(threads_seen)),
        "forecast_rows": len(frame),
        "panel": f"{prep.panel.n_series} strategies x {prep.panel.n_times} periods",
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "versions": {"torch": torch.__version__},
    }


# -- the NeuralForecast side (runs with --nf-python; nothing here is imported by the project) -------------------


def nf_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Train and predict with NeuralForecast; runs in a fresh process of the NF venv."""
    began = time.perf_counter()
    import torch

    torch.set_num_threads(job["threads"])
    import neuralforecast
    import neuralforecast.models as nf_models
    import pandas as pd
    import pytorch_lightning as pl  # type: ignore[import-not-found,unused-ignore]
    from neuralforecast import NeuralForecast
    from neuralforecast.losses.pytorch import MSE, DistributionLoss

    imported = time.perf_counter()

    marks: list[tuple[int, float]] = []
    threads_seen: set[int] = set()

    class StepTimer(pl.Callback):  # type: ignore[misc,unused-ignore]
        """Time stamps of every finished training step (kept outside: NF deep-copies its models' callbacks)."""

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            marks.append((int(trainer.global_step), time.perf_counter()))
            threads_seen.add(torch.get_num_threads())

    timer = StepTimer()
    bench = BENCHES[job["model"]]
    df = pd.read_parquet(job["data"]).rename(columns={"No.": "unique_id", "week": "ds", "profit": "y"})
    if bench.nf_series > 0:
        df = df[df["unique_id"].isin(df["unique_id"].unique()[: bench.nf_series])]
    cls = getattr(nf_models, bench.nf_class)
    n_series = df["unique_id"].nunique() if cls.MULTIVARIATE else 1
    loss = MSE() if bench.nf_loss == "mse" else DistributionLoss(distribution="StudentT", level=[80, 90])
    common: dict[str, Any] = {
        "h": HORIZON,
        "input_size": INPUT_SIZE,
        "max_steps": job["steps"],
        "windows_batch_size": bench.nf_windows or bench.windows,
        "learning_rate": LEARNING_RATE,
        "loss": loss,
        "scaler_type": "identity",
        "random_seed": SEED,
        "early_stop_patience_steps": -1,
        "gradient_clip_val": GRAD_CLIP,
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "callbacks": [timer],
    }
    if cls.MULTIVARIATE:
        common["n_series"] = n_series
    model = cls(**common, **bench.nf_kwargs)
    nf = NeuralForecast(models=[model], freq="W-MON")
    nf.fit(df=df, val_size=0)
    t = time.perf_counter()
    frame = nf.predict()
    predict_first = time.perf_counter() - t
    wall = time.time() - job["t0"]
    predict_best = best_of(nf.predict, predict_first, job["predict_repeats"])
    fitted = nf.models[0]

    def one_step() -> None:
        fitted.train()
        windows = bench.nf_windows or bench.windows
        batch = {
            "insample_y": torch.randn(windows, INPUT_SIZE, n_series),
            "insample_mask": torch.ones(windows, INPUT_SIZE, n_series),
            "futr_exog": None,
            "hist_exog": None,
            "stat_exog": None,
        }
        fitted(batch).square().mean().backward()

    return {
        "steps_per_s": steps_per_s(marks),
        "predict_first_s": predict_first,
        "predict_best_s": predict_best,
        "wall_s": wall,
        "import_s": imported - began,
        "flops_per_step": count_flops(one_step),
        "matmul_gflops": matmul_peak(job["threads"]),
        "threads": sorted(threads_seen),
        "forecast_rows": len(frame),
        "panel": f"{df['unique_id'].nunique()} strategies x {df['ds'].nunique()} periods",
        "params": sum(p.numel() for p in fitted.parameters()),
        "versions": {
            "neuralforecast": neuralforecast.__version__,
            "torch": torch.__version__,
            "lightning": pl.__version__,
        },
    }


if __name__ == "__main__":
    main()
