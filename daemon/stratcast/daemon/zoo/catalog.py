"""The model catalog: every zoo model, its config class and what it is for.

Models are listed here by hand (never discovered by scanning a folder), so a typo fails at import and the list a
user sees is the list that was reviewed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch import nn

from stratcast.daemon.zoo.contract import UNIVARIATE, Capabilities, ModelConfig, describe_fields
from stratcast.daemon.zoo.models.bitcn import BiTCN, BiTCNConfig
from stratcast.daemon.zoo.models.cnnlstm import CNNLSTM, CNNLSTMConfig
from stratcast.daemon.zoo.models.diffusion import Diffusion, DiffusionConfig
from stratcast.daemon.zoo.models.dlinear import DLinear, DLinearConfig
from stratcast.daemon.zoo.models.fits import FITS, FITSConfig
from stratcast.daemon.zoo.models.gru import GRU, GRUConfig
from stratcast.daemon.zoo.models.informer import Informer, InformerConfig
from stratcast.daemon.zoo.models.itransformer import ITransformer, ITransformerConfig
from stratcast.daemon.zoo.models.kan import KAN, KANConfig
from stratcast.daemon.zoo.models.lstm import LSTM, LSTMConfig
from stratcast.daemon.zoo.models.mlp import MLP, MLPConfig
from stratcast.daemon.zoo.models.nbeats import NBEATS, NBEATSConfig, NBEATSIConfig
from stratcast.daemon.zoo.models.neuralarima import NeuralARIMA, NeuralARIMAConfig
from stratcast.daemon.zoo.models.neuralgam import NeuralGAM, NeuralGAMConfig
from stratcast.daemon.zoo.models.neuralode import NeuralODE, NeuralODEConfig
from stratcast.daemon.zoo.models.nhits import NHITS, NHITSConfig
from stratcast.daemon.zoo.models.nlinear import NLinear, NLinearConfig
from stratcast.daemon.zoo.models.patchtst import PatchTST, PatchTSTConfig
from stratcast.daemon.zoo.models.rbf import RBF, RBFConfig
from stratcast.daemon.zoo.models.seq2seq import Seq2Seq, Seq2SeqConfig
from stratcast.daemon.zoo.models.snn import SNN, SNNConfig
from stratcast.daemon.zoo.models.tcn import TCN, TCNConfig
from stratcast.daemon.zoo.models.tide import TiDE, TiDEConfig
from stratcast.daemon.zoo.models.timemixer import TimeMixer, TimeMixerConfig
from stratcast.daemon.zoo.models.timesnet import TimesNet, TimesNetConfig
from stratcast.daemon.zoo.models.transformer import Transformer, TransformerConfig
from stratcast.daemon.zoo.models.tsmixer import TSMixer, TSMixerConfig


@dataclass(frozen=True)
class ModelEntry:
    """One model of the catalog."""

    name: str
    """Name used on the command line and in run specs (lower case)."""
    model_cls: type[nn.Module]
    """The ``nn.Module``; built by :meth:`build`."""
    config_cls: type[ModelConfig]
    """Its architecture config (a :class:`ModelConfig` subclass with ``tiny()``)."""
    summary: str
    """One line on what the model is."""
    paper: str
    """The paper it is implemented from."""
    capabilities: Capabilities = UNIVARIATE
    """What it is and needs (shapes, side inputs, stacking, checkpointing): see the contract's module docstring."""
    train_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Training options this model trains better with than ``TrainConfig``'s defaults; a user's ``--set`` wins."""

    def build(
        self, config: ModelConfig, *, input_size: int, horizon: int, n_outputs: int = 1, n_series: int | None = None
    ) -> nn.Module:
        """Instantiate the model for these shapes; ``n_series`` (the panel's series) reaches per-series models only.

        Raises:
            TypeError: for a config of another model.
            ValueError: for a per-series model without ``n_series``.
        """
        if not isinstance(config, self.config_cls):
            raise TypeError(f"{self.name} needs a {self.config_cls.__name__}, got {type(config).__name__}")
        if not self.capabilities.per_series:
            return self.model_cls(config, input_size=input_size, horizon=horizon, n_outputs=n_outputs)
        if n_series is None or n_series < 1:
            raise ValueError(f"{self.name} has parameters per series: it needs n_series >= 1, got {n_series}")
        return self.model_cls(config, input_size=input_size, horizon=horizon, n_outputs=n_outputs, n_series=n_series)


TRANSFORMER_TRAINING: Mapping[str, Any] = MappingProxyType({"learning_rate": 1e-4})
"""The papers' reference scripts train both Transformers at 1e-4 (neuralforecast's PatchTST too): attention is less
stable at the 1e-3 that suits the MLP-style models."""

CHECKPOINTABLE = Capabilities(checkpointing=True)
"""A univariate, stackable model built from checkpointable blocks."""

CATALOG: Mapping[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry(
            "dlinear",
            DLinear,
            DLinearConfig,
            "trend/remainder decomposition with two linear maps",
            "Zeng et al., AAAI 2023",
        ),
        ModelEntry(
            "nlinear",
            NLinear,
            NLinearConfig,
            "one linear map over the window relative to its last value, which is added back",
            "Zeng et al., AAAI 2023",
        ),
        ModelEntry(
            "mlp", MLP, MLPConfig, "multilayer perceptron from the window to the horizon", "Zhang et al., IJF 1998"
        ),
        ModelEntry(
            "nbeats",
            NBEATS,
            NBEATSConfig,
            "generic N-BEATS: doubly residual stacks of fully connected blocks",
            "Oreshkin et al., ICLR 2020",
            capabilities=CHECKPOINTABLE,
        ),
        ModelEntry(
            "nbeats-i",
            NBEATS,
            NBEATSIConfig,
            "interpretable N-BEATS: a polynomial trend stack and a Fourier seasonality stack",
            "Oreshkin et al., ICLR 2020",
            capabilities=CHECKPOINTABLE,
        ),
        ModelEntry(
            "nhits",
            NHITS,
            NHITSConfig,
            "N-BEATS-style stacks with multi-rate pooling and interpolated forecasts",
            "Challu et al., AAAI 2023",
            capabilities=CHECKPOINTABLE,
        ),
        ModelEntry(
            "lstm",
            LSTM,
            LSTMConfig,
            "LSTM encoder over the window, MLP decoder to the horizon",
            "Hochreiter and Schmidhuber, Neural Computation 1997",
            capabilities=Capabilities(stackable=False),
        ),
        ModelEntry(
            "gru",
            GRU,
            GRUConfig,
            "GRU encoder over the window, MLP decoder to the horizon",
            "Cho et al., EMNLP 2014",
            capabilities=Capabilities(stackable=False),
        ),
        ModelEntry(
            "tcn",
            TCN,
            TCNConfig,
            "residual causal dilated convolutions with a linear head",
            "Bai et al., 2018",
            capabilities=CHECKPOINTABLE,
        ),
        ModelEntry(
            "tide",
            TiDE,
            TiDEConfig,
            "dense MLP encoder/decoder with a per-step temporal decoder",
            "Das et al., TMLR 2023",
            capabilities=CHECKPOINTABLE,
        ),
        ModelEntry(
            "patchtst",
            PatchTST,
            PatchTSTConfig,
            "Transformer encoder over patches of the window, flatten head",
            "Nie et al., ICLR 2023",
            capabilities=CHECKPOINTABLE,
            train_defaults=TRANSFORMER_TRAINING,
        ),
        ModelEntry(
            "itransformer",
            ITransformer,
            ITransformerConfig,
            "inverted Transformer over variates derived from the window",
            "Liu et al., ICLR 2024",
            capabilities=CHECKPOINTABLE,
            train_defaults=TRANSFORMER_TRAINING,
        ),
        ModelEntry(
            "fits",
            FITS,
            FITSConfig,
            "low-pass spectrum of the window upsampled by one complex linear layer to the window and horizon",
            "Xu et al., ICLR 2024",
        ),
        ModelEntry(
            "tsmixer",
            TSMixer,
            TSMixerConfig,
            "all-MLP mixer blocks across time and across embedded features, then a temporal projection",
            "Chen et al., TMLR 2023",
            capabilities=CHECKPOINTABLE,
        ),
        ModelEntry(
            "timemixer",
            TimeMixer,
            TimeMixerConfig,
            "multiscale pooled windows, season and trend mixed across scales, one predictor per scale summed",
            "Wang et al., ICLR 2024",
            capabilities=CHECKPOINTABLE,
        ),
        ModelEntry(
            "timesnet",
            TimesNet,
            TimesNetConfig,
            "each window folded into 2-D grids by its top-k FFT periods, inception convolutions, amplitude-weighted",
            "Wu et al., ICLR 2023",
            # not stackable: each window's periods come from its FFT, so the fold shapes depend on the data
            # (a .tolist() over the chosen periods and one reshape per period), which vmap cannot trace
            capabilities=Capabilities(stackable=False),
        ),
        ModelEntry(
            "kan",
            KAN,
            KANConfig,
            "Kolmogorov-Arnold network: learnable B-spline functions on every edge, window to horizon",
            "Liu et al., 2024",
        ),
        ModelEntry(
            "rbf",
            RBF,
            RBFConfig,
            "RBF network: Gaussian radial basis units over the window, linear read-out to the horizon",
            "Broomhead and Lowe, Complex Systems 1988",
        ),
        ModelEntry(
            "neuralgam",
            NeuralGAM,
            NeuralGAMConfig,
            "neural additive model: one small MLP per lag, summed; each lag's contribution can be read out",
            "Agarwal et al., NeurIPS 2021",
        ),
        ModelEntry(
            "bitcn",
            BiTCN,
            BiTCNConfig,
            "forward dilated temporal convolutions over the window, dense output to the horizon",
            "Sprangers et al., IJF 2023",
            capabilities=CHECKPOINTABLE,
        ),
        ModelEntry(
            "cnnlstm",
            CNNLSTM,
            CNNLSTMConfig,
            "causal 1-D convolutional features, an LSTM over them, a linear read-out to the horizon",
            "Donahue et al., CVPR 2015",
            # not stackable: nn.LSTM has no vmap rule and blocks/rnn.py has no hand-written LSTM cell to use instead
            capabilities=Capabilities(stackable=False),
        ),
        ModelEntry(
            "seq2seq",
            Seq2Seq,
            Seq2SeqConfig,
            "bidirectional GRU (or LSTM) encoder, decoder over the horizon with additive attention",
            "Bahdanau et al., ICLR 2015",
            # not stackable: nn.GRU/LSTM and cells have no vmap rule; blocks/rnn.py has no hand-written cell
            capabilities=Capabilities(stackable=False),
        ),
        ModelEntry(
            "transformer",
            Transformer,
            TransformerConfig,
            "encoder over the embedded window, causal decoder over horizon queries with cross-attention",
            "Vaswani et al., NeurIPS 2017",
            capabilities=CHECKPOINTABLE,
            train_defaults=TRANSFORMER_TRAINING,
        ),
        ModelEntry(
            "informer",
            Informer,
            InformerConfig,
            "ProbSparse self-attention encoder with distilling, generative decoder over the whole horizon",
            "Zhou et al., AAAI 2021",
            capabilities=CHECKPOINTABLE,
            train_defaults=TRANSFORMER_TRAINING,
        ),
        ModelEntry(
            "neuralarima",
            NeuralARIMA,
            NeuralARIMAConfig,
            "differenced window, learned AR and MA linear parts plus an MLP on the AR residuals, integrated back",
            "Box and Jenkins 1970; Zhang, Neurocomputing 2003",
        ),
        ModelEntry(
            "neuralode",
            NeuralODE,
            NeuralODEConfig,
            "window encoded to a latent state, a learned vector field integrated by RK4 over the horizon, decoded",
            "Chen et al., NeurIPS 2018",
        ),
        ModelEntry(
            "snn",
            SNN,
            SNNConfig,
            "leaky integrate-and-fire layers fed the window step by step, membrane potentials read out",
            "Neftci et al., IEEE SPM 2019",
        ),
        ModelEntry(
            "diffusion",
            Diffusion,
            DiffusionConfig,
            "conditional DDPM over the whole horizon (TimeDiff): an MLP denoiser conditioned on future mixup and a "
            "linear autoregressive guess; trains with its own denoising loss, forecasts the mean of sampled draws",
            "Shen and Kwok, ICML 2023; Ho et al., NeurIPS 2020",
            # not stackable: per-strategy (stacked) training and forecasting call forward() and score it with the
            # run's head, never training_loss() or sample() (its draws would vmap: a generator's draws do under
            # randomness="different"); stacking it would train the one-pass stand-in, not the diffusion model
            capabilities=Capabilities(own_loss=True, stackable=False),
        ),
    )
}


class UnknownModel(KeyError):
    """No model of that name; a KeyError whose text is its message (a plain KeyError prints it quoted)."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_entry(name: str) -> ModelEntry:
    """Look a model up by name.

    Raises:
        UnknownModel: with the list of known names.
    """
    try:
        return CATALOG[name.lower()]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; known models: {', '.join(sorted(CATALOG))}") from None


def checkpointing_models() -> list[str]:
    """Names of the models the ``activation_checkpointing`` training option applies to."""
    return [name for name, e in CATALOG.items() if e.capabilities.checkpointing]


def check_checkpointing(name: str, mode: str) -> None:
    """Reject ``activation_checkpointing`` for a model (or mode) it does not apply to.

    Raises:
        ValueError: naming the model and the models that support it, or per-strategy mode.
    """
    entry = get_entry(name)
    if not entry.capabilities.checkpointing:
        raise ValueError(
            f"activation_checkpointing does not apply to model {entry.name!r} (it has no checkpointable blocks); "
            f"models that support it: {', '.join(checkpointing_models())}"
        )
    if mode == "per-strategy":
        raise ValueError(
            "activation_checkpointing does not apply in per-strategy mode: torch.utils.checkpoint cannot recompute "
            "inside the stacked (vmapped) forward pass; use batch mode or lower batch_size"
        )


def make_config(name: str, overrides: Mapping[str, Any] | None = None, *, tiny: bool = False) -> ModelConfig:
    """Build a model's config from its defaults (or ``tiny()``) plus overrides, validated."""
    entry = get_entry(name)
    base = entry.config_cls.tiny() if tiny else entry.config_cls()
    known = {f.name for f in dataclasses.fields(entry.config_cls)}
    unknown = set(overrides or {}) - known
    if unknown:
        raise ValueError(f"model {name!r} has no parameter(s) {sorted(unknown)}; it has {sorted(known)}")
    return dataclasses.replace(base, **dict(overrides or {}))


def build_model(
    name: str, config: ModelConfig, *, input_size: int, horizon: int, n_outputs: int = 1, n_series: int | None = None
) -> nn.Module:
    """Instantiate a catalog model for the given shapes (see :meth:`ModelEntry.build`)."""
    return get_entry(name).build(config, input_size=input_size, horizon=horizon, n_outputs=n_outputs, n_series=n_series)


def describe_models() -> list[dict[str, Any]]:
    """Every model with its capabilities, parameters (defaults, ranges, search spaces) and training defaults.

    ``stackable`` and ``checkpointing`` are repeated at the top level for clients that read them there (the TUI's
    form, the shared report); ``capabilities`` holds every capability.
    """
    return [
        {
            "name": e.name,
            "summary": e.summary,
            "paper": e.paper,
            "stackable": e.capabilities.stackable,
            "checkpointing": e.capabilities.checkpointing,
            "capabilities": e.capabilities.to_dict(),
            "train_defaults": dict(e.train_defaults),
            "params": describe_fields(e.config_cls),
        }
        for e in CATALOG.values()
    ]
