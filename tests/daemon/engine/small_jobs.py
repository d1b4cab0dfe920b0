"""A small MLP job on a small generated panel, and a search space over it, shared by the resume, micro-batch, OOM
and study tests."""

from pathlib import Path
from typing import Any

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.spec.runspec import build_spec

MLP_SPACE = """
[train]
weight_decay = {search = false}
lr_schedule = "constant"
warmup_steps = 0
grad_clip = {search = false}
scaler = {search = false}
loss = "mse"
[mlp]
activation = {search = false}
"""
"""Only the learning rate and the dropout are drawn: every configuration is valid and trains in a second."""

MLP_SETS = ["max_steps=30", "batch_size=32", "val_check_steps=5", "hidden_size=16", "num_layers=2"]


def write_small_panel(path: Path) -> Path:
    """8 strategies x 50 periods."""
    make_strategy_panel(8, 50, seed=2).to_parquet(path, index=False)
    return path


def mlp_spec(panel_file: Path, out: Path, mode: str = "batch", extra: Any = (), *, dropout: float) -> Any:
    """The small MLP job (input 8, horizon 4, holdout 4) with ``extra`` options."""
    return build_spec(
        data=str(panel_file),
        model="mlp",
        out=str(out),
        mode=mode,
        device="cpu",
        horizon=4,
        input_size=8,
        holdout=4,
        sets=[*MLP_SETS, f"dropout={dropout}", *extra],
    )
