"""Models: plain ``nn.Module``s, one generative story per file, sharing the building blocks in ``modules``.

:class:`TextModel` is the whole contract the training system and :mod:`textvae.decoding` rely on.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from textvae.models.language_model import LanguageModel
from textvae.models.modules import DecoderState, ModelOutput
from textvae.models.sentence_vae import ImportanceSamples, SentenceVAE


@runtime_checkable
class TextModel(Protocol):
    """What a model offers: ``model(batch) -> ModelOutput`` and step-wise decoding.

    ``latent_dim`` is 0 for a model without a latent, which then decodes from ``z=None`` and a
    ``batch_size``. Decoder states are opaque: only the model that made one reads or reorders it.
    """

    latent_dim: int

    def forward(self, batch: Any) -> ModelOutput: ...

    def decoder_start(self, z: Tensor | None, batch_size: int | None = None) -> Any: ...

    def decoder_step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]: ...

    def decoder_reorder(self, state: Any, index: Tensor) -> Any: ...


__all__ = ["DecoderState", "ImportanceSamples", "LanguageModel", "ModelOutput", "SentenceVAE", "TextModel"]
