import pytest
import torch

from stratcast.daemon.engine.evaluation import skill
from stratcast.daemon.engine.prediction import forecast
from stratcast.daemon.engine.prediction.forecast import OriginMemo, blend_toward_mean, predict


def test_baselines_use_only_periods_before_the_origin():
    raw = torch.arange(1.0, 21.0).reshape(2, 10)  # row 0: 1..10, row 1: 11..20
    start = torch.tensor([0, 6])
    b = skill.baselines(raw, start, origin=8, horizon=3, trailing_window=4, season=3)
    assert b["zero"].abs().sum() == 0
    assert b["trailing_mean"][:, 0].tolist() == pytest.approx([(5 + 6 + 7 + 8) / 4, (17 + 18) / 2])
    assert b["last_value"][:, 0].tolist() == [8.0, 18.0]
    assert b["seasonal_naive"][0].tolist() == [6.0, 7.0, 8.0]  # periods 5, 6, 7
    assert b["seasonal_naive"][1].tolist() == [0.0, 17.0, 18.0]  # period 5 precedes series 1's start


def test_scores_count_errors_and_rank_by_realized_profit_of_the_picks():
    realized = torch.tensor([[1.0, 1.0], [0.0, 0.0], [-1.0, -3.0]])
    good = torch.tensor([[2.0, 2.0], [0.0, 0.0], [-1.0, -1.0]])
    m = skill.score(realized, {"model": good, "zero": torch.zeros(3, 2), "trailing_mean": -good})
    assert m["errors"]["zero"]["mae"] == pytest.approx(6 / 6)
    assert m["errors"]["model"]["mae"] == pytest.approx((1 + 1 + 0 + 0 + 0 + 2) / 6)
    assert m["errors"]["model"]["rmse"] == pytest.approx(((1 + 1 + 4) / 6) ** 0.5)
    assert m["errors"]["model"]["total_mae"] == pytest.approx((2 + 0 + 2) / 3)
    assert m["ranking"]["k"] == {"top10": 3, "top1pct": 1}
    assert m["ranking"]["picks"]["model"]["top1pct"] == 1.0
    assert m["ranking"]["picks"]["trailing_mean"]["top1pct"] == -2.0
    assert m["ranking"]["picks"]["oracle"]["top1pct"] == 1.0
    assert "zero" not in m["ranking"]["picks"]
    assert m["ranking"]["universe_mean"] == pytest.approx((1 + 0 - 2) / 3)


def test_verdict_says_plainly_when_the_model_loses_to_the_zero_forecast():
    realized = torch.zeros(4, 3)
    bad = torch.ones(4, 3)
    m = skill.score(realized, {"model": bad, "zero": torch.zeros(4, 3), "trailing_mean": bad * 0.5})
    lines = skill.verdict(m)
    assert any("LOSES to the zero forecast" in line for line in lines)


def test_blend_moves_the_first_steps_toward_the_recent_mean_only():
    fc = torch.zeros(1, 5)
    out = blend_toward_mean(fc, torch.tensor([3.0]), steps=2)
    assert out[0].tolist() == pytest.approx([2.0, 1.0, 0.0, 0.0, 0.0])
    assert torch.equal(blend_toward_mean(fc, torch.tensor([3.0]), steps=0), fc)


def test_chunked_prediction_equals_one_forward_pass():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Unflatten(1, (4, 2)))
    x = torch.randn(1000, 6)
    with torch.no_grad():
        whole = model(x)
    assert torch.allclose(predict(model, x, chunk=300), whole)
    assert torch.allclose(predict(model, x), whole)  # the CPU's chunks of 256, the last one padded


def test_the_origin_memo_forecasts_each_row_and_origin_once_and_answers_in_the_order_asked():
    asked: list[int] = []

    def fn(x: torch.Tensor, rows: torch.Tensor, origin: torch.Tensor | None) -> torch.Tensor:
        asked.append(int(rows.numel()))
        noise = torch.rand(rows.numel(), 1)  # a fresh draw each call: the memo must give the first one again
        return x[:, :2] + noise

    memo = OriginMemo(fn, n_periods=10)
    rows, origin = torch.tensor([0, 1, 2, 0]), torch.tensor([5, 5, 5, 6])
    x = (rows * 100 + origin).double()[:, None].expand(4, 3)  # an input is its row and origin
    first = memo(x, rows, origin)
    assert torch.equal(first[:, 0] - first[:, 1], torch.zeros(4, dtype=torch.float64))
    again = memo(x[[3, 1]], rows[[3, 1]], origin[[3, 1]])
    assert torch.equal(again, first[[3, 1]]) and asked == [4]
    mixed = memo(torch.cat([x[[2]], x[[0]] + 1]), torch.tensor([2, 0]), torch.tensor([5, 10]))  # one new
    assert torch.equal(mixed[0], first[2]) and mixed[1, 0] > 1 and asked == [4, 1]
    assert torch.equal(memo(x[[1, 0]], rows[[1, 0]], origin[[1, 0]]), first[[1, 0]])
    memo(x, rows, None)  # without origins there is no key: it forecasts
    assert asked == [4, 1, 4]


def test_the_cpu_predicts_in_small_chunks_and_a_gpu_in_one_captured_shape():
    assert forecast.predict_chunk(torch.device("cpu")) == forecast.CPU_PREDICT_CHUNK < forecast.PREDICT_CHUNK
    assert forecast.predict_chunk(torch.device("cuda", 0)) == forecast.PREDICT_CHUNK


def test_baselines_of_each_series_use_only_the_periods_before_its_own_origin():
    raw = torch.arange(1.0, 21.0).reshape(2, 10)  # row 0: 1..10, row 1: 11..20
    start = torch.tensor([0, 2])
    b = skill.baselines(raw, start, origin=torch.tensor([8, 6]), horizon=3, trailing_window=4, season=3)
    assert b["trailing_mean"][:, 0].tolist() == pytest.approx([(5 + 6 + 7 + 8) / 4, (13 + 14 + 15 + 16) / 4])
    assert b["last_value"][:, 0].tolist() == [8.0, 16.0]
    assert b["seasonal_naive"].tolist() == [[6.0, 7.0, 8.0], [14.0, 15.0, 16.0]]


class ReadsBack(torch.nn.Module):
    """A forward pass that reads a value back to the host, which a CUDA graph capture forbids."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = float(x.abs().max()) or 1.0  # a host sync
        out: torch.Tensor = (self.lin(x / scale) * scale)[:, :, None]
        return out


def test_a_forward_pass_that_cannot_be_captured_is_predicted_without_a_graph_and_says_why(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(forecast, "GraphedForward", refuse)
    model, x = ReadsBack(), torch.randn(5, 4)
    with pytest.warns(forecast.GraphCaptureWarning, match=r"ReadsBack's forward pass cannot be captured .*capturing\)"):
        run = forecast._forward_fn(model, x, {}, "fp32", graphs=True)
    torch.testing.assert_close(run(x, {}), model(x))


@pytest.mark.gpu
def test_on_cuda_a_model_that_syncs_is_predicted_without_a_graph():
    model, x = ReadsBack().cuda(), torch.randn(7, 4, device="cuda")
    with pytest.warns(forecast.GraphCaptureWarning):
        out = forecast.predict(model, x, precision="fp32", chunk=3, graphs=True)
    torch.testing.assert_close(out, model(x).float())
