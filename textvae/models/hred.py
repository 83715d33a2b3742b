"""HRED: Serban et al. (2016), "Building End-To-End Dialogue Systems Using Generative Hierarchical Neural
Network Models" (after Sordoni et al. 2015). The baseline without a latent variable.

Generative story: c = a hierarchical encoding of the previous turns (an utterance encoder shared across
turns, a context RNN over the turn vectors and the speaker's floor); the response x ~ p(x | c), an
autoregressive RNN decoder whose initial state is a linear function of c and which, with
``condition_every_input``, also reads c at every step.

Objective: ``reconstruction = -log p(x | c)`` summed over the response's words and EOS. No KL (``kl`` is
None), no auxiliary loss. Word dropout (Bowman et al. 2016) on the decoder inputs in training only.

Notation: B batch, U context turns, T tokens, C condition, V vocab, N samples per context.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from textvae.data.batching import DialogueBatch
from textvae.models.modules import (
    ContextEncoder,
    ContextWords,
    ModelOutput,
    ResponseCondition,
    RNNState,
    WithContext,
    check_response_request,
    decoder_word_dropout,
    dialogue_decoder,
    encode_dialogue_context,
    sequence_nll,
    with_words,
)


class HRED(nn.Module):
    """Hierarchical encoder-decoder p(x | c), no latent.

    Args:
        vocab_size: tokenizer vocabulary size (special ids included).
        cell: GRU (the papers) or LSTM, for every RNN.
        embed_dim: word embedding size.
        utterance_dim: utterance encoder state size (per direction).
        bidirectional: bidirectional utterance encoder.
        context_dim: context RNN state size.
        decoder_dim: decoder RNN state size.
        num_layers: layers of the context RNN and of the decoder.
        dropout: dropout on embeddings, utterance and context vectors, decoder states.
        word_dropout: probability of replacing a decoder input word by UNK, in training only.
        condition_every_input: feed c to every decoder step besides its initial state.
        share_embeddings: one word embedding for the utterance encoder and the decoder.
        attention: the decoder attends to the context's words (:class:`~textvae.models.modules.AttentionRNNDecoder`).
        copy: and copies them (pointer-generator); needs ``attention``.
    """

    latent_dim = 0
    num_acts = 0
    num_topics = 0
    profile_dim = 0
    max_words = None  # turns are cut by the data's max_len, not by the model

    def __init__(self, *, vocab_size: int, cell: Literal["lstm", "gru"] = "gru", embed_dim: int = 200,
                 utterance_dim: int = 300, bidirectional: bool = True, context_dim: int = 600, decoder_dim: int = 400,
                 num_layers: int = 1, dropout: float = 0.0, word_dropout: float = 0.0,
                 condition_every_input: bool = True, share_embeddings: bool = True, attention: bool = False,
                 copy: bool = False):
        # the constructor arguments, exactly: textvae.export writes them to config.json to rebuild the model
        init_args = {name: value for name, value in locals().items() if name not in ("self", "__class__")}
        super().__init__()
        self.init_args = init_args
        if not 0.0 <= word_dropout <= 1.0:
            raise ValueError(f"word_dropout must be in [0, 1], got {word_dropout}")
        self.word_dropout = word_dropout
        self.context_encoder = ContextEncoder(
            vocab_size=vocab_size, cell=cell, embed_dim=embed_dim, utterance_dim=utterance_dim,
            bidirectional=bidirectional, context_dim=context_dim, num_layers=num_layers, dropout=dropout)
        self.attention = attention
        self.decoder = dialogue_decoder(
            attention=attention, copy=copy, memory_dim=self.context_encoder.utterance.output_dim,
            vocab_size=vocab_size, cell=cell, embed_dim=embed_dim, hidden_dim=decoder_dim,
            latent_dim=self.context_encoder.output_dim, num_layers=num_layers,
            z_to_every_input=condition_every_input, dropout=dropout)
        if share_embeddings:
            self.decoder.embedding = self.context_encoder.utterance.embedding

    def encode_context(self, batch: DialogueBatch) -> Tensor:
        """c: the previous turns (B, U, T) -> (B, C)."""
        return self.context_encoder(batch.context, batch.context_lengths, batch.context_turns, batch.context_floor)

    def context_and_words(self, batch: DialogueBatch) -> tuple[Tensor, ContextWords | None]:
        """c (B, C) and, for a decoder that attends, the context's words (else None), in one encoder pass."""
        return encode_dialogue_context(batch, self.context_encoder, words=self.attention)

    def decoder_inputs(self, inputs: Tensor) -> Tensor:
        """Word dropout on the decoder inputs (B, T), only in training (:func:`decoder_word_dropout`)."""
        return decoder_word_dropout(inputs, self.word_dropout, self.training)

    def forward(self, batch: DialogueBatch) -> ModelOutput:
        c, words = self.context_and_words(batch)  # (B, C)
        reconstruction = sequence_nll(self.decoder, self.decoder_inputs(batch.inputs), batch.targets,
                                      with_words(c, words))  # (B,)
        return ModelOutput(reconstruction=reconstruction, kl=None, mu=None, logvar=None,
                           aux_loss=reconstruction.new_zeros(reconstruction.shape))

    def response_condition(self, batch: DialogueBatch, *, num_samples: int = 1,
                           z_source: Literal["prior", "posterior"] = "prior", acts: Tensor | None = None,
                           generator: torch.Generator | None = None, prior_scale: float = 1.0) -> ResponseCondition:
        """The context encoding, repeated ``num_samples`` times (sample-major); HRED has no latent, so
        both ``z_source`` values give the same condition and samples differ only by decoding."""
        check_response_request(z_source, acts, self.num_acts, batch.context.shape[0], num_samples)
        c, words = self.context_and_words(batch)  # (B, C)
        condition = with_words(c.repeat(num_samples, 1), None if words is None else words.repeat(num_samples))
        return ResponseCondition(condition=condition, z=None, acts=None)  # (N * B, C)

    # -- incremental decoding (textvae.decoding) -----------------------------------------------------

    def decoder_start(self, condition: Tensor | WithContext | None, batch_size: int | None = None) -> RNNState:
        if condition is None:
            raise ValueError("HRED decodes from a context encoding: pass response_condition(batch).condition")
        return self.decoder.start(condition)

    def decoder_step(self, tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        return self.decoder.step(tokens, state)  # tokens (B,) -> logits (B, V), new state

    def decoder_reorder(self, state: RNNState, index: Tensor) -> RNNState:
        return self.decoder.reorder(state, index)
