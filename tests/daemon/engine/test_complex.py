"""Models with complex weights and FFTs (FITS, FEDformer and kin) train under the real trainer.

Fused AdamW takes real parameters only, so complex ones get an optimizer group of their own; the Fourier helpers
run FFTs in float32 so the models train under bf16 autocast too.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch import Tensor, nn

from stratcast.daemon.engine.data.windows import PanelWindows, Split, TrainSampler, validation_windows
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.training.stacked import StackedModel, StackedSampler, StackedTrainer
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.zoo.blocks.fourier import irfft, rfft
from stratcast.daemon.zoo.catalog import build_model, make_config

L, H, N, T = 24, 8, 6, 80


class SpectralLinear(nn.Module):
    """FITS in miniature: the window's ``cut`` lowest frequencies, mixed by complex weights, extend it by ``H``."""

    def __init__(self, cut: int = 6) -> None:
        super().__init__()
        self.mix = nn.Linear(L, L)  # real weights before the FFT: under autocast its output is bf16
        self.cut, self.out_freqs = cut, cut * (L + H) // L
        g = torch.randn(cut, self.out_freqs, dtype=torch.complex64) / cut
        self.freq = nn.Parameter(g)

    def forward(self, x: Tensor) -> Tensor:
        """[B, L] -> [B, H, 1]."""
        h = self.mix(x)
        spectrum = rfft(h)[:, : self.cut] @ self.freq  # [B, cut] @ [cut, F] -> [B, F]
        full = irfft(spectrum, n=L + H, dtype=h.dtype) * ((L + H) / L)  # [B, F] -> [B, L + H]
        return full[:, -H:, None]  # [B, L + H] -> [B, H, 1]


def seasonal_panel(n: int = 16) -> Tensor:
    g = torch.Generator().manual_seed(0)
    phase = torch.rand(n, 1, generator=g) * 6.28
    return torch.sin(torch.arange(T)[None, :].float() / 3 + phase) + 0.1 * torch.randn(n, T, generator=g)


def train_config(**overrides: object) -> TrainConfig:
    base: dict[str, object] = {"input_size": L, "horizon": H, "batch_size": 32, "max_steps": 40}
    base |= {"learning_rate": 1e-2, "weight_decay": 0.01, "grad_clip": 1.0, "val_check_steps": 10, "seed": 1}
    return TrainConfig(**(base | overrides))  # type: ignore[arg-type]


def make_trainer(cfg: TrainConfig, model: nn.Module | None = None) -> Trainer:
    values = seasonal_panel()
    split = Split.make(T, cfg.effective_val_size(T, 0), 0)
    windows = PanelWindows(values, torch.zeros(values.shape[0], dtype=torch.long), input_size=L, horizon=H)
    torch.manual_seed(cfg.seed)
    net = SpectralLinear() if model is None else model
    sampler = TrainSampler(windows, split.train_end, cfg.seed)
    return Trainer(net, cfg, sampler, validation_windows(windows, split))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_model_with_complex_weights_trains_and_its_complex_weights_move(precision: str) -> None:
    trainer = make_trainer(train_config(precision=precision))
    assert isinstance(trainer.model, SpectralLinear)
    start = trainer.model.freq.detach().clone()
    first = float(trainer.validation_loss())
    result = trainer.fit()
    assert result.best_val_loss is not None and result.best_val_loss < 0.5 * first
    assert trainer.model.freq.dtype == torch.complex64
    assert not torch.allclose(trainer.model.freq.detach().imag, start.imag)


def test_real_parameters_keep_the_fused_optimizer_and_complex_ones_get_their_own_group() -> None:
    trainer = make_trainer(train_config())
    assert isinstance(trainer.model, SpectralLinear)
    real, complex_ = trainer.optimizer.param_groups
    assert real["fused"] is True and [id(p) for p in real["params"]] == [id(p) for p in trainer.model.mix.parameters()]
    assert complex_["fused"] is None and complex_["params"] == [trainer.model.freq]  # torch's default: no fusing
    torch.manual_seed(0)
    dlinear = build_model("dlinear", make_config("dlinear", tiny=True), input_size=L, horizon=H)
    (only,) = make_trainer(train_config(), dlinear).optimizer.param_groups  # real models: one group, as always
    assert only["fused"] is True


def test_a_complex_model_resumes_from_its_saved_state_with_the_same_next_steps() -> None:
    cfg = train_config(max_steps=12)
    straight = make_trainer(cfg)
    for _ in range(5):
        straight.train_step()
    buffer = io.BytesIO()
    torch.save(straight.state_dict(), buffer)
    for _ in range(3):
        straight.train_step()
    resumed = make_trainer(train_config(max_steps=12, seed=7))  # other weights and sampler: the state must win
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(3):
        resumed.train_step()
    for (ka, va), (kb, vb) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_clipping_counts_a_complex_gradient_as_its_real_and_imaginary_parts() -> None:
    trainer = make_trainer(train_config(grad_clip=0.5))
    for p in trainer.model.parameters():
        p.grad = torch.ones_like(p) * (1 + 1j if p.is_complex() else 1)
    trainer.clip()
    grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
    parts = [torch.view_as_real(g) if g.is_complex() else g for g in grads]  # complex [...] -> real [..., 2]
    assert float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in parts]))) == pytest.approx(0.5, rel=1e-5)


def test_a_complex_model_trains_stacked_one_member_per_series() -> None:
    values = seasonal_panel(N)
    windows = PanelWindows(values, torch.zeros(N, dtype=torch.long), input_size=L, horizon=H)
    split = Split.make(T, val_size=H, holdout=0)
    model = StackedModel(SpectralLinear, N, seed=0)
    cfg = train_config(batch_size=8, max_steps=30)
    trainer = StackedTrainer(
        model, cfg, StackedSampler(windows, split.train_end, 0), validation_windows(windows, split)
    )
    freq = model.members.get_parameter("freq")
    start = freq.detach().clone()  # [N, cut, F]
    first = trainer.validation_loss()
    trainer.fit()
    assert trainer.best_val is not None and bool((trainer.best_val < first).all())
    moved = (freq.detach() - start).abs().flatten(1).amax(dim=1)  # [N, cut, F] -> [N]
    assert bool((moved > 0).all())
    x = torch.randn(N, 3, L)
    out = model(x)
    for i in range(N):
        alone = SpectralLinear()
        alone.load_state_dict(model.member_state_dict(i))
        assert torch.allclose(alone(x[i]), out[i], atol=1e-5)
