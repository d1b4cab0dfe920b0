"""One harness over every catalog model: shapes, gradients, learning, persistence, determinism, vmap."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from stratcast.daemon.zoo.catalog import CATALOG, build_model, describe_models, make_config
from stratcast.daemon.zoo.contract import ModelConfig, set_activation_checkpointing, supports_activation_checkpointing
from stratcast.daemon.zoo.models.nbeats import NBEATSConfig

INPUT, HORIZON, BATCH = 32, 8, 16
NAMES = list(CATALOG)
STACKABLE = [name for name, entry in CATALOG.items() if entry.stackable]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, which spin badly when other work shares the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(name: str, *, dropout: bool = True) -> ModelConfig:
    config = make_config(name, tiny=True)
    if dropout:
        return config
    zeros = {f.name: 0.0 for f in dataclasses.fields(config) if "dropout" in f.name}
    return dataclasses.replace(config, **zeros)


def build(name: str, *, seed: int = 0, n_outputs: int = 1, dropout: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    config = tiny_config(name, dropout=dropout)
    return build_model(name, config, input_size=INPUT, horizon=HORIZON, n_outputs=n_outputs)


def windows(batch: int = BATCH, seed: int = 0) -> Tensor:
    """Random windows; every other one starts flat (zeros), like a strategy that began trading mid-window."""
    x = torch.randn(batch, INPUT, generator=torch.Generator().manual_seed(seed))
    x[::2, : INPUT // 4] = 0.0
    return x


def sine_batch(seed: int = 0) -> tuple[Tensor, Tensor]:
    """Sines of period HORIZON with random level, amplitude and phase: the window determines the horizon."""
    gen = torch.Generator().manual_seed(seed)
    level = 0.5 * torch.randn(BATCH, 1, generator=gen)
    amplitude = 0.5 + torch.rand(BATCH, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(BATCH, 1, generator=gen)
    t = torch.arange(INPUT + HORIZON, dtype=torch.float32)
    series = level + amplitude * torch.sin(2 * math.pi * t / HORIZON + phase)  # [B, L + H]
    return series[:, :INPUT], series[:, INPUT:, None]  # [B, L], [B, H, 1]


def test_catalog_names_are_unique_lower_case_and_match_their_entries():
    names = [entry.name for entry in CATALOG.values()]
    assert names == NAMES
    assert len(set(names)) == len(names)
    assert all(name == name.lower() and " " not in name for name in names)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_config_is_a_small_instance_of_the_entry_config(name):
    entry = CATALOG[name]
    config = entry.config_cls.tiny()
    assert type(config) is entry.config_cls
    model = build(name)
    assert sum(p.numel() for p in model.parameters()) < 20_000


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_has_help_and_a_range_or_choices(name):
    for field in dataclasses.fields(CATALOG[name].config_cls):
        meta = field.metadata
        assert len(meta.get("help", "")) > 10, field.name
        if isinstance(field.default, tuple) and all(isinstance(v, str) for v in field.default):
            continue  # tuples of names are checked element-wise in __post_init__
        bounded = meta.get("lo") is not None and meta.get("hi") is not None
        assert bounded or meta.get("choices"), field.name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_forward_maps_window_to_horizon_by_outputs(name, n_outputs):
    model = build(name, n_outputs=n_outputs)
    out = model(windows(batch=4))
    assert out.shape == (4, HORIZON, n_outputs)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_rows_are_forecast_independently(name):
    model = build(name).eval()
    x = windows(batch=6)
    torch.testing.assert_close(model(x)[:2], model(x[:2]))


@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_finite_gradients_to_every_parameter(name):
    model = build(name, n_outputs=3)
    out = model(windows(batch=4))
    (out - 1.0).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    infinite = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
    assert not missing, f"no gradient reaches {missing}"
    assert not infinite, f"non-finite gradient in {infinite}"


@pytest.mark.parametrize("name", NAMES)
def test_overfits_one_batch(name):
    model = build(name, dropout=False)
    x, y = sine_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        optimizer.zero_grad()
        loss = (model(x) - y).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0], f"loss went from {losses[0]:.4f} to {losses[-1]:.4f}"


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_gives_identical_output(name):
    source, target = build(name, seed=0).eval(), build(name, seed=1).eval()
    x = windows()
    assert not torch.equal(source(x), target(x))
    target.load_state_dict(source.state_dict())
    assert torch.equal(source(x), target(x))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_weights_and_output(name):
    first, second = build(name, seed=7), build(name, seed=7)
    for (key, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), key
    x = windows()
    assert torch.equal(first.eval()(x), second.eval()(x))


@pytest.mark.parametrize("name", STACKABLE)
def test_stackable_models_run_under_vmap(name):
    models = [build(name, seed=seed, n_outputs=3).eval() for seed in range(3)]
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")

    def run(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        out: Tensor = functional_call(skeleton, (p, b), (x,))
        return out

    xs = torch.randn(3, 4, INPUT, generator=torch.Generator().manual_seed(0))
    stacked = vmap(run)(params, buffers, xs)
    alone = torch.stack([model(x) for model, x in zip(models, xs, strict=True)])
    torch.testing.assert_close(stacked, alone)
    stacked.square().mean().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in params.values())
    skeleton.train()
    assert vmap(run, randomness="different")(params, buffers, xs).shape == (3, 4, HORIZON, 3)


@pytest.mark.parametrize("name", NAMES)
def test_config_rejects_out_of_range_values(name):
    base = CATALOG[name].config_cls.tiny()
    for field in dataclasses.fields(base):
        for bad in _out_of_range(field.metadata, getattr(base, field.name)):
            with pytest.raises(ValueError, match=field.name):
                dataclasses.replace(base, **{field.name: bad})


def _out_of_range(meta: Mapping[str, Any], value: Any) -> list[Any]:
    """Values just outside a field's range (shaped like ``value``) or its choices."""
    bad: list[Any] = []
    element = value[0] if isinstance(value, tuple) else value
    for bound, step in ((meta.get("lo"), -1), (meta.get("hi"), 1)):
        if bound is not None:
            outside = type(element)(bound + step)
            bad.append((outside,) * len(value) if isinstance(value, tuple) else outside)
    if meta.get("choices") is not None and isinstance(value, str):
        bad.append("no-such-choice")
    return bad


def test_nbeats_rejects_unknown_stack_types():
    with pytest.raises(ValueError, match="stack_types"):
        NBEATSConfig(stack_types=("generic", "cyclic"))
    with pytest.raises(ValueError, match="stack_types"):
        NBEATSConfig(stack_types=())


def test_describe_models_lists_every_model_with_its_parameters():
    described = {model["name"]: model for model in describe_models()}
    assert list(described) == NAMES
    for name, entry in CATALOG.items():
        params = [p["name"] for p in described[name]["params"]]
        assert params == [f.name for f in dataclasses.fields(entry.config_cls)]


@pytest.mark.parametrize("name", NAMES)
def test_activation_checkpointing_is_offered_as_the_catalog_says_and_changes_no_result(name):
    model = build(name, n_outputs=3)
    assert supports_activation_checkpointing(model) == CATALOG[name].checkpointing
    if not CATALOG[name].checkpointing:
        with pytest.raises(ValueError, match="no blocks"):
            set_activation_checkpointing(model, True)
        return
    x = windows()

    def loss_and_grads(on: bool) -> tuple[Tensor, list[Tensor]]:
        set_activation_checkpointing(model, on)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # dropout is on: the recomputation must draw the same masks
        loss = (model(x) - 1.0).square().mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain, checkpointed = loss_and_grads(False), loss_and_grads(True)
    assert torch.equal(plain[0], checkpointed[0])
    assert len(plain[1]) == len(checkpointed[1]) == len(list(model.parameters()))
    # the recomputation runs the same kernels on the same inputs: bitwise the same gradients on a CPU
    assert all(torch.equal(a, b) for a, b in zip(plain[1], checkpointed[1], strict=True))


@pytest.mark.parametrize("name", ["nhits", "patchtst"])
def test_checkpointing_keeps_fewer_tensors_for_the_backward_pass(name):
    model = build(name)
    x = windows(batch=64)

    def saved_bytes(on: bool) -> int:
        set_activation_checkpointing(model, on)
        sizes: list[int] = []

        def pack(t: Tensor) -> Tensor:
            sizes.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x).sum()
        return sum(sizes)

    assert saved_bytes(True) < 0.5 * saved_bytes(False)
