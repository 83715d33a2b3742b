"""Language model baseline: the sentence VAE's decoder with no latent (Bowman et al. 2016, Table 2's RNNLM).

Generative story: x ~ p(x) = prod_t p(x_t | x_<t), an LSTM, GRU or causal Transformer. Objective: the exact
negative log-likelihood, reported as ``reconstruction`` so the training system treats it like any model
(``kl``, ``mu``, ``logvar`` are None). It is the reference a VAE's importance-weighted NLL must beat.

Notation: B batch, T tokens, V vocab.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from textvae.data.batching import SentenceBatch
from textvae.models.modules import (
    DecoderState,
    ModelOutput,
    RNNDecoder,
    TransformerDecoder,
    decoder_word_dropout,
    sequence_nll,
)


class LanguageModel(nn.Module):
    """Autoregressive LM: the sentence VAE's decoder without z.

    Args:
        vocab_size: tokenizer vocabulary size (special ids included).
        architecture: decoder kind.
        embed_dim: word embedding size; the Transformer's model width.
        hidden_dim: RNN state size; the Transformer's feed-forward width.
        num_layers: RNN layers or Transformer blocks.
        num_heads: Transformer attention heads.
        dropout: dropout on embeddings and hidden states.
        word_dropout: probability of replacing an input word by UNK, in training only (never BOS/EOS/PAD).
        tie_embeddings: share the input embedding with the output layer.
        max_len: Transformer: longest sequence (positions), BOS and EOS included.
        positions: Transformer: learned or sinusoidal position embeddings.
    """

    latent_dim = 0

    def __init__(self, *, vocab_size: int, architecture: Literal["lstm", "gru", "transformer"] = "lstm",
                 embed_dim: int = 256, hidden_dim: int = 256, num_layers: int = 1, num_heads: int = 4,
                 dropout: float = 0.0, word_dropout: float = 0.0, tie_embeddings: bool = False, max_len: int = 512,
                 positions: Literal["learned", "sinusoidal"] = "learned"):
        # the constructor arguments, exactly: textvae.export writes them to config.json to rebuild the model
        init_args = {name: value for name, value in locals().items() if name not in ("self", "__class__")}
        super().__init__()
        self.init_args = init_args
        if not 0.0 <= word_dropout <= 1.0:
            raise ValueError(f"word_dropout must be in [0, 1], got {word_dropout}")
        self.word_dropout = word_dropout
        self.max_words = max_len - 2  # the longest input it reads, BOS and EOS aside (the tools' limit)
        self.decoder: RNNDecoder | TransformerDecoder
        if architecture == "transformer":
            self.decoder = TransformerDecoder(
                vocab_size=vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers,
                num_heads=num_heads, dropout=dropout, max_len=max_len, positions=positions,
                tie_embeddings=tie_embeddings)
        elif architecture in ("lstm", "gru"):
            self.decoder = RNNDecoder(
                vocab_size=vocab_size, cell=architecture, embed_dim=embed_dim, hidden_dim=hidden_dim,
                num_layers=num_layers, dropout=dropout, tie_embeddings=tie_embeddings)
        else:
            raise ValueError(f"architecture must be 'lstm', 'gru' or 'transformer', got {architecture!r}")

    def decoder_inputs(self, inputs: Tensor) -> Tensor:
        """Word dropout on the decoder inputs (B, T), only in training (:func:`decoder_word_dropout`)."""
        return decoder_word_dropout(inputs, self.word_dropout, self.training)

    def forward(self, batch: SentenceBatch) -> ModelOutput:
        nll = sequence_nll(self.decoder, self.decoder_inputs(batch.inputs), batch.targets, None)  # (B,)
        return ModelOutput(reconstruction=nll, kl=None, mu=None, logvar=None, aux_loss=nll.new_zeros(nll.shape))

    def decoder_start(self, z: Tensor | None = None, batch_size: int | None = None) -> DecoderState:
        if z is not None:
            raise ValueError("a LanguageModel has no latent: pass z=None and batch_size")
        return self.decoder.start(None, batch_size)

    def decoder_step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        return self.decoder.step(tokens, state)  # tokens (B,) -> logits (B, V), new state

    def decoder_reorder(self, state: DecoderState, index: Tensor) -> DecoderState:
        return self.decoder.reorder(state, index)
