"""One rank of a two-process gloo group, run by test_distributed.py: ``python -m tests.daemon.engine.rank_steps``.

Arguments: ``RANK WORLD PORT PANEL OUT``. The rank

1. takes one step of a :class:`RankTrainer` on its part of a fixed union batch (rank ``r``: windows ``[4r, 4r+4)``
   of 8 drawn by a fixed sampler; rank 1 in micro-batches of 1), and keeps its summed gradients;
2. trains the job's trainer as a run over ``WORLD`` devices builds it (its own sampler stream, sharded validation)
   for a few steps, rank 1 under the injected out-of-memory fault (its micro-batches above 3 windows fail once);
3. trains a multivariate model (SOFTS, windows of 3 series) with dropout the same way;

and saves both results to ``OUT/rank{RANK}.pt`` for the test to compare.
"""

import dataclasses
import os
import sys
from pathlib import Path

import torch
from torch._C._distributed_c10d import TCPStore

from stratcast.daemon.engine.data.windows import TrainSampler, WindowBatch
from stratcast.daemon.engine.memory.oom import FAULT_ENV
from stratcast.daemon.engine.run.build import make_model, make_trainer, prepare
from stratcast.daemon.engine.spec.runspec import RunSpec, build_spec
from stratcast.daemon.engine.training.distributed import Ranks, RankTrainer, join_group
from stratcast.daemon.engine.training.trainer import Trainer

UNION = 8
SETS = ["max_steps=12", "batch_size=32", "val_check_steps=4", "hidden_size=16", "num_layers=2", "grad_clip=0"]
SETS += ["dropout=0", "lr_schedule=constant", "warmup_steps=0", "loss=mse"]


class FixedSampler(TrainSampler):
    """Always draws ``batch``."""

    def __init__(self, base: TrainSampler, batch: WindowBatch) -> None:
        self.__dict__.update(base.__dict__)
        self.batch = batch

    def sample(self, batch_size: int) -> WindowBatch:
        assert batch_size == self.batch.x.shape[0], (batch_size, self.batch.x.shape)
        return self.batch


def spec_of(panel: str, out: str) -> RunSpec:
    """The small MLP job both the test and the ranks build."""
    return build_spec(data=panel, model="mlp", out=out, device="cpu", horizon=4, input_size=8, holdout=4, sets=SETS)


def union_batch(spec: RunSpec, panel: str) -> tuple[Trainer, WindowBatch]:
    """A one-process trainer of the job on the fixed union batch (seeded model), and the union batch."""
    prep = prepare(spec, torch.device("cpu"), lambda _: None)
    torch.manual_seed(spec.train.seed)
    model = make_model(spec, prep.panel.n_series)
    base = TrainSampler(prep.windows, prep.split.train_end, seed=99)
    batch = base.sample(UNION)
    trainer = Trainer(model, dataclasses.replace(spec.train, batch_size=UNION), FixedSampler(base, batch), None)
    return trainer, batch


def main(rank: int, world: int, port: int, panel: str, out: Path) -> None:
    ranks = Ranks(rank, world)
    spec = spec_of(panel, str(out / "job"))
    device = torch.device("cpu")
    torch.set_num_threads(1)
    if rank == 0:
        join_group(ranks, device, store=TCPStore("127.0.0.1", port, world, True))
    else:
        join_group(ranks, device, port=port)
    # 1: one step on this rank's part of the union batch
    single, batch = union_batch(spec, panel)
    share = ranks.share(UNION)
    part = batch.map(lambda t: t[rank * share : (rank + 1) * share])
    step = RankTrainer(ranks, single.model, single.cfg, FixedSampler(single.sampler, part), None)
    if rank == 1:
        step.set_micro_batch(1)
    step.train_step()
    grads = {n: p.grad.clone() for n, p in step.model.named_parameters() if p.grad is not None}
    # 2: the run's own trainer, rank 1 retrying its micro-batches after injected out-of-memory errors
    prep = prepare(spec, device, lambda _: None)
    torch.manual_seed(spec.train.seed)
    model = make_model(spec, prep.panel.n_series)
    trainer = make_trainer(spec, model, prep, None, None, ranks=ranks)
    if rank == 1:
        os.environ[FAULT_ENV] = "3"
        trainer.fault_limit = 3
    fit = trainer.fit()
    # 3: a multivariate model (groups of series per window) with dropout
    os.environ.pop(FAULT_ENV, None)
    multi = build_spec(
        data=panel,
        model="softs",
        out=str(out / "multi"),
        device="cpu",
        horizon=4,
        input_size=8,
        holdout=4,
        sets=["max_steps=6", "batch_size=8", "val_check_steps=3", "series_per_window=3", "dropout=0.3", "d_model=8"],
    )
    prep = prepare(multi, device, lambda _: None)
    torch.manual_seed(multi.train.seed)
    model = make_model(multi, prep.panel.n_series)
    other = make_trainer(multi, model, prep, None, None, ranks=ranks)
    multi_fit = other.fit()
    torch.save(
        {
            "multi_weights": other.model.state_dict(),
            "multi_steps": multi_fit.steps,
            "multi_best": multi_fit.best_val_loss,
            "dropout": torch.nn.functional.dropout(torch.ones(64), 0.5),
            "grads": grads,
            "weights": trainer.model.state_dict(),
            "steps": fit.steps,
            "best": fit.best_val_loss,
            "score": trainer.last_score,
            "micro": trainer.micro.current,
            "batch": trainer.cfg.batch_size,
        },
        out / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], Path(sys.argv[5]))
