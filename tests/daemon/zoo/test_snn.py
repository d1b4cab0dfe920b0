"""The spike is an exact Heaviside forward and the fast-sigmoid surrogate backward."""

import torch

from stratcast.daemon.zoo.blocks.spiking import LIFLayer, spike


def test_forward_spikes_are_exact_heavisides():
    v = torch.tensor([-2.0, -1e-6, 0.0, 1e-6, 3.0])
    assert torch.equal(spike(v, 10.0), torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]))


def test_backward_uses_the_fast_sigmoid_surrogate():
    v = torch.tensor([-2.0, -0.1, 0.0, 0.5, 3.0], requires_grad=True)
    spike(v, 4.0).sum().backward()
    assert v.grad is not None
    assert torch.allclose(v.grad, 1.0 / (1.0 + 4.0 * v.detach().abs()) ** 2)


def test_a_constant_current_fires_at_the_rate_the_threshold_sets():
    layer = LIFLayer(1, 1, beta=1.0, threshold=1.0, slope=10.0)
    with torch.no_grad():
        layer.linear.weight.fill_(0.5)
        layer.linear.bias.zero_()
    spikes, _ = layer(torch.ones(1, 8, 1))  # 0.5 per step, no leak, reset by subtraction: every second step
    assert torch.equal(spikes[0, :, 0], torch.tensor([0.0, 1.0] * 4))
