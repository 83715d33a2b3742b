"""VHRED: Serban et al. (2017), "A Hierarchical Latent Variable Encoder-Decoder Model for Generating Dialogues".

Generative story, for the response turn n of a dialogue: c = HRED's hierarchical encoding of the turns
before n; a latent per turn z_n ~ p(z_n | c), the prior component (by default the paper's prior network:
N(mu_p, diag(exp(logvar_p))) from a two-layer tanh MLP on c, :class:`~textvae.priors.ConditionalGaussianPrior`);
the response x_n ~ p(x_n | c, z_n), an RNN decoder whose initial state is a linear function of [c, z_n]
and which reads [c, z_n] at every step (``condition_every_input``). Inference: q(z_n | c, x_n), the
posterior component (a diagonal Gaussian by default, :mod:`textvae.posteriors`) on a two-layer tanh MLP
of c and the response's vector from the same utterance encoder. One example of the data is one response
turn, so one z per example is the per-turn latent z_n.

Objective (assembled by the training system from :class:`ModelOutput`): the negative ELBO
``reconstruction + beta * kl``, ``reconstruction = -log p(x | c, z)`` with z ~ q(z | c, x) (one
reparameterised sample), ``kl = KL(q(z | c, x) || p(z | c))`` in closed form per dimension between two
Gaussians (else a Monte-Carlo estimate); beta annealed over steps (the paper's KL annealing) and word
dropout on the decoder inputs (Bowman et al. 2016), both to keep z in use. At test time z comes from the prior.

Notation: B batch, U context turns, T tokens, C context, Z latent, V vocab, N samples per context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn

from textvae import components
from textvae.data.batching import DialogueBatch
from textvae.distributions import kl_divergence, standard_noise
from textvae.models.modules import (
    ContextEncoder,
    ContextWords,
    Inference,
    ModelOutput,
    ResponseCondition,
    RNNState,
    WithContext,
    check_response_request,
    chunked_log_likelihood,
    decoder_word_dropout,
    dialogue_decoder,
    encode_dialogue_context,
    keep_legacy_keys,
    reset_decoder,
    sequence_nll,
    split_condition,
    tanh_mlp,
    with_words,
)
from textvae.posteriors import GaussianPosterior, Posterior
from textvae.priors import ConditionalGaussianPrior, Prior


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
        network_dim: hidden size of the recognition network and of the default prior network (two tanh
            layers each).
        decoder_dim: decoder RNN state size.
        num_layers: layers of the context RNN and of the decoder.
        dropout: dropout on embeddings, utterance and context vectors, decoder states.
        word_dropout: probability of replacing a decoder input word by UNK, in training only.
        condition_every_input: feed [c, z] to every decoder step besides its initial state.
        share_embeddings: one word embedding for the utterance encoder and the decoder.
        attention: the decoder attends to the context's words (:class:`~textvae.models.modules.AttentionRNNDecoder`).
        copy: and copies them (pointer-generator); needs ``attention``.
        posterior: q(z | c, x) on the recognition network's output (size ``network_dim``), a
            :class:`~textvae.posteriors.Posterior` (class, callable or spec dict); default a diagonal Gaussian.
        prior: p(z | c), a :class:`~textvae.priors.Prior` built for (context size, latent_dim); default the
            paper's prior network, ``ConditionalGaussianPrior(hidden_dim=network_dim, num_hidden=2)``.
    """

    num_acts = 0
    num_topics = 0
    profile_dim = 0
    max_words = None  # turns are cut by the data's max_len, not by the model

    def __init__(self, *, vocab_size: int, cell: Literal["lstm", "gru"] = "gru", embed_dim: int = 200,
                 utterance_dim: int = 300, bidirectional: bool = True, context_dim: int = 600, latent_dim: int = 100,
                 network_dim: int = 300, decoder_dim: int = 400, num_layers: int = 1, dropout: float = 0.0,
                 word_dropout: float = 0.0, condition_every_input: bool = True, share_embeddings: bool = True,
                 posterior: Callable[[int, int], Posterior] | None = None,
                 prior: Callable[[int, int], Prior] | None = None, attention: bool = False, copy: bool = False):
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
        self.recognition_network = tanh_mlp(c + x, network_dim, num_hidden=2)  # (B, C + H_x) -> (B, network_dim)
        self.posterior = components.build(posterior or GaussianPosterior, Posterior, network_dim, latent_dim)
        self.prior = components.build(prior or partial(ConditionalGaussianPrior, hidden_dim=network_dim, num_hidden=2),
                                      Prior, c, latent_dim)
        init_args |= {"posterior": components.spec(self.posterior), "prior": components.spec(self.prior)}
        self.attention = attention
        self.decoder = dialogue_decoder(
            attention=attention, copy=copy, memory_dim=x, vocab_size=vocab_size, cell=cell, embed_dim=embed_dim, hidden_dim=decoder_dim, latent_dim=c + latent_dim,
            num_layers=num_layers, z_to_every_input=condition_every_input, dropout=dropout)
        if share_embeddings:
            self.decoder.embedding = self.context_encoder.utterance.embedding
        # exports and checkpoints from before the components: the prior and recognition networks' old names
        keep_legacy_keys(self, {"prior_network.hidden.": "prior.hidden.", "prior_network.head.": "prior.",
                                "recognition_network.hidden.": "recognition_network.",
                                "recognition_network.head.": "posterior."})

    # -- context, prior and posterior ------------------------------------------------------------------

    def encode_context(self, batch: DialogueBatch) -> Tensor:
        """c: the previous turns (B, U, T) -> (B, C)."""
        return self.context_encoder(batch.context, batch.context_lengths, batch.context_turns, batch.context_floor)

    def context_and_words(self, batch: DialogueBatch) -> tuple[Tensor, ContextWords | None]:
        """c (B, C) and, for a decoder that attends, the context's words (else None), in one encoder pass."""
        return encode_dialogue_context(batch, self.context_encoder, words=self.attention)

    def recognize(self, c: Tensor, batch: DialogueBatch):
        """q(z | c, x): (B, C) and the response (B, T) -> the posterior's distribution over (B, Z)."""
        if batch.response is None:
            raise ValueError("the posterior q(z | c, x) needs the response: batch.response is None")
        x = self.context_encoder.utterances(batch.response, batch.response_lengths)  # (B, H_x)
        return self.posterior(self.recognition_network(torch.cat([c, x], dim=-1)))

    def infer(self, batch: DialogueBatch) -> Inference:
        """q(z | c, x), p(z | c) and the context encoding c (what the decoder reads besides z; with the
        context's words when the decoder attends)."""
        c, words = self.context_and_words(batch)  # (B, C)
        return Inference(q=self.recognize(c, batch), p=self.prior(c, c.shape[0]), condition=with_words(c, words))

    def inference_parameters(self) -> Iterator[nn.Parameter]:
        """The recognition side: the utterance encoder (it reads the response), the recognition network and
        the posterior. The context RNN and the prior feed the decoder too, so they count as generative."""
        yield from self.context_encoder.utterance.parameters()
        yield from self.recognition_network.parameters()
        yield from self.posterior.parameters()

    def reset_decoder(self) -> None:
        """Re-initialise the decoder (not an embedding it shares with the encoder)."""
        reset_decoder(self.decoder, self.context_encoder.utterance.embedding)

    # -- training ------------------------------------------------------------------------------------

    def decoder_inputs(self, inputs: Tensor) -> Tensor:
        """Word dropout on the decoder inputs (B, T), only in training (:func:`decoder_word_dropout`)."""
        return decoder_word_dropout(inputs, self.word_dropout, self.training)

    def forward(self, batch: DialogueBatch) -> ModelOutput:
        inference = self.infer(batch)
        q, c, words = inference.q, *split_condition(inference.condition)
        z, log_q = q.rsample_with_log_prob(standard_noise(q.params[0]))  # (B, Z), from q in training and evaluation
        kl = kl_divergence(q, inference.p, z, log_q)
        condition = torch.cat([c, z], dim=-1)  # (B, C + Z)
        reconstruction = sequence_nll(self.decoder, self.decoder_inputs(batch.inputs), batch.targets,
                                      with_words(condition, words))
        return ModelOutput(reconstruction=reconstruction, kl=kl.value, mu=q.code, logvar=q.params[1],
                           aux_loss=reconstruction.new_zeros(reconstruction.shape), kl_closed_form=kl.closed_form,
                           posterior=q)

    def log_px_given_z(self, batch: DialogueBatch, z: Tensor, chunk: int | None = None, condition: Any = None) -> Tensor:
        """log p(x | c, z_k) for z (K, B, Z) -> (K, B); ``condition``: the context encoding c (B, C) from
        :meth:`infer` (computed when None)."""
        c, words = split_condition(condition) if condition is not None else self.context_and_words(batch)
        full = torch.cat([c.expand(z.shape[0], -1, -1), z], dim=-1)  # (K, B, C + Z)
        return chunked_log_likelihood(self.decoder, self.decoder_inputs(batch.inputs), batch.targets, full,
                                      chunk=chunk, words=words)

    # -- generation ----------------------------------------------------------------------------------

    def response_condition(self, batch: DialogueBatch, *, num_samples: int = 1,
                           z_source: Literal["prior", "posterior"] = "prior", acts: Tensor | None = None,
                           generator: torch.Generator | None = None, prior_scale: float = 1.0) -> ResponseCondition:
        """[c, z] for ``num_samples`` z per context from the prior network (generation) or the
        recognition network (reconstruction, needs ``batch.response``); rows sample-major."""
        check_response_request(z_source, acts, self.num_acts, batch.context.shape[0], num_samples)
        c, words = self.context_and_words(batch)  # (B, C)
        if z_source == "prior":  # prior_scale: a wider (or narrower) prior, its sd times the scale
            z = self.prior(c, c.shape[0]).sample(num_samples, generator, scale=prior_scale)  # (N, B, Z)
        else:
            z = self.recognize(c, batch).sample(num_samples, generator)
        z = z.flatten(0, 1)  # (N * B, Z)
        condition = torch.cat([c.repeat(num_samples, 1), z], dim=-1)  # (N * B, C + Z)
        condition = with_words(condition, None if words is None else words.repeat(num_samples))
        return ResponseCondition(condition=condition, z=z, acts=None)

    # -- incremental decoding (textvae.decoding) -----------------------------------------------------

    def decoder_start(self, condition: Tensor | WithContext | None, batch_size: int | None = None) -> RNNState:
        if condition is None:
            raise ValueError("VHRED decodes from [c, z]: pass response_condition(batch).condition")
        return self.decoder.start(condition)

    def decoder_step(self, tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        return self.decoder.step(tokens, state)  # tokens (B,) -> logits (B, V), new state

    def decoder_reorder(self, state: RNNState, index: Tensor) -> RNNState:
        return self.decoder.reorder(state, index)
