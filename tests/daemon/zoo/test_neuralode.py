"""The RK4 block integrates a known linear ODE to its closed form."""

import math

import pytest
import torch

from stratcast.daemon.zoo.blocks.ode import odeint_rk4, rk4_step


def test_rk4_integrates_a_rotation_to_its_closed_form():
    # dz/dt = A z with A a rotation generator damped by 0.1: z(t) = exp(-0.1 t) R(t) z0
    a = torch.tensor([[-0.1, -1.0], [1.0, -0.1]], dtype=torch.float64)
    z0 = torch.tensor([[1.0, 0.5], [-2.0, 0.3]], dtype=torch.float64)  # [B=2, D=2]
    got = odeint_rk4(lambda z: z @ a.T, z0, n_points=5, dt=1.0, substeps=50)  # [2, 5, 2]
    for i in range(5):
        t = i + 1.0
        rot = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=torch.float64)
        want = math.exp(-0.1 * t) * z0 @ rot.T
        assert torch.allclose(got[:, i], want, atol=1e-9)


def test_one_rk4_step_has_fourth_order_error():
    # dz/dt = z: one step of size h is the Taylor polynomial of exp(h) to degree four
    z0 = torch.ones(1, 1, dtype=torch.float64)
    h = 0.1
    step = rk4_step(lambda z: z, z0, h).item()
    assert step == pytest.approx(1 + h + h**2 / 2 + h**3 / 6 + h**4 / 24, rel=1e-12)
    assert abs(step - math.exp(h)) < 1e-7
