"""The combination's fit on scaled errors (every strategy weighs alike) and its check across validation origins."""

import numpy as np
import pandas as pd
import torch

from stratcast.daemon.engine.prediction.combine import fit_checked, split_origins, step_stats
from stratcast.daemon.engine.run.build import prepare
from stratcast.daemon.engine.run.combining import validation_stats
from stratcast.daemon.engine.spec.runspec import build_spec

H = 6


def origins(k: int, seed: int, mix):
    """Per-origin statistics of 400 strategies: ``mix(a, b, noise, k)`` gives origin ``k``'s realized values."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(k):
        a, noise = (torch.randn(400, H, generator=g, dtype=torch.float64) for _ in range(2))
        b = torch.randn(400, generator=g, dtype=torch.float64)
        out.append(step_stats(a, b, mix(a, b, noise, i), torch.ones(400, H, dtype=torch.bool)))
    return out


def test_noise_keeps_the_combination_and_it_puts_the_weight_on_zero():
    combo = fit_checked(*split_origins(origins(12, 0, lambda a, b, noise, k: noise)))
    assert combo.check is not None and combo.check["kept"] and not combo.rejected
    assert float(combo.zero.mean()) > 0.95


def test_a_model_that_forecasts_well_keeps_its_weight():
    combo = fit_checked(*split_origins(origins(12, 1, lambda a, b, noise, k: a + 0.3 * noise)))
    assert float(combo.model.min()) > 0.85 and float(combo.trailing.max()) < 0.05


def test_a_baseline_that_helped_only_on_early_origins_leaves_the_raw_model():
    def mix(a, b, noise, k):  # the trailing mean carries signal on the first 6 origins, none after
        return (0.7 * a + 0.5 * b[:, None] if k < 6 else a) + 0.3 * noise

    combo = fit_checked(*split_origins(origins(12, 2, mix)))
    assert combo.check is not None and combo.rejected and combo.check["combined"] > combo.check["raw"]
    assert torch.equal(combo.model, torch.ones(H, dtype=torch.float64)) and float(combo.trailing.abs().max()) == 0
    assert "not better: the raw model forecasts" in combo.summary()


def test_one_origin_cannot_be_checked_and_is_fitted_as_it_is():
    combo = fit_checked(*split_origins(origins(1, 3, lambda a, b, noise, k: noise)))
    assert combo.check is None and float(combo.zero.mean()) > 0.9


def panel_file(tmp_path, huge: float):
    """20 strategies x 80 weeks of noise; strategy 0 in units ``huge`` times the others'."""
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, size=(20, 80))
    values[0] *= huge
    weeks = pd.date_range("2016-01-04", periods=80, freq="W-MON")
    frame = pd.DataFrame({"No.": np.repeat(np.arange(20), 80), "week": np.tile(weeks, 20), "profit": values.ravel()})
    path = tmp_path / f"huge{huge:g}.parquet"
    frame.to_parquet(path, index=False)
    return path


def fitted_on(tmp_path, huge: float):
    """The combination of a model that forecasts every strategy exactly but strategy 0, whose sign it flips."""
    spec = build_spec(
        data=str(panel_file(tmp_path, huge)), model="mlp", out="-", device="cpu", horizon=H, input_size=12,
        holdout=H, sets=["val_size=12"],
    )  # fmt: skip
    prep = prepare(spec, torch.device("cpu"), lambda line: None)

    def peeking(x, rows, origin=None):  # a fake model: the realized values, the first strategy's negated
        t = (origin[:, None] + torch.arange(H)).clamp(max=prep.raw.shape[1] - 1)  # [M, H]
        realized = prep.raw[rows].gather(1, t)
        return torch.where((rows == 0)[:, None], -realized, realized)

    return fit_checked(*split_origins(validation_stats(prep.spec, peeking, prep)))


def test_every_strategy_weighs_alike_whatever_its_units(tmp_path):
    alike, huge = fitted_on(tmp_path, 1.0), fitted_on(tmp_path, 1e4)
    # in its own units the huge strategy's flipped sign would put every weight on zero; scaled, it is 1 of 20
    assert torch.allclose(alike.model, huge.model, atol=1e-9) and torch.allclose(alike.trailing, huge.trailing)
    assert float(huge.model.mean()) > 0.8
