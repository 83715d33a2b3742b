"""VHRED: Serban et al. (2017), "A Hierarchical Latent Variable Encoder-Decoder Model for Generating Dialogues".

Generative story, for the response turn n of a dialogue: c = HRED's hierarchical encoding of the turns
before n; a latent per turn z_n ~ p(z_n | c) = N(mu_p, diag(exp(logvar_p))) from the prior network, a
two-layer tanh MLP on c; the response x_n ~ p(x_n | c, z_n), an RNN decoder whose initial state is a
linear function of [c, z_n] and which reads [c, z_n] at every step (``condition_every_input``).
Inference: the approximate posterior q(z_n | c, x_n) is another two-layer tanh MLP on c and the
response's vector from the same utterance encoder. One example of the data is one response turn, so
one z per example is the per-turn latent z_n.

Objective (assembled by the training system from :class:`ModelOutput`): the negative ELBO
``reconstruction + beta * kl``, ``reconstruction = -log p(x | c, z)`` with z ~ q(z | c, x) (one
reparameterised sample), ``kl = KL(q(z | c, x) || p(z | c))`` in closed form per dimension between the
two Gaussians; beta annealed over steps (the paper's KL annealing) and word dropout on the decoder
inputs (Bowman et al. 2016), both to keep z in use. At test time z comes from the prior network.

Notation: B batch, U context turns, T tokens, C context, Z latent, V vocab, N samples per context.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from textvae.data.batching import DialogueBatch
from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from textvae.models.modules import (
    ContextEncoder,
    GaussianMLP,
    ModelOutput,
    ResponseCondition,
    RNNDecoder,
    RNNState,
    check_response_request,
    sequence_nll,
)
from textvae.objectives import gaussian_kl_between, reparameterize, word_dropout


class VHRED(nn.Module):
    """Serban et al. (2017) latent variable hierarchical encoder-decoder.

    Args:
        vocab_size: tokenizer vocabulary size (special ids included).
        cell: GRU (the paper) or LSTM, for every RNN.
        embed_dim: word embedding size.
        utterance_dim: utterance encoder state size (per direction).
        bidirectional: bidirectional utterance encoder.
        context_dim: context RNN state size.
        latent_dim: size of the per-turn latent z.
        network_dim: hidden size of the prior and posterior networks (two tanh layers each).
        decoder_dim: decoder RNN state size.
        num_layers: layers of the context RNN and of the decoder.
        dropout: dropout on embeddings, utterance and context vectors, decoder states.
        word_dropout: probability of replacing a decoder input word by UNK, in training only.
        condition_every_input: feed [c, z] to every decoder step besides its initial state.
        share_embeddings: one word embedding for the utterance encoder and the decoder.
    """

    num_acts = 0
    num_topics = 0
    profile_dim = 0
    max_words = None  # turns are cut by the data's max_len, not by the model

    def __init__(self, *, vocab_size: int, cell: Literal["lstm", "gru"] = "gru", embed_dim: int = 200,
                 utterance_dim: int = 300, bidirectional: bool = True, context_dim: int = 600, latent_dim: int = 100,
                 network_dim: int = 300, decoder_dim: int = 400, num_layers: int = 1, dropout: float = 0.0,
                 word_dropout: float = 0.0, condition_every_input: bool = True, share_embeddings: bool = True):
        # the constructor arguments, exactly: textvae.export writes them to config.json to rebuild the model
        init_args = {name: value for name, value in locals().items() if name not in ("self", "__class__")}
        super().__init__()
        self.init_args = init_args
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}; use HRED for no latent")
        if not 0.0 <= word_dropout <= 1.0:
            raise ValueError(f"word_dropout must be in [0, 1], got {word_dropout}")
        self.latent_dim = latent_dim
        self.word_dropout = word_dropout
        self.context_encoder = ContextEncoder(
            vocab_size=vocab_size, cell=cell, embed_dim=embed_dim, utterance_dim=utterance_dim,
            bidirectional=bidirectional, context_dim=context_dim, num_layers=num_layers, dropout=dropout)
        c, x = self.context_encoder.output_dim, self.context_encoder.utterance.output_dim
        self.prior_network = GaussianMLP(input_dim=c, latent_dim=latent_dim, hidden_dim=network_dim, num_hidden=2)
        self.recognition_network = GaussianMLP(input_dim=c + x, latent_dim=latent_dim, hidden_dim=network_dim,
                                               num_hidden=2)
        self.decoder = RNNDecoder(
            vocab_size=vocab_size, cell=cell, embed_dim=embed_dim, hidden_dim=decoder_dim, latent_dim=c + latent_dim,
            num_layers=num_layers, z_to_every_input=condition_every_input, dropout=dropout)
        if share_embeddings:
            self.decoder.embedding = self.context_encoder.utterance.embedding

    # -- context, prior and posterior ------------------------------------------------------------------

    def encode_context(self, batch: DialogueBatch) -> Tensor:
        """c: the previous turns (B, U, T) -> (B, C)."""
        return self.context_encoder(batch.context, batch.context_lengths, batch.context_turns, batch.context_floor)

    def prior(self, c: Tensor) -> tuple[Tensor, Tensor]:
        """p(z | c): (B, C) -> (mu, logvar), each (B, Z)."""
        return self.prior_network(c)

    def posterior(self, c: Tensor, batch: DialogueBatch) -> tuple[Tensor, Tensor]:
        """q(z | c, x): (B, C) and the response (B, T) -> (mu, logvar), each (B, Z)."""
        if batch.response is None:
            raise ValueError("the posterior q(z | c, x) needs the response: batch.response is None")
        x = self.context_encoder.utterances(batch.response, batch.response_lengths)  # (B, H_x)
        return self.recognition_network(torch.cat([c, x], dim=-1))

    # -- training ------------------------------------------------------------------------------------

    def decoder_inputs(self, inputs: Tensor) -> Tensor:
        """Word dropout on the decoder inputs (B, T), only in training; BOS, EOS and PAD are never replaced."""
        if not self.training or self.word_dropout == 0.0:
            return inputs
        return word_dropout(inputs, self.word_dropout, unk_id=UNK_ID, protected=(PAD_ID, BOS_ID, EOS_ID))

    def forward(self, batch: DialogueBatch) -> ModelOutput:
        c = self.encode_context(batch)  # (B, C)
        mu_p, logvar_p = self.prior(c)  # (B, Z) x2
        mu, logvar = self.posterior(c, batch)  # (B, Z) x2
        z = reparameterize(mu, logvar)  # (B, Z), from the recognition network in training and evaluation
        condition = torch.cat([c, z], dim=-1)  # (B, C + Z)
        reconstruction = sequence_nll(self.decoder, self.decoder_inputs(batch.inputs), batch.targets, condition)
        return ModelOutput(reconstruction=reconstruction, kl=gaussian_kl_between(mu, logvar, mu_p, logvar_p),
                           mu=mu, logvar=logvar, aux_loss=reconstruction.new_zeros(reconstruction.shape))

    # -- generation ----------------------------------------------------------------------------------

    def response_condition(self, batch: DialogueBatch, *, num_samples: int = 1,
                           z_source: Literal["prior", "posterior"] = "prior", acts: Tensor | None = None,
                           generator: torch.Generator | None = None, prior_scale: float = 1.0) -> ResponseCondition:
        """[c, z] for ``num_samples`` z per context from the prior network (generation) or the
        recognition network (reconstruction, needs ``batch.response``); rows sample-major."""
        check_response_request(z_source, acts, self.num_acts, batch.context.shape[0], num_samples)
        c = self.encode_context(batch)  # (B, C)
        mu, logvar = self.prior(c) if z_source == "prior" else self.posterior(c, batch)  # (B, Z) x2
        if z_source == "prior" and prior_scale != 1.0:  # a wider (or narrower) prior: its sd times the scale
            logvar = logvar + 2.0 * math.log(prior_scale)
        z = reparameterize(mu, logvar, k=num_samples, generator=generator).flatten(0, 1)  # (N * B, Z)
        condition = torch.cat([c.repeat(num_samples, 1), z], dim=-1)  # (N * B, C + Z)
        return ResponseCondition(condition=condition, z=z, acts=None)

    # -- incremental decoding (textvae.decoding) -----------------------------------------------------

    def decoder_start(self, condition: Tensor | None, batch_size: int | None = None) -> RNNState:
        if condition is None:
            raise ValueError("VHRED decodes from [c, z]: pass response_condition(batch).condition")
        return self.decoder.start(condition)

    def decoder_step(self, tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        return self.decoder.step(tokens, state)  # tokens (B,) -> logits (B, V), new state

    def decoder_reorder(self, state: RNNState, index: Tensor) -> RNNState:
        return self.decoder.reorder(state, index)
