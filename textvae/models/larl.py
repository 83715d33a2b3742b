"""LaRL: Zhao, Xie & Eskenazi (2019), "Rethinking Action Spaces for Reinforcement Learning in End-to-end Dialog
Agents via Latent Variable Models". A response model whose latent z is the dialogue policy's *action*, so that
reinforcement learning can act on p(z | c) alone (:mod:`textvae.reinforce`) while the decoder stays as the
supervised pre-training left it.

Generative story: c = [the hierarchical context encoding (utterance encoder shared across turns, context RNN
over the turn vectors and floor), the topic embedding (``num_topics`` > 0), the speaker profiles
(``profile_dim`` > 0)]; the action z = M independent K-way categoricals (the paper's "cat" action space,
M = ``num_latents``, K = ``num_classes``), z ~ p(z | c), the policy network (one tanh layer on c, then M x K
logits); z is the concatenation of the M one-hots (Z = M K). The response x ~ p(x | c, z), an RNN decoder whose
initial state is a linear function of [c, z] (``decoder_context``; without it of z alone, as in the paper's
decoder p(x | z)) and which, with ``condition_every_input``, reads it at every step too; with ``attention`` it
also attends to the context's words at every step and, with ``copy``, copies them (pointer-generator,
:class:`~textvae.models.modules.AttentionRNNDecoder`), so that the words an action calls for can be the context's
slot values.

Objective (assembled by the training system from :class:`ModelOutput`; ``elbo``):

* ``"lite"`` (the paper's Lite ELBO, its choice for RL): ``reconstruction + beta * kl`` with
  ``reconstruction = -log p(x | c, z)`` at one Gumbel-softmax sample z of p(z | c) (Jang et al. 2017, at the
  temperature ``temperature``) and ``kl = KL(p(z | c) || uniform)`` in closed form per categorical,
  sum_k p_k log(p_k K): with beta small (the paper: 0.01) it keeps the policy from collapsing onto a few actions
  while the decoder learns to read z. It is no bound on -log p(x | c).
* ``"full"``: the ELBO with a recognition network q(z | c, x) (the same Gumbel-softmax head on [c, the response's
  vector from the utterance encoder]): z ~ q in training and ``kl = KL(q(z | c, x) || p(z | c))`` per
  categorical, so p(z | c) learns to predict the actions that explain the responses.

At generation (eval mode) z is drawn exactly, one one-hot per categorical, from p(z | c); ``prior_scale`` is a
temperature on the policy: the logits are divided by it (1: p(z | c) itself; toward 0 each categorical's most
likely class, the "greedy" action; above 1 flatter). ``greedy=True`` in :meth:`response_condition` takes the
argmax outright.

For reinforcement learning: :meth:`policy_parameters` (the policy network, the only thing RL updates),
:meth:`policy` and :meth:`log_policy` (log p(z | c) of chosen actions), :meth:`context_and_words` and
:meth:`decoder_condition`.

Notation: B batch, U context turns, T tokens, C condition, M categoricals, K classes each, Z = M K, V vocab,
N samples per context.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn

from textvae.data.batching import DialogueBatch
from textvae.distributions import GaussianCategorical, kl_divergence, standard_noise
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
    tanh_mlp,
    with_words,
)
from textvae.objectives import block_one_hot, categorical_log_prob
from textvae.posteriors import GumbelSoftmaxPosterior


class LaRL(nn.Module):
    """Zhao et al. (2019)'s latent-action response model p(x | c) = sum_z p(z | c) p(x | c, z), z categorical.

    Args:
        vocab_size: tokenizer vocabulary size (special ids included).
        cell: GRU (the paper) or LSTM, for every RNN.
        embed_dim: word embedding size.
        utterance_dim: utterance encoder state size (per direction).
        bidirectional: bidirectional utterance encoder.
        context_dim: context RNN state size.
        num_latents: M, the independent categoricals of z (the paper: 10).
        num_classes: K, the classes of each (the paper: 20).
        policy_dim: hidden size of the policy network p(z | c) (and of the recognition network's layer).
        decoder_dim: decoder RNN state size.
        num_layers: layers of the context RNN and of the decoder.
        num_topics: topic ids of the corpus (linked from the data); 0 uses no topic.
        topic_dim: topic embedding size.
        profile_dim: speaker profile features per example (linked from the data; 0 reads none).
        elbo: ``"lite"`` (the paper's Lite ELBO: z from p(z | c), KL to the uniform) or ``"full"`` (z from a
            recognition network q(z | c, x), KL to p(z | c)); see the module doc.
        temperature: tau of the Gumbel-softmax samples in training.
        straight_through: one-hot samples in training too, with the relaxed gradient.
        decoder_context: the decoder reads [c, z]; False: z alone (the paper's p(x | z)).
        condition_every_input: feed the decoder's condition to every step, not only to its initial state.
        dropout: dropout on embeddings, utterance and context vectors, decoder states.
        word_dropout: probability of replacing a decoder input word by UNK, in training only.
        share_embeddings: one word embedding for the utterance encoder and the decoder.
        attention: the decoder attends to the context's words (:class:`~textvae.models.modules.AttentionRNNDecoder`).
        copy: and copies them (pointer-generator); needs ``attention``.
    """

    num_acts = 0  # not conditioned on a dialog act: z is the action
    max_words = None  # turns are cut by the data's max_len, not by the model

    def __init__(self, *, vocab_size: int, cell: Literal["lstm", "gru"] = "gru", embed_dim: int = 200,
                 utterance_dim: int = 300, bidirectional: bool = True, context_dim: int = 600, num_latents: int = 10,
                 num_classes: int = 20, policy_dim: int = 300, decoder_dim: int = 400, num_layers: int = 1,
                 num_topics: int = 0, topic_dim: int = 30, profile_dim: int = 0,
                 elbo: Literal["lite", "full"] = "lite", temperature: float = 1.0, straight_through: bool = False,
                 decoder_context: bool = True, condition_every_input: bool = False, dropout: float = 0.0,
                 word_dropout: float = 0.0, share_embeddings: bool = True, attention: bool = False,
                 copy: bool = False):
        # the constructor arguments, exactly: textvae.export writes them to config.json to rebuild the model
        init_args = {name: value for name, value in locals().items() if name not in ("self", "__class__")}
        super().__init__()
        self.init_args = init_args
        if num_latents < 1 or num_classes < 2:
            raise ValueError(f"LaRL needs num_latents >= 1 categoricals of num_classes >= 2, got {num_latents}, "
                             f"{num_classes}")
        if elbo not in ("lite", "full"):
            raise ValueError(f"elbo must be 'lite' or 'full', got {elbo!r}")
        if min(num_topics, profile_dim) < 0 or policy_dim < 1:
            raise ValueError(f"need num_topics, profile_dim >= 0 and policy_dim >= 1, got {num_topics}, "
                             f"{profile_dim}, {policy_dim}")
        if not 0.0 <= word_dropout <= 1.0:
            raise ValueError(f"word_dropout must be in [0, 1], got {word_dropout}")
        self.categories = (num_classes,) * num_latents  # (K, .., K): M blocks of z
        self.latent_dim, self.num_topics, self.profile_dim = num_latents * num_classes, num_topics, profile_dim
        self.elbo, self.decoder_context, self.word_dropout = elbo, decoder_context, word_dropout
        self.context_encoder = ContextEncoder(
            vocab_size=vocab_size, cell=cell, embed_dim=embed_dim, utterance_dim=utterance_dim,
            bidirectional=bidirectional, context_dim=context_dim, num_layers=num_layers, dropout=dropout)
        self.topic_embedding = nn.Embedding(num_topics, topic_dim) if num_topics else None
        c = self.context_encoder.output_dim + (topic_dim if num_topics else 0) + profile_dim
        x = self.context_encoder.utterance.output_dim
        gumbel = dict(categories=self.categories, temperature=temperature, min_temperature=temperature,
                      anneal_rate=0.0, straight_through=straight_through)
        # p(z | c): one tanh layer, then the M x K logits (a Gumbel-softmax head: relaxed samples in training)
        self.policy_hidden = tanh_mlp(c, policy_dim, 1)
        self.policy_head = GumbelSoftmaxPosterior(policy_dim, self.latent_dim, **gumbel)
        if elbo == "full":  # q(z | c, x)
            self.recognition_hidden = tanh_mlp(c + x, policy_dim, 1)
            self.recognition_head = GumbelSoftmaxPosterior(policy_dim, self.latent_dim, **gumbel)
        self.attention = attention
        self.decoder = dialogue_decoder(
            attention=attention, copy=copy, memory_dim=x,
            vocab_size=vocab_size, cell=cell, embed_dim=embed_dim, hidden_dim=decoder_dim,
            latent_dim=(c if decoder_context else 0) + self.latent_dim, num_layers=num_layers,
            z_to_every_input=condition_every_input, dropout=dropout)
        if share_embeddings:
            self.decoder.embedding = self.context_encoder.utterance.embedding

    # -- the context, the policy and the recognition network -----------------------------------------

    def encode_context(self, batch: DialogueBatch) -> Tensor:
        """c = [context encoding, topic embedding, speaker profiles]: (B, C). An unknown topic (-1) embeds
        to zeros; a batch without profiles reads zeros (unknown callers)."""
        return self.context_and_words(batch, words=False)[0]

    def context_and_words(self, batch: DialogueBatch, *, words: bool | None = None) -> tuple[Tensor, ContextWords | None]:
        """c (B, C) and, for a decoder that attends (``words`` None: when the model does), the context's words
        (else None), in one encoder pass."""
        return encode_dialogue_context(batch, self.context_encoder, topic_embedding=self.topic_embedding,
                                       profile_dim=self.profile_dim, words=self.attention if words is None else words)

    def policy(self, c: Tensor) -> GaussianCategorical:
        """p(z | c): M categoricals over (B, Z) (no continuous part); Gumbel-softmax samples in training."""
        return self.policy_head(self.policy_hidden(c))  # logits (B, Z)

    def log_policy(self, c: Tensor, z: Tensor) -> Tensor:
        """log p(z | c) of one-hot actions z (..., B, Z) for contexts c (B, C): (..., B), summed over the M
        categoricals."""
        return categorical_log_prob(self.policy(c).logits, z, self.categories)

    def policy_parameters(self) -> Iterator[nn.Parameter]:
        """The policy network p(z | c) alone: what reinforcement learning updates (the context encoder and the
        decoder stay as supervised learning left them)."""
        yield from self.policy_hidden.parameters()
        yield from self.policy_head.parameters()

    def recognize(self, c: Tensor, batch: DialogueBatch) -> GaussianCategorical:
        """q(z | c, x) (``elbo="full"``): (B, C) and the response (B, T) -> M categoricals over (B, Z)."""
        if batch.response is None:
            raise ValueError("the recognition network q(z | c, x) needs the response: batch.response is None")
        x = self.context_encoder.utterances(batch.response, batch.response_lengths)  # (B, H_x)
        return self.recognition_head(self.recognition_hidden(torch.cat([c, x], dim=-1)))

    def decoder_condition(self, c: Tensor, z: Tensor, words: ContextWords | None = None) -> Tensor | WithContext:
        """What the decoder reads: [c, z] (B, C + Z), or z (B, Z) without ``decoder_context``; for a decoder that
        attends, together with the context's ``words`` (rows as c's, from :meth:`context_and_words`)."""
        if self.attention and words is None:
            raise ValueError("this LaRL's decoder attends to the context's words: pass context_and_words(batch)[1]")
        return with_words(torch.cat([c, z], dim=-1) if self.decoder_context else z, words)

    # -- training ------------------------------------------------------------------------------------

    def decoder_inputs(self, inputs: Tensor) -> Tensor:
        """Word dropout on the decoder inputs (B, T), only in training (:func:`decoder_word_dropout`)."""
        return decoder_word_dropout(inputs, self.word_dropout, self.training)

    def forward(self, batch: DialogueBatch) -> ModelOutput:
        c, words = self.context_and_words(batch)  # (B, C)
        p = self.policy(c)
        if self.elbo == "lite":  # z ~ p(z | c), KL(p(z | c) || uniform)
            q, prior = p, p._replace(logits=torch.zeros_like(p.logits))
        else:  # z ~ q(z | c, x), KL(q || p(z | c))
            q, prior = self.recognize(c, batch), p
        z, _ = q.rsample_with_log_prob(standard_noise(q.noise_like))  # (B, Z): relaxed in training, one-hot in eval
        kl = kl_divergence(q, prior, None, None)  # (B, M), closed form per categorical
        reconstruction = sequence_nll(self.decoder, self.decoder_inputs(batch.inputs), batch.targets,
                                      self.decoder_condition(c, z, words))  # (B,)
        return ModelOutput(reconstruction=reconstruction, kl=kl.value, mu=q.code, logvar=q.params[1],
                           aux_loss=reconstruction.new_zeros(reconstruction.shape), kl_closed_form=True, posterior=q)

    # -- generation ----------------------------------------------------------------------------------

    def response_condition(self, batch: DialogueBatch, *, num_samples: int = 1,
                           z_source: Literal["prior", "posterior"] = "prior", acts: Tensor | None = None,
                           generator: torch.Generator | None = None, prior_scale: float = 1.0,
                           greedy: bool = False) -> ResponseCondition:
        """The decoder condition for ``num_samples`` actions z per context, each an exact one-hot per categorical
        drawn from the policy p(z | c) with its logits divided by ``prior_scale`` (``greedy``: the most likely
        class of each), or from the recognition network (``z_source="posterior"``, ``elbo="full"`` only; needs
        ``batch.response``). Rows sample-major."""
        check_response_request(z_source, acts, self.num_acts, batch.context.shape[0], num_samples)
        if z_source == "posterior" and self.elbo != "full":
            raise ValueError("this LaRL was trained with the Lite ELBO and has no recognition network: draw z from "
                             "the policy (z_source='prior')")
        if not prior_scale > 0:
            raise ValueError(f"prior_scale must be > 0, got {prior_scale}")
        c, words = self.context_and_words(batch)  # (B, C)
        source = self.policy(c) if z_source == "prior" else self.recognize(c, batch)
        logits = source.logits / (prior_scale if z_source == "prior" else 1.0)  # (B, Z)
        if greedy:
            z = block_one_hot(logits, self.categories).expand(num_samples, -1, -1)  # (N, B, Z)
        else:
            z = source._replace(logits=logits, temperature=None).sample(num_samples, generator)  # (N, B, Z)
        z = z.flatten(0, 1)  # (N * B, Z)
        words = None if words is None else words.repeat(num_samples)  # sample-major, as c
        return ResponseCondition(condition=self.decoder_condition(c.repeat(num_samples, 1), z, words), z=z, acts=None)

    # -- incremental decoding (textvae.decoding) -----------------------------------------------------

    def decoder_start(self, condition: Tensor | WithContext | None, batch_size: int | None = None) -> RNNState:
        if condition is None:
            raise ValueError("LaRL decodes from [c, z]: pass response_condition(batch).condition")
        return self.decoder.start(condition)

    def decoder_step(self, tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        return self.decoder.step(tokens, state)  # tokens (B,) -> logits (B, V), new state

    def decoder_reorder(self, state: RNNState, index: Tensor) -> RNNState:
        return self.decoder.reorder(state, index)
