"""FEDformer: the mixture decomposition sums back to its input, the kept Fourier modes are a fixed seeded draw, the
Fourier enhanced block is a per-mode linear map that touches only its modes, and bf16 autocast stays finite."""

from __future__ import annotations

import pytest
import torch

from stratcast.daemon.zoo.blocks.decompose import MixtureDecomposition, SeriesDecomposition
from stratcast.daemon.zoo.blocks.fourier import rfft
from stratcast.daemon.zoo.blocks.frequency import FourierBlock, FourierCrossAttention, select_modes
from stratcast.daemon.zoo.models.fedformer import FEDformer, FEDformerConfig

L, H = 40, 10


def block(modes: int, length: int = L) -> FourierBlock:
    torch.manual_seed(0)
    return FourierBlock(8, 2, length=length, modes=modes, policy="random", seed=3)


def test_the_mixture_decomposition_sums_back_and_is_a_convex_mix_of_moving_averages() -> None:
    torch.manual_seed(0)
    decomposition = MixtureDecomposition(4, (3, 7, 12))
    x = torch.randn(2, L, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    decomposition.double()
    trend, season = decomposition(x)
    torch.testing.assert_close(trend + season, x)
    averages = torch.stack([SeriesDecomposition(k)(x)[0] for k in (3, 7, 12)])  # [K, B, T, D]
    assert (trend >= averages.amin(0) - 1e-12).all() and (trend <= averages.amax(0) + 1e-12).all()
    level = torch.full_like(x, 2.5)
    torch.testing.assert_close(decomposition(level)[0], level)  # the weights sum to one


def test_one_expert_is_the_plain_moving_average_whatever_its_gate() -> None:
    x = torch.randn(3, L, 5, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(MixtureDecomposition(5, (9,))(x)[0], SeriesDecomposition(9)(x)[0])


def test_random_modes_are_a_fixed_draw_of_their_seed_whatever_the_global_seed() -> None:
    torch.manual_seed(1)
    first = select_modes(52, 10, policy="random", seed=4)
    torch.manual_seed(2)
    assert select_modes(52, 10, policy="random", seed=4) == first
    assert select_modes(52, 10, policy="random", seed=5) != first
    assert len(set(first)) == 10 and all(0 <= m <= 26 for m in first) and first == sorted(first)
    assert first != list(range(10))  # random, not the lowest
    assert select_modes(52, 10, policy="lowest", seed=4) == list(range(10))
    assert select_modes(52, 100, policy="random", seed=4) == list(range(27))


def test_with_every_mode_kept_and_identity_weights_the_block_returns_its_input() -> None:
    feb = block(modes=L)  # more than L // 2 + 1: every mode kept
    assert feb.modes.modes == list(range(L // 2 + 1))
    with torch.no_grad():
        feb.weight.zero_()
        feb.weight[0] = torch.eye(4)[None, :, :, None]  # real part the identity for every head and mode
    q = torch.randn(3, 2, 4, L, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(feb.spectral(q), q, atol=1e-5, rtol=1e-5)


def test_the_block_maps_each_kept_mode_by_its_own_matrix_and_zeroes_the_others() -> None:
    feb = block(modes=6)
    kept = feb.modes.modes
    q = torch.randn(3, 2, 4, L, generator=torch.Generator().manual_seed(4))
    out = rfft(feb.spectral(q))  # [B, h, e, F]
    dropped = [f for f in range(L // 2 + 1) if f not in kept]
    assert out[..., dropped].abs().max() < 1e-5
    w = torch.complex(feb.weight[0], feb.weight[1]).detach()  # [h, e_in, e_out, M]
    spectrum = rfft(q)
    for i, f in enumerate(kept):
        expected = torch.einsum("bhi,hio->bho", spectrum[..., f], w[..., i])
        if f in (0, L // 2):  # the mean and Nyquist terms of a real signal are real: the inverse FFT drops the rest
            expected = expected.real.to(expected.dtype)
        torch.testing.assert_close(out[..., f], expected, atol=1e-4, rtol=1e-4)


def test_the_attention_answers_in_the_queries_kept_modes_only() -> None:
    torch.manual_seed(0)
    fea = FourierCrossAttention(8, 2, q_length=30, kv_length=L, modes=5, policy="random", seed=7)
    x, memory = torch.randn(2, 30, 8), torch.randn(2, L, 8)
    heads = fea.spectral(
        *(t.reshape(2, -1, 2, 4).permute(0, 2, 3, 1) for t in (fea.q(x), *fea.kv(memory).chunk(2, -1)))
    )
    dropped = [f for f in range(16) if f not in fea.q_modes.modes]
    assert rfft(heads)[..., dropped].abs().max() < 1e-5
    assert fea(x, memory).shape == (2, 30, 8)


def test_under_bf16_autocast_the_forecast_and_the_gradients_are_finite() -> None:
    torch.manual_seed(0)
    config = FEDformerConfig(d_model=8, n_heads=2, d_ff=16, encoder_layers=2, decoder_layers=1, modes=6, label_len=10)
    net = FEDformer(config, input_size=L, horizon=H, n_outputs=3).eval()  # dropout off: the two passes compare
    x = torch.randn(8, L, generator=torch.Generator().manual_seed(5))
    x[::2, : L // 3] = 0.0
    with torch.no_grad():
        reference = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out.shape == (8, H, 3) and torch.isfinite(out).all()
    # no top-k here to flip: bf16 stays near float32
    assert (out.float() - reference).abs().mean() < 0.05 * reference.abs().mean() + 0.02
    out.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("kernels", [(), (0, 5)])
def test_the_config_refuses_an_empty_or_invalid_mixture(kernels: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="moving_avg"):
        FEDformerConfig(moving_avg=kernels)
