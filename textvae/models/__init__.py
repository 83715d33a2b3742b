"""Models: plain ``nn.Module``s, one generative story per file, sharing the building blocks in ``modules``.

:class:`TextModel` is the whole contract the training system and :mod:`textvae.decoding` rely on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, Protocol, runtime_checkable

from torch import Tensor, nn

from textvae.models.cvae import CVAE
from textvae.models.hred import HRED
from textvae.models.language_model import LanguageModel
from textvae.models.larl import LaRL
from textvae.models.modules import DecoderState, ImportanceSamples, Inference, ModelOutput, ResponseCondition
from textvae.models.sentence_vae import SentenceVAE
from textvae.models.vhred import VHRED


@runtime_checkable
class TextModel(Protocol):
    """What a model offers: ``model(batch) -> ModelOutput`` and step-wise decoding.

    ``latent_dim`` is 0 for a model without a latent, which then decodes from ``z=None`` and a
    ``batch_size``. Decoder states are opaque: only the model that made one reads or reorders it.
    """

    latent_dim: int
    max_words: int | None  # the longest input (tokens, BOS and EOS aside) the model reads; None: no limit of its own

    def forward(self, batch: Any) -> ModelOutput: ...

    def decoder_start(self, z: Tensor | None, batch_size: int | None = None) -> Any: ...

    def decoder_step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]: ...

    def decoder_reorder(self, state: Any, index: Tensor) -> Any: ...


@runtime_checkable
class LatentModel(TextModel, Protocol):
    """A model with a latent z (SentenceVAE, VHRED, CVAE/kgCVAE): its posterior and prior are components
    (:mod:`textvae.posteriors`, :mod:`textvae.priors`), and what the inference families need is written
    once on top of this contract (:mod:`textvae.inference`, :mod:`textvae.training_objectives`,
    :mod:`textvae.evaluation`):

    * ``infer(batch)``: q(z | x[, c]), p(z[ | c]) and the condition the decoder reads besides z;
    * ``log_px_given_z(batch, z, chunk, condition)``: log p(x | z_k[, c]) for z (K, B, Z) -> (K, B)
      (kgCVAE: log p(x, y | c, z_k) with its gold act y);
    * ``inference_parameters()``: the inference network (aggressive training updates it alone);
    * ``reset_decoder()``: re-initialise the decoder (after AE pretraining).
    """

    def infer(self, batch: Any) -> Inference: ...

    def log_px_given_z(self, batch: Any, z: Tensor, chunk: int | None = None, condition: Any = None) -> Tensor: ...

    def inference_parameters(self) -> Iterator[nn.Parameter]: ...

    def reset_decoder(self) -> None: ...


@runtime_checkable
class SentenceLatentModel(LatentModel, Protocol):
    """A sentence model with a latent (SentenceVAE): what the latent-space tools need besides the contract
    above. ``encode``: a code per sentence (the posterior mean; a flow's base mean pushed through it) and
    its base log-variance, (B, Z) each; ``sample_prior``: n draws of z from the prior, (n, Z), the prior's
    standard deviation times ``scale``."""

    def encode(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]: ...

    def sample_prior(self, n: int, generator: Any = None, scale: float = 1.0) -> Tensor: ...


@runtime_checkable
class DialogueModel(TextModel, Protocol):
    """A response model p(x | c) over :class:`~textvae.data.batching.DialogueBatch` (HRED, VHRED, CVAE,
    kgCVAE). ``num_acts`` > 0 when the decoder is conditioned on a dialog act (kgCVAE).

    ``response_condition`` encodes the contexts and draws ``num_samples`` latents per context, from the
    prior network (``z_source="prior"``, what generation uses) or the recognition network
    (``"posterior"``, which needs ``batch.response``). ``acts`` (B,) forces the act of kgCVAE; otherwise
    kgCVAE predicts it from (c, z). ``prior_scale`` multiplies the prior's standard deviation when z is
    drawn for generation (a "z temperature"; the training objective keeps the prior as it is). Generation is
    then any :mod:`textvae.decoding` function called with ``condition`` in place of ``z``.
    ``num_topics`` / ``profile_dim`` > 0 when the model reads a topic / speaker profiles.
    """

    num_acts: int
    num_topics: int
    profile_dim: int

    def response_condition(self, batch: Any, *, num_samples: int = 1,
                           z_source: Literal["prior", "posterior"] = "prior", acts: Tensor | None = None,
                           generator: Any = None, prior_scale: float = 1.0) -> ResponseCondition: ...


__all__ = ["CVAE", "HRED", "VHRED", "DecoderState", "DialogueModel", "ImportanceSamples", "Inference",
           "LaRL", "LanguageModel", "LatentModel", "ModelOutput", "ResponseCondition", "SentenceLatentModel",
           "SentenceVAE", "TextModel"]
