"""The hand-written LSTM and GRU of ``blocks/rnn.py`` against ``nn.LSTM``/``nn.GRU``: same outputs and gradients."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from stratcast.daemon.zoo.blocks.rnn import cell_step, cells_by_hand, gru_cell, hand_written, recur
from stratcast.daemon.zoo.catalog import build_model, make_config

B, L, IN = 5, 9, 3
MODULES = {"lstm": nn.LSTM, "gru": nn.GRU}
CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}


def both_paths(module: nn.Module, run, x):
    """The outputs and parameter gradients of ``run(module, x)`` through the fused module and the hand-written cells."""
    results = []
    for by_hand in (False, True):
        module.zero_grad()
        if by_hand:
            with cells_by_hand():
                out = run(module, x)
        else:
            out = run(module, x)
        out.pow(2).sum().backward()
        grads = {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}
        assert len(grads) == len(list(module.parameters()))
        results.append((out.detach(), grads))
    return results


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(
    ("layers", "bidirectional", "bias"), [(1, False, True), (3, False, True), (2, True, True), (2, True, False)]
)
def test_the_hand_written_recurrence_matches_the_fused_module_and_its_gradients(kind, layers, bidirectional, bias):
    torch.manual_seed(0)
    between = 0.3 if layers > 1 else 0.0  # off in eval mode: the paths' dropout masks would differ
    rnn = MODULES[kind](IN, 6, layers, batch_first=True, bidirectional=bidirectional, bias=bias, dropout=between)
    rnn.eval()
    x = torch.randn(B, L, IN)
    (fused, fused_grads), (hand, hand_grads) = both_paths(rnn, recur, x)
    assert hand.shape == (B, L, 6 * (2 if bidirectional else 1))
    torch.testing.assert_close(hand, fused, rtol=1e-5, atol=1e-6)
    assert fused_grads.keys() == hand_grads.keys()
    for k in fused_grads:
        torch.testing.assert_close(hand_grads[k], fused_grads[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_hand_written_cell_step_matches_the_fused_cell(kind):
    torch.manual_seed(1)
    cell = CELLS[kind](IN, 4)
    state = (torch.randn(B, 4), torch.randn(B, 4))

    def run(module, x):
        h, c = cell_step(module, x, state)
        return torch.cat([h, c], dim=-1)

    (fused, fused_grads), (hand, hand_grads) = both_paths(cell, run, torch.randn(B, IN))
    torch.testing.assert_close(hand, fused, rtol=1e-5, atol=1e-6)
    for k in fused_grads:
        torch.testing.assert_close(hand_grads[k], fused_grads[k], rtol=1e-4, atol=1e-5)
    if kind == "gru":
        assert torch.equal(hand[:, 4:], state[1])  # a GRU passes the cell state on untouched


def test_the_gru_cell_interpolates_between_its_candidate_and_its_state():
    """``h' = (1 - z) n + z h``: a saturated update gate keeps the state, a closed one takes the candidate."""
    h, w_hh = torch.randn(2, 3), torch.zeros(9, 3)
    keep = torch.cat([torch.zeros(2, 3), torch.full((2, 3), 50.0), torch.full((2, 3), 0.7)], dim=-1)
    take = torch.cat([torch.zeros(2, 3), torch.full((2, 3), -50.0), torch.full((2, 3), 0.7)], dim=-1)
    torch.testing.assert_close(gru_cell(keep, h, h, w_hh, None)[0], h)
    torch.testing.assert_close(gru_cell(take, h, h, w_hh, None)[0], torch.full((2, 3), 0.7).tanh())


def test_the_hand_written_path_is_taken_exactly_under_a_functorch_transform():
    seen: list[bool] = []

    def probe(x):
        seen.append(hand_written())
        return x

    probe(torch.zeros(1))
    vmap(probe)(torch.zeros(2, 1))
    with cells_by_hand():
        probe(torch.zeros(1))
    assert seen == [False, True, True] and not hand_written()


@pytest.mark.parametrize("name", ["lstm", "gru", "cnnlstm", "seq2seq"])
def test_a_vmapped_multi_layer_model_matches_its_members_run_alone(name):
    layers = {"lstm": "num_layers", "gru": "num_layers", "cnnlstm": "num_layers", "seq2seq": "encoder_layers"}[name]
    config = make_config(name, {layers: 2, "dropout": 0.0}, tiny=True)
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(name, config, input_size=L, horizon=4, n_outputs=2))
    params, buffers = stack_module_state(models)
    skeleton = build_model(name, config, input_size=L, horizon=4, n_outputs=2).to("meta")
    xs = torch.randn(3, B, L)
    stacked = vmap(lambda p, b, x: functional_call(skeleton, (p, b), (x,)))(params, buffers, xs)
    alone = torch.stack([m(x) for m, x in zip(models, xs, strict=True)])  # through nn.LSTM/nn.GRU
    torch.testing.assert_close(stacked, alone, rtol=1e-5, atol=1e-6)
    stacked.sum().backward()
    names = list(params)
    alone_grads = [
        torch.autograd.grad(m(x).sum(), [dict(m.named_parameters())[k] for k in names])
        for m, x in zip(models, xs, strict=True)
    ]
    for j, k in enumerate(names):
        torch.testing.assert_close(params[k].grad, torch.stack([g[j] for g in alone_grads]), rtol=1e-4, atol=1e-5)
