"""One harness over every catalog model: shapes, gradients, learning, persistence, determinism, vmap.

The tests of one capability (multivariate, per-series, sampling, origins) run on every catalog model that declares
it and on the toy models of :mod:`tests.daemon.zoo.toys`, so each branch is proven before a catalog model needs it.
"""

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

from stratcast.daemon.zoo.catalog import CATALOG, ModelEntry, describe_models
from stratcast.daemon.zoo.contract import (
    Capabilities,
    ModelConfig,
    set_activation_checkpointing,
    supports_activation_checkpointing,
)
from stratcast.daemon.zoo.heads import OwnLoss
from stratcast.daemon.zoo.models.nbeats import NBEATSConfig
from tests.daemon.zoo.toys import FIXED_MIXER, OWN_LOSS, TOYS

INPUT, HORIZON, BATCH = 32, 8, 16
N_SERIES = 5
"""The panel's number of series a per-series model is built for; multivariate windows hold all of them."""
NAMES = list(CATALOG)
ENTRIES: dict[str, ModelEntry] = {**CATALOG, **{toy.name: toy for toy in TOYS}}
ALL = list(ENTRIES)


def having(**wanted: bool) -> list[str]:
    """Names of the catalog models and toys whose capabilities match ``wanted``."""
    return [n for n, e in ENTRIES.items() if all(getattr(e.capabilities, k) == v for k, v in wanted.items())]


STACKABLE = having(stackable=True)


def caps(name: str) -> Capabilities:
    return ENTRIES[name].capabilities


def tiny_config(name: str, *, dropout: bool = True) -> ModelConfig:
    config = ENTRIES[name].config_cls.tiny()
    if dropout:
        return config
    zeros = {f.name: 0.0 for f in dataclasses.fields(config) if "dropout" in f.name}
    return dataclasses.replace(config, **zeros)


def build(name: str, *, seed: int = 0, n_outputs: int = 1, dropout: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    config = tiny_config(name, dropout=dropout)
    return ENTRIES[name].build(config, input_size=INPUT, horizon=HORIZON, n_outputs=n_outputs, n_series=N_SERIES)


def lead(name: str, batch: int) -> tuple[int, ...]:
    """The leading dimensions of a model's windows: [B] or, multivariate, [B, S] with every series."""
    return (batch, N_SERIES) if caps(name).multivariate else (batch,)


def side(name: str, batch: int, seed: int = 0) -> dict[str, Tensor]:
    """The side inputs ``name`` declares for ``batch`` windows: series ids and origins, shaped like the windows."""
    shape = lead(name, batch)
    gen = torch.Generator().manual_seed(seed)
    given = {
        # multivariate windows hold every series in panel order; univariate ones cycle through them
        "ids": torch.arange(N_SERIES).expand(shape) if len(shape) == 2 else torch.arange(batch) % N_SERIES,
        "origin": torch.randint(INPUT, 10 * INPUT, shape, generator=gen),
    }
    return {k: given[k] for k in caps(name).side_inputs}


def run(name: str, model: nn.Module, x: Tensor, extra: dict[str, Tensor] | None = None) -> Tensor:
    """``model`` on windows ``x`` and the side inputs it declares for them; a sampling model from seed 0."""
    if caps(name).stochastic:
        torch.manual_seed(0)
    out: Tensor = model(x, **(side(name, x.shape[0]) if extra is None else extra))
    return out


def windows(batch: int = BATCH, seed: int = 0, name: str | None = None) -> Tensor:
    """Random windows; every other one starts flat (zeros), like a strategy that began trading mid-window.

    Shaped for ``name``: [B, L], or [B, S, L] for a multivariate model.
    """
    shape = (batch,) if name is None else lead(name, batch)
    x = torch.randn(*shape, INPUT, generator=torch.Generator().manual_seed(seed))
    x[::2, ..., : INPUT // 4] = 0.0
    return x


def sine_batch(name: str, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Sines of period HORIZON with random level, amplitude and phase: the window determines the horizon."""
    shape = lead(name, BATCH)
    gen = torch.Generator().manual_seed(seed)
    level = 0.5 * torch.randn(*shape, 1, generator=gen)
    amplitude = 0.5 + torch.rand(*shape, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(*shape, 1, generator=gen)
    t = torch.arange(INPUT + HORIZON, dtype=torch.float32)
    series = level + amplitude * torch.sin(2 * math.pi * t / HORIZON + phase)  # [..., L + H]
    return series[..., :INPUT], series[..., INPUT:, None]  # [..., L], [..., H, 1]


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


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_forward_maps_window_to_horizon_by_outputs(name, n_outputs):
    model = build(name, n_outputs=n_outputs)
    out = run(name, model, windows(batch=4, name=name))
    assert out.shape == (*lead(name, 4), HORIZON, n_outputs)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", having(multivariate=False, stochastic=False))
def test_rows_are_forecast_independently(name):
    model = build(name).eval()
    x, given = windows(batch=6), side(name, 6)
    first_two = {k: v[:2] for k, v in given.items()}
    torch.testing.assert_close(model(x, **given)[:2], model(x[:2], **first_two))


@pytest.mark.parametrize("name", ALL)
def test_backward_gives_finite_gradients_to_every_parameter(name):
    model = build(name, n_outputs=3)
    out = run(name, model, windows(batch=4, name=name))
    (out - 1.0).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    infinite = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
    assert not missing, f"no gradient reaches {missing}"
    assert not infinite, f"non-finite gradient in {infinite}"


@pytest.mark.parametrize("name", ALL)
def test_overfits_one_batch(name):
    model = build(name, dropout=False)
    x, y = sine_batch(name)
    given = side(name, BATCH)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        optimizer.zero_grad()
        loss = (model(x, **given) - y).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0], f"loss went from {losses[0]:.4f} to {losses[-1]:.4f}"


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_gives_identical_output(name):
    source, target = build(name, seed=0).eval(), build(name, seed=1).eval()
    x = windows(name=name)
    assert not torch.equal(run(name, source, x), run(name, target, x))
    target.load_state_dict(source.state_dict())
    assert torch.equal(run(name, source, x), run(name, target, x))


@pytest.mark.parametrize("name", ALL)
def test_same_seed_gives_identical_weights_and_output(name):
    first, second = build(name, seed=7), build(name, seed=7)
    for (key, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), key
    x = windows(name=name)
    assert torch.equal(run(name, first.eval(), x), run(name, second.eval(), x))


@pytest.mark.parametrize("name", STACKABLE)
def test_stackable_models_run_under_vmap(name):
    models = [build(name, seed=seed, n_outputs=3).eval() for seed in range(3)]
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")

    def member(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor, given: dict[str, Tensor]) -> Tensor:
        out: Tensor = functional_call(skeleton, (p, b), (x,), given)
        return out

    xs = torch.randn(3, 4, INPUT, generator=torch.Generator().manual_seed(0))
    sides = [side(name, 4, seed=i) for i in range(3)]
    stacked_side = {k: torch.stack([s[k] for s in sides]) for k in caps(name).side_inputs}  # [3, 4] each
    stacked = vmap(member)(params, buffers, xs, stacked_side)
    alone = torch.stack([model(x, **s) for model, x, s in zip(models, xs, sides, strict=True)])
    torch.testing.assert_close(stacked, alone)
    stacked.square().mean().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in params.values())
    skeleton.train()
    assert vmap(member, randomness="different")(params, buffers, xs, stacked_side).shape == (3, 4, HORIZON, 3)


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


def test_describe_models_lists_every_model_with_its_parameters_and_capabilities():
    described = {model["name"]: model for model in describe_models()}
    assert list(described) == NAMES
    for name, entry in CATALOG.items():
        params = [p["name"] for p in described[name]["params"]]
        assert params == [f.name for f in dataclasses.fields(entry.config_cls)]
        assert described[name]["capabilities"] == dataclasses.asdict(entry.capabilities)
        assert described[name]["stackable"] == entry.capabilities.stackable  # where the TUI and report read it
        assert len(described[name]["good_for"]) > 20, f"{name}'s catalog entry does not say what it is good for"


@pytest.mark.parametrize("name", ALL)
def test_activation_checkpointing_is_offered_as_the_catalog_says_and_changes_no_result(name):
    model = build(name, n_outputs=3)
    assert supports_activation_checkpointing(model) == caps(name).checkpointing
    if not caps(name).checkpointing:
        with pytest.raises(ValueError, match="no blocks"):
            set_activation_checkpointing(model, True)
        return
    x = windows(name=name)

    def loss_and_grads(on: bool) -> tuple[Tensor, list[Tensor]]:
        set_activation_checkpointing(model, on)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # dropout is on: the recomputation must draw the same masks
        loss = (model(x, **side(name, x.shape[0])) - 1.0).square().mean()
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


# -- by capability: catalog models that declare it, and the toys -----------------------------------------------


@pytest.mark.parametrize("name", having(multivariate=True))
def test_a_multivariate_model_forecasts_the_series_it_is_given(name):
    model = build(name).eval()
    for s in (N_SERIES, 2, 1):
        x = torch.randn(3, s, INPUT, generator=torch.Generator().manual_seed(s))
        given = {k: v[:, :s] for k, v in side(name, 3).items()}  # the first s series
        if name == FIXED_MIXER.name and s != N_SERIES:
            with pytest.raises(ValueError, match=f"all {N_SERIES} series"):
                model(x, **given)
            continue
        assert model(x, **given).shape == (3, s, HORIZON, 1)


@pytest.mark.parametrize("name", having(multivariate=True))
def test_a_multivariate_model_reads_across_its_series(name):
    model = build(name).eval()
    x = windows(batch=2, name=name)
    moved = x.clone()
    moved[:, 1:] += 1.0  # every series but the first
    first = run(name, model, x)[:, 0]
    assert not torch.allclose(first, run(name, model, moved)[:, 0])


@pytest.mark.parametrize("name", having(multivariate=True, per_series=True))
def test_a_multivariate_model_with_per_series_parameters_refuses_series_it_was_not_built_for(name):
    model = build(name).eval()
    x = torch.randn(2, N_SERIES + 1, INPUT)
    with pytest.raises(ValueError):
        model(x, **side_for(name, x))


def side_for(name: str, x: Tensor) -> dict[str, Tensor]:
    """Side inputs for multivariate windows ``x`` [B, S, L] holding series 0..S-1 (ids past the panel when S > N)."""
    b, s = x.shape[:2]
    given = {"ids": torch.arange(s).expand(b, s), "origin": torch.full((b, s), INPUT)}
    return {k: given[k] for k in caps(name).side_inputs}


@pytest.mark.parametrize("name", having(per_series=True))
def test_a_per_series_model_forecasts_each_series_with_its_own_parameters(name):
    entry, model = ENTRIES[name], build(name).eval()
    x = windows(batch=2, name=name)
    given = side(name, 2)
    shifted = {**given, "ids": (given["ids"] + 1) % N_SERIES}
    assert not torch.allclose(run(name, model, x, given), run(name, model, x, shifted))
    with pytest.raises(ValueError, match="ids"):
        run(name, model, x, {**given, "ids": given["ids"] + N_SERIES})
    with pytest.raises(ValueError, match="n_series"):
        entry.build(tiny_config(name), input_size=INPUT, horizon=HORIZON)


@pytest.mark.parametrize("name", having(stochastic=True))
def test_a_sampling_model_is_reproducible_from_a_seed(name):
    model = build(name).eval()
    x, given = windows(name=name), side(name, BATCH)

    def sample(seed: int) -> Tensor:
        torch.manual_seed(seed)
        out: Tensor = model(x, **given)
        return out

    assert torch.equal(sample(5), sample(5))
    assert not torch.equal(sample(5), sample(6))


@pytest.mark.parametrize("name", having(origin=True))
def test_an_origin_model_forecasts_from_the_origins_it_is_given(name):
    model = build(name).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)  # away from any zero initialisation that would hide the origin
    x, given = windows(batch=4, name=name), side(name, 4)
    later = {**given, "origin": given["origin"] + 1}
    assert not torch.allclose(run(name, model, x, given), run(name, model, x, later))


def test_capabilities_refuse_a_stackable_model_that_reads_other_series_or_has_per_series_parameters():
    with pytest.raises(ValueError, match="cannot be stackable"):
        Capabilities(multivariate=True)
    with pytest.raises(ValueError, match="cannot be stackable"):
        Capabilities(per_series=True)
    assert Capabilities(per_series=True, origin=True, stackable=False).side_inputs == ("ids", "origin")
    assert Capabilities().side_inputs == ()


def test_a_model_has_its_own_loss_exactly_when_its_entry_says_so():
    for entry in [*ENTRIES.values(), OWN_LOSS]:
        config = entry.config_cls.tiny()
        model = entry.build(config, input_size=INPUT, horizon=HORIZON, n_outputs=1, n_series=N_SERIES)
        assert isinstance(model, OwnLoss) == entry.capabilities.own_loss, entry.name


def test_an_own_loss_model_scores_each_target_and_draws_reproducible_samples():
    torch.manual_seed(0)
    model = OWN_LOSS.build(OWN_LOSS.config_cls.tiny(), input_size=INPUT, horizon=HORIZON, n_outputs=1)
    assert isinstance(model, OwnLoss)
    x, y = torch.randn(5, INPUT), torch.randn(5, HORIZON)
    loss = model.training_loss(x, y)
    assert loss.shape == (5, HORIZON) and bool(torch.isfinite(loss).all())
    draws = [model.sample(x, 7, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert draws[0].shape == (7, 5, HORIZON)
    torch.testing.assert_close(draws[0], draws[1])
    assert not torch.equal(draws[0], model.sample(x, 7, torch.Generator().manual_seed(4)))
