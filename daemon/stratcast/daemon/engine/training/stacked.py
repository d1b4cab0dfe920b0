"""Per-strategy training: one small model per series, all trained at once as a stacked ensemble.

The ``N`` members share one architecture. Their weights live in one set of tensors with a leading member
dimension ``N``, and one forward pass runs every member on its own windows with
``torch.func.vmap(torch.func.functional_call)``: a step is a handful of batched kernels whatever ``N`` is, never a
Python loop over strategies. Adam(W) is elementwise, so one optimizer over the stacked tensors moves every member
exactly as its own optimizer would; the loss is the sum of the members' losses (each member's gradient is the
gradient of its own loss), gradients are clipped per member, and early stopping keeps each member's best weights.

Shapes: ``N`` members (= series), ``b`` windows per member and step, ``L`` input periods, ``H`` horizon, ``O``
outputs per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from stratcast.daemon.engine.data.windows import PanelWindows, TrainSampler, WindowBatch
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.training.trainer import VAL_CHUNK, ScoreMeter, Trainer
from stratcast.daemon.zoo.contract import UNIVARIATE, Capabilities
from stratcast.shared.events import ProgressReported

MEMBER_SEED_BITS = 62


def member_seeds(seed: int, n_members: int) -> Tensor:
    """[N] int64 seeds, one per member, drawn deterministically from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2**MEMBER_SEED_BITS, (n_members,), generator=gen, dtype=torch.int64)


class StackedModel(nn.Module):
    """``N`` copies of one zoo architecture with their weights stacked along a leading member dimension.

    Member ``i`` is initialised exactly as ``factory()`` would be after ``torch.manual_seed(seeds[i])`` (see
    :attr:`seeds`), so members start as independently seeded models, and the ensemble is deterministic for a
    seed. Building calls ``factory`` once per member (initialisation only; training never loops over members).

    The state dict has the keys of a single model (prefixed ``members.``), each tensor with a leading ``N``;
    :meth:`member_state_dict` cuts one member out as a plain state dict of the zoo model.
    """

    def __init__(self, factory: Callable[[], nn.Module], n_members: int, *, seed: int = 0) -> None:
        super().__init__()
        if n_members < 1:
            raise ValueError(f"a stacked ensemble needs at least one member, got n_members={n_members}")
        self.n_members = n_members
        self.seeds = member_seeds(seed, n_members)
        """[N] the seed each member was initialised under."""
        self.members = _stack_members(factory, self.seeds)
        self.layouts: dict[str, tuple[int, ...]] = {}
        """Parameters stored permuted (see :meth:`match_grad_layout`): name -> the permutation applied."""
        # state dicts always hold the logical layout, whatever the storage order
        self.register_state_dict_post_hook(_logical_state)  # type: ignore[no-untyped-call]
        self.register_load_state_dict_pre_hook(_stored_state)  # type: ignore[no-untyped-call]
        """One instance of the architecture whose parameters and buffers hold all members: [N, ...] each.

        Never call it directly; :meth:`forward` swaps one member's slices in with ``functional_call``."""

    def forward(self, x: Tensor, **side: Tensor) -> Tensor:
        """Map ``x`` [N, b, L] (member ``i`` reads ``x[i]``) to [N, b, H, O]; side inputs are [N, b] each."""
        if x.shape[0] != self.n_members:
            raise ValueError(f"expected inputs for {self.n_members} members, got shape {tuple(x.shape)}")
        params = {k: self.logical(k, p) for k, p in self.members.named_parameters()}
        buffers: dict[str, Tensor] = dict(self.members.named_buffers())
        # randomness="different": dropout draws its own mask for every member, as separate models would
        out: Tensor = vmap(self._member_forward, randomness="different")(params, buffers, x, side)
        return out

    def _member_forward(
        self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, side: dict[str, Tensor]
    ) -> Tensor:
        """One member's forward: [b, L] -> [b, H, O] with that member's weight slices."""
        out: Tensor = functional_call(self.members, (params, buffers), (x,), side)
        return out

    def logical(self, name: str, stored: Tensor) -> Tensor:
        """The [N, ...] view of parameter ``name`` in its module's own dimension order."""
        perm = self.layouts.get(name)
        return stored if perm is None else stored.permute(_inverse(perm))

    def match_grad_layout(self, input_size: int, side_inputs: tuple[str, ...] = ()) -> None:
        """Store each stacked parameter in the memory order its vmapped gradient arrives in.

        A vmapped ``Linear`` returns its weight gradient as ``[N, in, out]`` memory seen as ``[N, out, in]``; autograd
        copies every gradient whose layout differs from its parameter's, the largest cost of a step at 6,000
        members. One probing backward pass (on zeros, the global RNG untouched) reads each gradient's dimension
        order; such a parameter is then stored permuted and contiguous (so fused AdamW needs no copies either) and
        :meth:`forward` hands the module a permuted view. Values are unchanged. Call before building an optimizer.
        ``side_inputs``: the keyword inputs the model declares (the probe gives each zeros).
        """
        params = dict(self.members.named_parameters())
        first = next(iter(params.values()))
        # windows are real: a complex first parameter (a spectral weight) gives the probe its real dtype
        probe = first.new_zeros(self.n_members, 1, input_size, dtype=first.dtype.to_real())
        side = {name: torch.zeros(self.n_members, 1, dtype=torch.long, device=first.device) for name in side_inputs}
        with torch.random.fork_rng(devices=[]):
            grads = torch.autograd.grad(self(probe, **side).sum(), list(params.values()), allow_unused=True)
        for (name, p), g in zip(params.items(), grads, strict=True):
            if g is None or g.is_contiguous() or name in self.layouts:
                continue
            strides = g.stride()
            perm = tuple(sorted(range(g.dim()), key=lambda d: -strides[d]))
            if perm[0] != 0 or not g.permute(perm).is_contiguous():
                continue
            owner, leaf = _owner(self.members, name)
            setattr(owner, leaf, nn.Parameter(p.detach().permute(perm).contiguous()))
            self.layouts[name] = perm

    def member_state_dict(self, i: int) -> dict[str, Tensor]:
        """Member ``i`` as the state dict of a single zoo model (copies, on the model's device)."""
        if not -self.n_members <= i < self.n_members:
            raise IndexError(f"member {i} out of range for {self.n_members} members")
        return {k.removeprefix("members."): v[i].detach().clone() for k, v in self.state_dict().items()}


def _logical_state(module: nn.Module, state: dict[str, Tensor], prefix: str, _meta: object) -> None:
    """State-dict post-hook: permuted parameters appear in their module's own dimension order."""
    assert isinstance(module, StackedModel)
    for name in module.layouts:
        key = f"{prefix}members.{name}"
        state[key] = module.logical(name, state[key])


def _stored_state(module: nn.Module, state: dict[str, Tensor], prefix: str, *_: object) -> None:
    """Load-state-dict pre-hook: logical tensors are permuted into the parameters' storage order."""
    assert isinstance(module, StackedModel)
    for name, perm in module.layouts.items():
        key = f"{prefix}members.{name}"
        if key in state:
            state[key] = state[key].permute(perm)


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation undoing ``perm``."""
    inv = [0] * len(perm)
    for i, d in enumerate(perm):
        inv[d] = i
    return tuple(inv)


def _stack_members(factory: Callable[[], nn.Module], seeds: Tensor) -> nn.Module:
    """Build every member under its seed and copy its tensors into stacked [N, ...] slots of the first one."""
    stacked: dict[str, Tensor] = {}
    skeleton: nn.Module | None = None
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG where it was
        for i, seed in enumerate(seeds.tolist()):
            # the CPU generator alone: ``torch.manual_seed`` would also queue a lazy CUDA seeding (with a traceback)
            # per member, two thirds of the time to build 6,000 members; factories build on the CPU
            torch.default_generator.manual_seed(seed)
            member = factory()
            tensors = dict(_named_tensors(member))
            if skeleton is None:
                skeleton = member
                # [*shape] -> [N, *shape], filled member by member (no N-model list in memory at once)
                stacked = {k: t.new_empty((len(seeds), *t.shape)) for k, t in tensors.items()}
            for k, t in tensors.items():
                stacked[k][i].copy_(t.detach())
    assert skeleton is not None
    for name, t in stacked.items():
        owner, leaf = _owner(skeleton, name)
        is_param = isinstance(getattr(owner, leaf), nn.Parameter)
        # Module.__setattr__ keeps a buffer's persistence flag and registers a Parameter in place
        setattr(owner, leaf, nn.Parameter(t) if is_param else t)
    return skeleton


def _named_tensors(module: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """Parameters then buffers (persistent or not), by qualified name."""
    yield from module.named_parameters()
    yield from module.named_buffers()


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The submodule holding tensor ``name`` (``a.b.weight``) and the tensor's own name."""
    path, _, leaf = name.rpartition(".")
    return (module.get_submodule(path) if path else module), leaf


def predict_stacked(model: StackedModel, x: Tensor, side: dict[str, Tensor] | None = None) -> Tensor:
    """Each member forecasts its own series: ``x`` [N, L] -> [N, H, O] (eval mode, no gradients).

    ``side``: the model's side inputs (:func:`~stratcast.daemon.engine.training.trainparts.side_inputs`), [N] each.
    """
    model.eval()
    one_each = {k: v[:, None] for k, v in (side or {}).items()}  # [N] -> [N, 1]
    with torch.no_grad():
        out: Tensor = model(x[:, None, :], **one_each)  # [N, L] -> [N, 1, L]: one window per member
    return out[:, 0]  # [N, 1, H, O] -> [N, H, O]


class StackedSampler(TrainSampler):
    """Training windows for a stacked ensemble: every step, ``b`` windows from each series for its own member.

    Origins are drawn uniformly from each series' own valid origins ``[earliest_origin, train_end)`` with targets
    at or after ``train_end`` masked out (the rules of :class:`TrainSampler`), all on the device in one draw from
    the sampler's generator.

    Raises:
        ValueError: when a series has no valid training origin (drop such series before stacking).
    """

    def __init__(self, windows: PanelWindows, train_end: int | Tensor, seed: int) -> None:
        """Sample each series' windows whose targets lie before ``train_end`` (one for every series, or one each)."""
        super().__init__(windows, train_end, seed)
        empty = torch.nonzero(self.count == 0).flatten()
        if empty.numel():
            raise ValueError(
                f"{empty.numel()} series have no training window (rows {empty[:5].tolist()}...): a stacked "
                f"ensemble trains one member per series, so drop series with fewer than "
                f"input_size={windows.input_size} periods before their validation part (period "
                f"{int(self.train_end[empty[0]])} for row {int(empty[0])})"
            )

    def sample(self, batch_size: int) -> WindowBatch:
        """Draw ``batch_size`` windows per series: x [N, b, L], y and mask [N, b, H], rows and origin [N, b]."""
        n, dev = self.count.shape[0], self.count.device
        # float64 keeps floor(u * count) uniform over [0, count) for any realistic count
        u = torch.rand((n, batch_size), generator=self.generator, device=dev, dtype=torch.float64)
        offset = (u * self.count[:, None]).long().clamp(max=self.count[:, None] - 1)  # [N, b]
        origin = self.lo[:, None] + offset  # [N, b]
        rows = torch.arange(n, device=dev)[:, None].expand(n, batch_size)  # [N] -> [N, b]
        flat_rows = rows.reshape(-1)  # [N, b] -> [N*b]
        flat = self.windows.gather(flat_rows, origin.reshape(-1), self.train_end[flat_rows])
        return _unflatten(flat, n)


def _unflatten(batch: WindowBatch, n: int) -> WindowBatch:
    """Split the leading [N*b] dimension of every field into [N, b]."""
    return batch.map(lambda t: t.reshape(n, -1, *t.shape[1:]))  # [N*b, ...] -> [N, b, ...]


def stack_validation(val: WindowBatch, n_members: int) -> WindowBatch:
    """Group flat validation windows (as from ``validation_windows``) by series: [V*N, ...] -> [N, V, ...].

    Raises:
        ValueError: when the series do not all have the same number of validation windows.
    """
    counts = torch.bincount(val.rows, minlength=n_members)
    if counts.numel() != n_members or bool((counts != counts[0]).any()):
        raise ValueError(
            f"stacked validation needs the same number of windows for each of the {n_members} series, "
            f"got between {int(counts.min())} and {int(counts.max())}"
        )
    order = torch.sort(val.rows, stable=True).indices  # series-major, origins in their original order
    return _unflatten(val.map(lambda t: t[order]), n_members)


class StackedTrainer(Trainer):
    """Trains a :class:`StackedModel`, one member per series, as if each member were trained alone.

    ``cfg.batch_size`` means windows **per strategy** per step here: a step draws ``batch_size`` windows from
    every series, ``N * batch_size`` in all. ``val`` is the flat output of ``validation_windows`` (one window per
    series per origin); it is grouped by series. Validation losses are per member, [N]; each member keeps its
    own best weights, and training stops early once no member has improved for ``early_stop_patience`` checks.

    ``cfg.micro_batch_size`` is per strategy too: micro-batches cut the ``b`` windows of every member (the [N, b]
    batch along ``b``), and each member's loss share is divided by that member's count of scored targets in the
    whole step, so each member's accumulated gradient is its unsplit one (to float tolerance, as in batch mode).
    """

    def __init__(
        self,
        model: StackedModel,
        cfg: TrainConfig,
        sampler: StackedSampler,
        val: WindowBatch | None,
        *,
        on_progress: Callable[[ProgressReported], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        capabilities: Capabilities = UNIVARIATE,
    ) -> None:
        n = sampler.windows.n_series
        if model.n_members != n:
            raise ValueError(f"the ensemble has {model.n_members} members for {n} series")
        grouped = None if val is None else stack_validation(val, n)
        model.to(sampler.windows.padded.device).match_grad_layout(sampler.windows.input_size, capabilities.side_inputs)
        super().__init__(
            model, cfg, sampler, grouped, on_progress=on_progress, should_stop=should_stop, capabilities=capabilities
        )
        self.n_members = n
        self.checkpointable = False  # torch.utils.checkpoint cannot recompute inside the vmapped forward
        self.split_dim = 1  # micro-batches cut each member's windows: [N, b, ...] -> [N, m, ...]
        self.best_steps = torch.full((n,), -1, dtype=torch.long, device=self.device)
        """[N] step of each member's best validation loss (-1 before the first check)."""

    @property
    def windows_per_step(self) -> int:
        """``batch_size`` windows from each of the ``N`` series."""
        return self.cfg.batch_size * self.n_members

    def train_step(self) -> Tensor:
        """One step; returns the mean of the members' losses (the optimised loss is their sum)."""
        return super().train_step() / self.n_members

    def member_losses(self, err: Tensor, batch: WindowBatch) -> tuple[Tensor, Tensor]:
        """Per-member masked sums of the elementwise loss ``err`` [N, b, H] and target counts, each [N]."""
        weights = batch.mask.to(err.dtype)  # [N, b, H]
        return (err * weights).sum(dim=(1, 2)), weights.sum(dim=(1, 2))

    def target_count(self, batch: WindowBatch) -> Tensor:
        """[N] scored targets of each member in the step's windows [N, b, H]."""
        return batch.mask.to(torch.float32).sum(dim=(1, 2))

    def micro_loss(self, err: Tensor, part: WindowBatch, count: Tensor) -> Tensor:
        """Sum over members of each member's loss sum in this micro-batch over its step ``count`` [N]."""
        total, _ = self.member_losses(err, part)
        return (total / count.clamp(min=1)).sum()

    def batch_loss(self, err: Tensor, batch: WindowBatch) -> Tensor:
        """Sum over members of each member's masked mean loss: member ``i`` gets exactly its own gradient."""
        total, count = self.member_losses(err, batch)
        return (total / count.clamp(min=1)).sum()

    def clip(self) -> None:
        """Clip each member's gradient to global norm ``grad_clip`` over all of its parameter slices."""
        if self.cfg.grad_clip <= 0:
            return
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return
        # per tensor [N, ...] -> [N] norms, stacked to [P, N]; then the norm over tensors -> [N]
        norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
        total = torch.linalg.vector_norm(norms, dim=0)
        coef = (self.cfg.grad_clip / (total + 1e-6)).clamp(max=1.0)  # as clip_grad_norm_ computes it
        # on the CPU only the members over the limit (a few dozen of 6,000 after the first steps) are scaled:
        # finding them costs no device sync there; elsewhere every row is (by at most 1)
        rows: Tensor | slice = torch.nonzero(coef < 1).flatten() if self.device.type == "cpu" else slice(None)
        for g in grads:
            g[rows] *= coef[rows].view(-1, *(1,) * (g.dim() - 1))  # [M] -> [M, 1, ...]

    @torch.no_grad()
    def validation_loss(self) -> Tensor:
        """[N] each member's loss on its own series' validation windows, in chunks of windows."""
        assert self.val is not None
        total = torch.zeros(self.n_members, device=self.device)
        count = torch.zeros(self.n_members, device=self.device)
        n_val = self.val.x.shape[1]
        step = max(1, VAL_CHUNK // self.n_members)
        score = ScoreMeter(self.units, self.device, self.val.y.shape[-1])
        for lo in range(0, n_val, step):
            part = self.val.map(lambda t: t[:, lo : lo + step])  # noqa: B023 (used at once)
            err, point = self.validation_part(part)
            t, c = self.member_losses(err, part)
            total += t
            count += c
            score.add(point, part)
        self.last_score = score.value()
        return total / count.clamp(min=1)

    def improved(self, val: Tensor) -> bool:
        """Keep the weights of every member whose loss in ``val`` [N] beat its best; true when any did."""
        if self.best_val is None or self.best_state is None:
            better = torch.ones_like(val, dtype=torch.bool)
            best_val, best_state = val, self.model.state_dict()
        else:
            better = (val < self.best_val) | (self.best_val.isnan() & ~val.isnan())
            best_val, best_state = self.best_val, self.best_state
        if not bool(better.any()):
            return False
        # torch.where allocates: the kept state never aliases the live weights
        self.best_val = torch.where(better, val, best_val).detach()
        self.best_state = {
            k: torch.where(_member_mask(better, v), v, best_state[k]) for k, v in self.model.state_dict().items()
        }
        self.best_steps = torch.where(better, self.step, self.best_steps)
        self.best_step = self.step
        return True

    def state_dict(self) -> dict[str, Any]:
        """The :class:`Trainer` state plus each member's best step."""
        return {**super().state_dict(), "best_steps": self.best_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        super().load_state_dict(state)
        self.best_steps = state["best_steps"].to(self.device)


def _member_mask(better: Tensor, like: Tensor) -> Tensor:
    """[N] -> [N, 1, ...] to select whole members of a stacked tensor shaped like ``like``."""
    return better.view(-1, *(1,) * (like.dim() - 1))
