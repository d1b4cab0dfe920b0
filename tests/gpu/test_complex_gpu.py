"""Complex weights and FFTs on CUDA: bf16 autocast (precision auto), fused AdamW for the real parameters."""

import pytest
import torch
from torch import nn

from stratcast.daemon.engine.data.windows import PanelWindows, Split, TrainSampler, validation_windows
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.zoo.blocks.fourier import irfft, rfft
from tests.daemon.engine.test_complex import H, L, SpectralLinear, T, seasonal_panel, train_config

pytestmark = pytest.mark.gpu


def test_the_fourier_helpers_take_a_bf16_activation_under_cuda_autocast() -> None:
    mix, x = nn.Linear(L, L).cuda(), torch.randn(8, L, device="cuda")
    with torch.no_grad():
        reference = torch.fft.irfft(torch.fft.rfft(mix(x)) * 0.5, n=L)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            h = mix(x)
            out = irfft(rfft(h) * 0.5, n=L, dtype=h.dtype)
    assert h.dtype == torch.bfloat16 and out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), reference, atol=0.05, rtol=0.02)


def test_a_complex_model_trains_under_bf16_autocast_with_fused_adamw_for_its_real_weights() -> None:
    dev = torch.device("cuda")
    cfg = train_config(precision="auto")
    values = seasonal_panel().to(dev)
    windows = PanelWindows(values, torch.zeros(values.shape[0], dtype=torch.long, device=dev), input_size=L, horizon=H)
    split = Split.make(T, cfg.effective_val_size(T, 0), 0)
    torch.manual_seed(cfg.seed)
    trainer = Trainer(
        SpectralLinear(), cfg, TrainSampler(windows, split.train_end, 0), validation_windows(windows, split)
    )
    real, spectral = trainer.optimizer.param_groups
    assert real["fused"] is True and spectral["fused"] is None
    first = float(trainer.validation_loss())
    result = trainer.fit()
    assert result.best_val_loss is not None and result.best_val_loss < 0.5 * first
