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
from stratcast.daemon.zoo.models.autoformer import Autoformer, AutoformerConfig
from stratcast.daemon.zoo.models.bitcn import BiTCN, BiTCNConfig
from stratcast.daemon.zoo.models.cnnlstm import CNNLSTM, CNNLSTMConfig
from stratcast.daemon.zoo.models.deepar import DeepAR, DeepARConfig
from stratcast.daemon.zoo.models.deepnpts import DeepNPTS, DeepNPTSConfig
from stratcast.daemon.zoo.models.diffusion import Diffusion, DiffusionConfig
from stratcast.daemon.zoo.models.dlinear import DLinear, DLinearConfig
from stratcast.daemon.zoo.models.esrnn import ESRNN, ESRNNConfig
from stratcast.daemon.zoo.models.fedformer import FEDformer, FEDformerConfig
from stratcast.daemon.zoo.models.fits import FITS, FITSConfig
from stratcast.daemon.zoo.models.gru import GRU, GRUConfig
from stratcast.daemon.zoo.models.informer import Informer, InformerConfig
from stratcast.daemon.zoo.models.itransformer import (
    ITransformer,
    ITransformerConfig,
    ITransformerX,
    ITransformerXConfig,
)
from stratcast.daemon.zoo.models.kan import KAN, KANConfig
from stratcast.daemon.zoo.models.lstm import LSTM, LSTMConfig
from stratcast.daemon.zoo.models.mlp import MLP, MLPConfig
from stratcast.daemon.zoo.models.mqrnn import MQRNN, MQRNNConfig
from stratcast.daemon.zoo.models.mtgnn import MTGNN, MTGNNConfig
from stratcast.daemon.zoo.models.nbeats import NBEATS, NBEATSConfig, NBEATSIConfig
from stratcast.daemon.zoo.models.neuralarima import NeuralARIMA, NeuralARIMAConfig
from stratcast.daemon.zoo.models.neuralgam import NeuralGAM, NeuralGAMConfig
from stratcast.daemon.zoo.models.neuralode import NeuralODE, NeuralODEConfig
from stratcast.daemon.zoo.models.neuralvar import NeuralVAR, NeuralVARConfig
from stratcast.daemon.zoo.models.nhits import NHITS, NHITSConfig
from stratcast.daemon.zoo.models.nlinear import NLinear, NLinearConfig
from stratcast.daemon.zoo.models.patchtst import PatchTST, PatchTSTConfig
from stratcast.daemon.zoo.models.rbf import RBF, RBFConfig
from stratcast.daemon.zoo.models.seq2seq import Seq2Seq, Seq2SeqConfig
from stratcast.daemon.zoo.models.snn import SNN, SNNConfig
from stratcast.daemon.zoo.models.softs import SOFTS, SOFTSConfig
from stratcast.daemon.zoo.models.stemgnn import StemGNN, StemGNNConfig
from stratcast.daemon.zoo.models.tcn import TCN, TCNConfig
from stratcast.daemon.zoo.models.tft import TFT, TFTConfig
from stratcast.daemon.zoo.models.tide import TiDE, TiDEConfig
from stratcast.daemon.zoo.models.timemixer import TimeMixer, TimeMixerConfig
from stratcast.daemon.zoo.models.timesnet import TimesNet, TimesNetConfig
from stratcast.daemon.zoo.models.transformer import Transformer, TransformerConfig
from stratcast.daemon.zoo.models.tsmixer import TSMixer, TSMixerConfig
from stratcast.daemon.zoo.models.volatility import Volatility, VolatilityConfig

PANEL_CHOSEN = ("scaler", "loss", "batch_size")
"""Training options that, when nobody sets them, are chosen from the panel
(:func:`~stratcast.daemon.engine.spec.runspec.choose_from_data`), each for the models :meth:`ModelEntry.panel_chooses`
says."""


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
    good_for: str = ""
    """What it is good at, in a line (``stratcastd models``, the TUI, docs/models.md); every catalog entry says it."""

    def panel_chooses(self, key: str) -> bool:
        """Whether the panel chooses ``key`` (of :data:`PANEL_CHOSEN`) for this model when a job leaves it unset.

        ``batch_size`` for a multivariate model whose entry sets none: its windows hold every series (SOFTS, the
        neural VAR; :func:`~stratcast.daemon.engine.spec.runspec.panel_batch`); the others keep their entry's or the
        declared default. ``scaler`` and ``loss`` wherever the entry sets none.
        """
        if key not in PANEL_CHOSEN:
            return False
        if key == "batch_size":
            return self.capabilities.multivariate and "batch_size" not in self.train_defaults
        return key not in self.train_defaults

    @property
    def from_panel(self) -> tuple[str, ...]:
        """The training options the panel chooses for this model when a job leaves them unset."""
        return tuple(k for k in PANEL_CHOSEN if self.panel_chooses(k))

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

LIKELIHOOD_TRAINING: Mapping[str, Any] = MappingProxyType({"loss": "student-t"})
"""For models that score themselves with a likelihood (DeepAR): their loss is their own, but the run's loss option
names what they train with."""

QUANTILE_TRAINING: Mapping[str, Any] = MappingProxyType({"loss": "quantile"})
"""For models that score themselves with the pinball loss at their own levels (MQ-RNN): as for
:data:`LIKELIHOOD_TRAINING`, the run's loss names what the model trains with."""
TFT_TRAINING: Mapping[str, Any] = MappingProxyType({"loss": "quantile"})
"""The TFT paper trains on the quantile (pinball) loss at the 10th, 50th and 90th percentiles, the levels that
``TrainConfig.quantiles`` defaults to; the forecast remains the mean of the quantile function through them."""

CHECKPOINTABLE = Capabilities(checkpointing=True)
"""A univariate, stackable model built from checkpointable blocks."""

SOFTS_TRAINING: Mapping[str, Any] = MappingProxyType({"learning_rate": 3e-4})
"""SOFTS's published scripts train at learning rate 3e-4, on batches of 32 windows or fewer."""
MULTIVARIATE = Capabilities(multivariate=True, stackable=False)
"""A model that forecasts several series of a window together, with no parameters per series. Where its entry sets
no ``batch_size`` (SOFTS, the neural VAR: windows of every series), the panel chooses it
(:func:`~stratcast.daemon.engine.spec.runspec.panel_batch`: 4 windows a step over 6,000 strategies, 32 over a few
hundred)."""

GRAPH_PER_SERIES = Capabilities(multivariate=True, per_series=True, stackable=False, checkpointing=True)
"""A multivariate model with an embedding per series (the series of each window are named by ``ids``), built of
checkpointable layers."""

GRAPH_TRAINING: Mapping[str, Any] = MappingProxyType({"series_per_window": 500, "batch_size": 8})
"""The papers train on random subsets of the series per step (MTGNN's nodes; StemGNN's eigendecomposition needs
them): a window of 500 series holds 500 forecasts, so 8 windows a step see about as many series as the univariate
models' 1,024 windows do."""

ITRANSFORMER_X_TRAINING: Mapping[str, Any] = MappingProxyType(
    {**TRANSFORMER_TRAINING, "series_per_window": 500, "batch_size": 8}
)
"""iTransformer across strategies: attention's learning rate, and windows of a random 500 strategies (the paper's
training on a random part of the variates per batch), 8 a step, as the graph models read them: its ``S x S``
attention keeps well inside memory (0.6 GiB a step), and 2,000 series per window (its limit) still fit a 24 GiB CPU
(7.2 GiB a step, measured)."""

CATALOG: Mapping[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry(
            "dlinear",
            DLinear,
            DLinearConfig,
            "trend/remainder decomposition with two linear maps",
            "Zeng et al., AAAI 2023",
            good_for="a strong, cheap baseline for trending series: trains in seconds over thousands of strategies",
        ),
        ModelEntry(
            "nlinear",
            NLinear,
            NLinearConfig,
            "one linear map over the window relative to its last value, which is added back",
            "Zeng et al., AAAI 2023",
            good_for="series whose level shifts (the last value anchors the forecast); the cheapest model here",
        ),
        ModelEntry(
            "mlp",
            MLP,
            MLPConfig,
            "multilayer perceptron from the window to the horizon",
            "Zhang et al., IJF 1998",
            good_for="a quick nonlinear baseline over short windows",
        ),
        ModelEntry(
            "nbeats",
            NBEATS,
            NBEATSConfig,
            "generic N-BEATS: doubly residual stacks of fully connected blocks",
            "Oreshkin et al., ICLR 2020",
            capabilities=CHECKPOINTABLE,
            good_for="univariate forecasting without feature engineering; strong on M4",
        ),
        ModelEntry(
            "nbeats-i",
            NBEATS,
            NBEATSIConfig,
            "interpretable N-BEATS: a polynomial trend stack and a Fourier seasonality stack",
            "Oreshkin et al., ICLR 2020",
            capabilities=CHECKPOINTABLE,
            good_for="a forecast split into a trend and a seasonality one can read",
        ),
        ModelEntry(
            "nhits",
            NHITS,
            NHITSConfig,
            "N-BEATS-style stacks with multi-rate pooling and interpolated forecasts",
            "Challu et al., AAAI 2023",
            capabilities=CHECKPOINTABLE,
            good_for="long horizons at low cost: multi-rate pooling forecasts coarse first, then fine",
        ),
        ModelEntry(
            "lstm",
            LSTM,
            LSTMConfig,
            "LSTM encoder over the window, MLP decoder to the horizon",
            "Hochreiter and Schmidhuber, Neural Computation 1997",
            good_for="short sequential dynamics; the classic recurrent baseline",
        ),
        ModelEntry(
            "gru",
            GRU,
            GRUConfig,
            "GRU encoder over the window, MLP decoder to the horizon",
            "Cho et al., EMNLP 2014",
            good_for="what the LSTM does with fewer parameters, a little faster",
        ),
        ModelEntry(
            "tcn",
            TCN,
            TCNConfig,
            "residual causal dilated convolutions with a linear head",
            "Bai et al., 2018",
            capabilities=CHECKPOINTABLE,
            good_for="long receptive fields at convolution speed (dilated causal convolutions)",
        ),
        ModelEntry(
            "tide",
            TiDE,
            TiDEConfig,
            "dense MLP encoder/decoder with a per-step temporal decoder",
            "Das et al., TMLR 2023",
            capabilities=CHECKPOINTABLE,
            good_for="long horizons with an MLP encoder-decoder at near-linear cost",
        ),
        ModelEntry(
            "patchtst",
            PatchTST,
            PatchTSTConfig,
            "Transformer encoder over patches of the window, flatten head",
            "Nie et al., ICLR 2023",
            capabilities=CHECKPOINTABLE,
            train_defaults=TRANSFORMER_TRAINING,
            good_for="long input windows: patches keep attention cheap; each series on its own",
        ),
        ModelEntry(
            "itransformer",
            ITransformer,
            ITransformerConfig,
            "inverted Transformer over variates derived from the window",
            "Liu et al., ICLR 2024",
            capabilities=CHECKPOINTABLE,
            train_defaults=TRANSFORMER_TRAINING,
            good_for="attention across views of one series (value, zero weeks, running total, trend); each on its own",
        ),
        ModelEntry(
            "fits",
            FITS,
            FITSConfig,
            "low-pass spectrum of the window upsampled by one complex linear layer to the window and horizon",
            "Xu et al., ICLR 2024",
            good_for="periodic series with a tiny model (a few thousand parameters) interpolating in frequency space",
        ),
        ModelEntry(
            "tsmixer",
            TSMixer,
            TSMixerConfig,
            "all-MLP mixer blocks across time and across embedded features, then a temporal projection",
            "Chen et al., TMLR 2023",
            capabilities=CHECKPOINTABLE,
            good_for="long horizons with MLPs only, mixing along time and along features; cheap and strong",
        ),
        ModelEntry(
            "timemixer",
            TimeMixer,
            TimeMixerConfig,
            "multiscale pooled windows, season and trend mixed across scales, one predictor per scale summed",
            "Wang et al., ICLR 2024",
            capabilities=CHECKPOINTABLE,
            good_for="series with patterns at several time scales (decomposable multiscale mixing)",
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
            good_for="multi-periodic series: folds the window into 2D by its dominant periods",
        ),
        ModelEntry(
            "kan",
            KAN,
            KANConfig,
            "Kolmogorov-Arnold network: learnable B-spline functions on every edge, window to horizon",
            "Liu et al., 2024",
            good_for="smooth nonlinear maps from a few lags, with learnable spline activations",
        ),
        ModelEntry(
            "rbf",
            RBF,
            RBFConfig,
            "RBF network: Gaussian radial basis units over the window, linear read-out to the horizon",
            "Broomhead and Lowe, Complex Systems 1988",
            good_for="local, smooth responses to the window's shape (radial basis functions); small panels",
        ),
        ModelEntry(
            "neuralgam",
            NeuralGAM,
            NeuralGAMConfig,
            "neural additive model: one small MLP per lag, summed; each lag's contribution can be read out",
            "Agarwal et al., NeurIPS 2021",
            good_for="an interpretable forecast: a sum of one learned function per lag",
        ),
        ModelEntry(
            "bitcn",
            BiTCN,
            BiTCNConfig,
            "forward dilated temporal convolutions over the window, dense output to the horizon",
            "Sprangers et al., IJF 2023",
            capabilities=CHECKPOINTABLE,
            good_for="light, fast dilated convolutions reading the window both ways",
        ),
        ModelEntry(
            "cnnlstm",
            CNNLSTM,
            CNNLSTMConfig,
            "causal 1-D convolutional features, an LSTM over them, a linear read-out to the horizon",
            "Donahue et al., CVPR 2015",
            good_for="local patterns found by convolutions, remembered by a recurrent layer",
        ),
        ModelEntry(
            "seq2seq",
            Seq2Seq,
            Seq2SeqConfig,
            "bidirectional GRU (or LSTM) encoder, decoder over the horizon with additive attention",
            "Bahdanau et al., ICLR 2015",
            good_for="dependence between horizon steps, through a recurrent decoder attending to the window",
        ),
        ModelEntry(
            "transformer",
            Transformer,
            TransformerConfig,
            "encoder over the embedded window, causal decoder over horizon queries with cross-attention",
            "Vaswani et al., NeurIPS 2017",
            capabilities=CHECKPOINTABLE,
            train_defaults=TRANSFORMER_TRAINING,
            good_for="the reference attention encoder-decoder, a baseline for the other Transformers",
        ),
        ModelEntry(
            "informer",
            Informer,
            InformerConfig,
            "ProbSparse self-attention encoder with distilling, generative decoder over the whole horizon",
            "Zhou et al., AAAI 2021",
            capabilities=CHECKPOINTABLE,
            train_defaults=TRANSFORMER_TRAINING,
            good_for="long windows: ProbSparse attention and distilling keep attention near O(L log L)",
        ),
        ModelEntry(
            "neuralarima",
            NeuralARIMA,
            NeuralARIMAConfig,
            "differenced window, learned AR and MA linear parts plus an MLP on the AR residuals, integrated back",
            "Box and Jenkins 1970; Zhang, Neurocomputing 2003",
            good_for="series close to an ARIMA process: differencing and AR/MA terms, an MLP for the rest",
        ),
        ModelEntry(
            "neuralode",
            NeuralODE,
            NeuralODEConfig,
            "window encoded to a latent state, a learned vector field integrated by RK4 over the horizon, decoded",
            "Chen et al., NeurIPS 2018",
            good_for="smooth continuous-time dynamics integrated by an ODE solver",
        ),
        ModelEntry(
            "snn",
            SNN,
            SNNConfig,
            "leaky integrate-and-fire layers fed the window step by step, membrane potentials read out",
            "Neftci et al., IEEE SPM 2019",
            good_for="sparse, event-driven computation (spiking neurons); mostly of research interest on these panels",
        ),
        ModelEntry(
            "deepar",
            DeepAR,
            DeepARConfig,
            "autoregressive LSTM with a Student-t (or Gaussian) likelihood, teacher-forced; forecasts sampled paths",
            "Salinas et al., IJF 2020",
            # not stackable: per-strategy mode calls the forward pass, never training_loss or sample, and nn.LSTM
            # has no vmap rule
            capabilities=Capabilities(own_loss=True, stackable=False),
            train_defaults=LIKELIHOOD_TRAINING,
            good_for="sampled forecast paths from one global recurrent model: intervals and tail risk, not only a mean",
        ),
        ModelEntry(
            "mqrnn",
            MQRNN,
            MQRNNConfig,
            "LSTM encoder, global and local MLP decoders of quantiles, trained on forking sequences (every step)",
            "Wen et al., NIPS 2017 Time Series Workshop",
            # not stackable: per-strategy mode calls the forward pass, never training_loss or sample, and nn.LSTM
            # has no vmap rule
            capabilities=Capabilities(own_loss=True, stackable=False),
            train_defaults=QUANTILE_TRAINING,
            good_for="direct quantile forecasts for every horizon step, trained from every encoder step (forking)",
        ),
        ModelEntry(
            "volatility",
            Volatility,
            VolatilityConfig,
            "MLP mean plus a neural GARCH(1,1) variance run over the window's residuals and carried over the horizon",
            "Bollerslev, Journal of Econometrics 1986",
            # the variance is the scale of the Gaussian head; with a point loss only the mean network trains
            train_defaults=MappingProxyType({"loss": "gaussian"}),
            good_for="strategies whose risk clusters in time: a GARCH-like variance gives each week's spread",
        ),
        ModelEntry(
            "deepnpts",
            DeepNPTS,
            DeepNPTSConfig,
            "softmax weights over the window's past values; forecasts drawn from them autoregressively (exact zeros)",
            "Rangapuram et al., arXiv 2023",
            # not stackable: it trains by its own likelihood, and per-strategy mode trains a forward pass by a head
            capabilities=Capabilities(own_loss=True, stackable=False),
            good_for="zero-heavy series: it forecasts by drawing past values, so it reproduces exact zero weeks",
        ),
        ModelEntry(
            "softs",
            SOFTS,
            SOFTSConfig,
            "series as tokens; STAR pools all series into one core and fuses it back into each: O(S), whole panels",
            "Han et al., NeurIPS 2024",
            # not stackable: it reads the other series of its window (multivariate)
            capabilities=Capabilities(multivariate=True, stackable=False, checkpointing=True),
            train_defaults=SOFTS_TRAINING,
            good_for="cross-series signal over thousands of strategies at O(N): series meet through one pooled core",
        ),
        ModelEntry(
            "neuralvar",
            NeuralVAR,
            NeuralVARConfig,
            "VAR over the window's series with low-rank cross coefficients U V^T per lag, an own-lag MLP, iterated",
            "Sims, Econometrica 1980; Velu, Reinsel and Wichern, Biometrika 1986",
            # not stackable: it reads the other series of its window and has loadings per series
            capabilities=Capabilities(multivariate=True, per_series=True, stackable=False),
            good_for="strategies that lead or lag each other: low-rank VAR coefficients across series plus own-lag MLP",
        ),
        ModelEntry(
            "autoformer",
            Autoformer,
            AutoformerConfig,
            "decomposition encoder-decoder: moving-average trends taken out in every layer, Auto-Correlation by FFT",
            "Wu et al., NeurIPS 2021",
            capabilities=CHECKPOINTABLE,
            train_defaults=TRANSFORMER_TRAINING,
            good_for="long periodic windows: lags found by auto-correlation, the trend split off at every layer",
        ),
        ModelEntry(
            "fedformer",
            FEDformer,
            FEDformerConfig,
            "decomposition encoder-decoder: mixture-of-experts trends, attention over fixed random Fourier modes",
            "Zhou et al., ICML 2022",
            capabilities=CHECKPOINTABLE,
            train_defaults=TRANSFORMER_TRAINING,
            good_for="long horizons at linear cost: attention over a fixed set of Fourier modes, trend split off",
        ),
        ModelEntry(
            "tft",
            TFT,
            TFTConfig,
            "variable selection, LSTM encoder-decoder, gated residual networks and interpretable causal attention",
            "Lim et al., IJF 2021",
            # not stackable: nn.LSTM has no vmap rule
            capabilities=Capabilities(stackable=False),
            train_defaults=TFT_TRAINING,
            good_for="multi-horizon quantiles with readable attention: which past weeks and inputs the forecast used",
        ),
        ModelEntry(
            "esrnn",
            ESRNN,
            ESRNNConfig,
            "per-series additive exponential smoothing (level, optional seasonality) feeding a dilated LSTM",
            "Smyl, IJF 2020",
            # per-series smoothing parameters (ids), seasonal phase from the origin; not stackable: per-strategy
            # mode has no ids, and nn.LSTM has no vmap rule
            capabilities=Capabilities(per_series=True, origin=True, stackable=False),
            good_for="per-strategy levels and seasonality smoothed exponentially, with one global LSTM for the rest",
        ),
        ModelEntry(
            "mtgnn",
            MTGNN,
            MTGNNConfig,
            "a sparse top-k graph learned from series embeddings, mix-hop graph convolutions and dilated inception "
            "temporal convolutions over each window's series (not stackable: it reads several series)",
            "Wu et al., KDD 2020",
            capabilities=GRAPH_PER_SERIES,
            train_defaults=GRAPH_TRAINING,
            good_for="strategies that move together: a sparse graph to each series' k nearest learned neighbours",
        ),
        ModelEntry(
            "stemgnn",
            StemGNN,
            StemGNNConfig,
            "a graph from self-attention over the series, its graph Fourier transform, DFT/convolution/GLU cells and "
            "spectral graph filters (not stackable: it reads several series)",
            "Cao et al., NeurIPS 2020",
            capabilities=MULTIVARIATE,
            train_defaults=GRAPH_TRAINING,
            good_for="cross-series structure in the frequency domain: a learned graph and its Fourier basis",
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
            good_for="whole-horizon scenarios drawn by denoising: a distribution without a parametric likelihood",
        ),
        ModelEntry(
            "itransformer-x",
            ITransformerX,
            ITransformerXConfig,
            "inverted Transformer across strategies: each strategy of a window one token, attention over the "
            "strategies (the paper's form; not stackable: it reads several series)",
            "Liu et al., ICLR 2024",
            capabilities=Capabilities(multivariate=True, stackable=False, checkpointing=True),
            train_defaults=ITRANSFORMER_X_TRAINING,
            good_for="strategies that move together: full attention from each strategy to every other in its window, "
            "up to 2,000 per window",
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
    form, the shared report); ``capabilities`` holds every capability; ``from_panel`` names the training options the
    panel chooses for the model when a job leaves them unset.
    """
    return [
        {
            "name": e.name,
            "summary": e.summary,
            "paper": e.paper,
            "good_for": e.good_for,
            "stackable": e.capabilities.stackable,
            "checkpointing": e.capabilities.checkpointing,
            "capabilities": e.capabilities.to_dict(),
            "train_defaults": dict(e.train_defaults),
            "from_panel": list(e.from_panel),
            "params": describe_fields(e.config_cls),
        }
        for e in CATALOG.values()
    ]
