"""CVAE and kgCVAE: Zhao et al. (2017), "Learning Discourse-level Diversity for Neural Dialog Models using
Conditional Variational Autoencoders". kgCVAE is this model with ``knowledge=True``.

Generative story: c = [the hierarchical context encoding (utterance encoder shared across turns, context
RNN over the turn vectors and floor), the topic embedding (``num_topics`` > 0), the speaker profiles
(``profile_dim`` > 0: the responder's and the other caller's, :mod:`textvae.data.profiles`)]; z ~ p(z | c),
the prior component (the paper's prior network by default: N(mu_p, diag(exp(logvar_p))) from one tanh
layer, :class:`~textvae.priors.ConditionalGaussianPrior`); kgCVAE only: a dialog act
y ~ p(y | c, z) from an MLP; the response x ~ p(x | c, z[, y]), an RNN decoder whose initial state is a
linear function of [c, z(, y's embedding)] and which, for kgCVAE, also reads y's embedding at every
step, so a response can be generated for a chosen act; with ``condition_every_input`` it reads all of
[c, z(, y's embedding)] at every step (as HRED and VHRED here), which the paper does not. Inference: the
posterior component q(z | c, x[, y]) (a diagonal Gaussian linear in its input by default, the paper's
recognition network) on [c, the response's vector from the shared utterance encoder(, tanh of y's embedding)].

Objective (assembled by the training system from :class:`ModelOutput`): the negative ELBO
``reconstruction + beta * kl`` with ``reconstruction = -log p(x | c, z[, y])``, z ~ q(z | c, x[, y])
(one reparameterised sample), ``kl = KL(q || p(z | c))`` in closed form per dimension between two
Gaussians (else a Monte-Carlo estimate), beta annealed linearly over steps; plus ``aux_loss`` = ``bow_weight`` x the bag-of-words
loss -log p(x_bow | c, z) (every response word from one softmax on [c, z]) and, for kgCVAE,
``act_weight`` x the act cross-entropy -log p(y | c, z) on the gold act (examples without an act are
ignored). In training the decoder sees the gold act where known (else the predicted one); at test
time z comes from the prior network and y is given or predicted (argmax). The act's -log p(y | c, z) is
also returned as ``act_nll``: with the gold act observed, -log p(x | c) <= -log p(x, y | c) <=
reconstruction + act_nll + kl, the bound the evaluation reports (without it the bound would be on
-log p(x | c, y), a response given its true act).

As in Zhao et al.'s code, the topic embedding and the two profiles join the context encoding in c, so
the prior, recognition, bag-of-words and act networks and the decoder all read them.

Notation: B batch, U context turns, T tokens, C condition, Z latent, A act embedding, V vocab,
N samples per context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textvae import components
from textvae.data.batching import DialogueBatch
from textvae.data.tokenizers import PAD_ID
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
    with_words,
)
from textvae.objectives import bag_of_words_nll
from textvae.posteriors import GaussianPosterior, Posterior
from textvae.priors import ConditionalGaussianPrior, Prior


def _mlp(input_dim: int, hidden_dim: int, output_dim: int, dropout: float) -> nn.Sequential:
    """Zhao et al.'s output heads: one tanh layer, then a linear layer to the logits."""
    return nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.Tanh(), nn.Dropout(dropout),
                         nn.Linear(hidden_dim, output_dim))


class CVAE(nn.Module):
    """Zhao et al. (2017) CVAE; ``knowledge=True`` makes it kgCVAE (dialog acts as linguistic knowledge).

    Args:
        vocab_size: tokenizer vocabulary size (special ids included).
        cell: GRU (the paper) or LSTM, for every RNN.
        embed_dim: word embedding size.
        utterance_dim: utterance encoder state size (per direction).
        bidirectional: bidirectional utterance encoder.
        context_dim: context RNN state size.
        latent_dim: size of z.
        prior_dim: hidden size of the default prior network (the paper: max(2 latent_dim, 100)).
        decoder_dim: decoder RNN state size.
        num_layers: layers of the context RNN and of the decoder.
        num_topics: topic ids of the corpus (linked from the data); 0 uses no topic.
        topic_dim: topic embedding size.
        profile_dim: speaker profile features per example (linked from the data: 8 when the corpus names
            its callers, as Switchboard does; 0 reads none).
        knowledge: kgCVAE: predict the response's dialog act from (c, z) and condition the decoder on it.
        num_acts: dialog act ids of the corpus (linked from the data); used with ``knowledge``.
        act_dim: dialog act embedding size.
        mlp_dim: hidden size of the bag-of-words and act heads.
        bow_weight: weight of the bag-of-words loss; 0 turns it off.
        act_weight: weight of the act cross-entropy (kgCVAE).
        dropout: dropout on embeddings, utterance and context vectors, heads, decoder states.
        word_dropout: probability of replacing a decoder input word by UNK, in training only.
        share_embeddings: one word embedding for the utterance encoder and the decoder (as the paper).
        condition_every_input: feed the whole condition [c, z(, act)] to every decoder step, not only
            to its initial state (the paper: off; kgCVAE's act embedding is fed to every step either way).
        posterior: q(z | c, x[, y]) on [c, x(, y)], a :class:`~textvae.posteriors.Posterior` (class,
            callable or spec dict); default a diagonal Gaussian linear in it (the paper's recognition network).
        prior: p(z | c), a :class:`~textvae.priors.Prior` built for (size of c, latent_dim); default the
            paper's prior network, ``ConditionalGaussianPrior(hidden_dim=prior_dim, num_hidden=1)``.
        attention: the decoder attends to the context's words (:class:`~textvae.models.modules.AttentionRNNDecoder`).
        copy: and copies them (pointer-generator); needs ``attention``.
    """

    def __init__(self, *, vocab_size: int, cell: Literal["lstm", "gru"] = "gru", embed_dim: int = 200,
                 utterance_dim: int = 300, bidirectional: bool = True, context_dim: int = 600, latent_dim: int = 200,
                 prior_dim: int = 400, decoder_dim: int = 400, num_layers: int = 1, num_topics: int = 0,
                 topic_dim: int = 30, profile_dim: int = 0, knowledge: bool = False, num_acts: int = 0, act_dim: int = 30,
                 mlp_dim: int = 400, bow_weight: float = 1.0, act_weight: float = 1.0, dropout: float = 0.0,
                 word_dropout: float = 0.0, share_embeddings: bool = True, condition_every_input: bool = False,
                 posterior: Callable[[int, int], Posterior] | None = None,
                 prior: Callable[[int, int], Prior] | None = None, attention: bool = False, copy: bool = False):
        # the constructor arguments, exactly: textvae.export writes them to config.json to rebuild the model
        init_args = {name: value for name, value in locals().items() if name not in ("self", "__class__")}
        super().__init__()
        self.init_args = init_args
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}; use HRED for no latent")
        if knowledge and num_acts < 1:
            raise ValueError("kgCVAE (knowledge=True) needs num_acts >= 1: train it on a corpus with dialog acts")
        if min(num_topics, profile_dim, bow_weight, act_weight) < 0:
            raise ValueError(f"need num_topics, profile_dim, bow_weight, act_weight >= 0, got {num_topics}, "
                             f"{profile_dim}, {bow_weight}, {act_weight}")
        if not 0.0 <= word_dropout <= 1.0:
            raise ValueError(f"word_dropout must be in [0, 1], got {word_dropout}")
        self.latent_dim, self.profile_dim, self.num_topics = latent_dim, profile_dim, num_topics
        self.max_words = None  # turns are cut by the data's max_len, not by the model
        self.num_acts = num_acts if knowledge else 0  # the contract: > 0 only when the decoder is act-conditioned
        self.bow_weight, self.act_weight, self.word_dropout = bow_weight, act_weight, word_dropout
        self.context_encoder = ContextEncoder(
            vocab_size=vocab_size, cell=cell, embed_dim=embed_dim, utterance_dim=utterance_dim,
            bidirectional=bidirectional, context_dim=context_dim, num_layers=num_layers, dropout=dropout)
        self.topic_embedding = nn.Embedding(num_topics, topic_dim) if num_topics else None
        c = self.context_encoder.output_dim + (topic_dim if num_topics else 0) + profile_dim
        x = self.context_encoder.utterance.output_dim
        a = act_dim if knowledge else 0
        if knowledge:
            self.act_embedding = nn.Embedding(num_acts, act_dim)
            self.act_to_recognition = nn.Sequential(nn.Linear(act_dim, act_dim), nn.Tanh())
            self.act_network = _mlp(c + latent_dim, mlp_dim, num_acts, dropout)  # p(y | c, z)
        self.posterior = components.build(posterior or GaussianPosterior, Posterior, c + x + a, latent_dim)
        self.prior = components.build(prior or partial(ConditionalGaussianPrior, hidden_dim=prior_dim, num_hidden=1),
                                      Prior, c, latent_dim)
        init_args |= {"posterior": components.spec(self.posterior), "prior": components.spec(self.prior)}
        self.bow_network = _mlp(c + latent_dim, mlp_dim, vocab_size, dropout) if bow_weight > 0 else None
        self.attention = attention
        self.decoder = dialogue_decoder(
            attention=attention, copy=copy, memory_dim=x,
            vocab_size=vocab_size, cell=cell, embed_dim=embed_dim, hidden_dim=decoder_dim,
            latent_dim=c + latent_dim + a, num_layers=num_layers, z_to_every_input=condition_every_input,
            every_input_dim=0 if condition_every_input else a, dropout=dropout)
        if share_embeddings:
            self.decoder.embedding = self.context_encoder.utterance.embedding
        # exports and checkpoints from before the components: the prior and recognition networks' old names
        keep_legacy_keys(self, {"prior_network.hidden.": "prior.hidden.", "prior_network.head.": "prior.",
                                "recognition_network.head.": "posterior."})

    # -- condition, prior and posterior ---------------------------------------------------------------

    def encode_context(self, batch: DialogueBatch) -> Tensor:
        """c = [context encoding, topic embedding, speaker profiles]: (B, C). An unknown topic (-1) embeds
        to zeros; a batch without profiles reads zeros (unknown callers)."""
        return self.context_and_words(batch, words=False)[0]

    def context_and_words(self, batch: DialogueBatch, *, words: bool | None = None) -> tuple[Tensor, ContextWords | None]:
        """c (B, C) and, for a decoder that attends (``words`` None: when the model does), the context's words
        (else None), in one encoder pass."""
        return encode_dialogue_context(batch, self.context_encoder, topic_embedding=self.topic_embedding,
                                       profile_dim=self.profile_dim, words=self.attention if words is None else words)

    def recognize(self, c: Tensor, batch: DialogueBatch):
        """q(z | c, x[, y]): (B, C), the response (B, T) and, for kgCVAE, its gold act -> the posterior's
        distribution over (B, Z). A response without a known act gets a zero act feature."""
        if batch.response is None:
            raise ValueError("the recognition network q(z | c, x) needs the response: batch.response is None")
        parts = [c, self.context_encoder.utterances(batch.response, batch.response_lengths)]  # (B, C), (B, H_x)
        if self.num_acts:
            gold = self._gold_acts(batch, c)  # (B,)
            feature = self.act_to_recognition(self.act_embedding(gold.clamp_min(0)))  # (B, A)
            parts.append(feature * (gold >= 0).unsqueeze(-1))
        return self.posterior(torch.cat(parts, dim=-1))

    def infer(self, batch: DialogueBatch) -> Inference:
        """q(z | c, x[, y]), p(z | c) and c (what the decoder and the act network read besides z; with the
        context's words when the decoder attends)."""
        c, words = self.context_and_words(batch)  # (B, C)
        return Inference(q=self.recognize(c, batch), p=self.prior(c, c.shape[0]), condition=with_words(c, words))

    def inference_parameters(self) -> Iterator[nn.Parameter]:
        """The recognition side: the utterance encoder (it reads the response), the act feature and the
        posterior. The context RNN and the prior feed the decoder too, so they count as generative."""
        yield from self.context_encoder.utterance.parameters()
        if self.num_acts:
            yield from self.act_to_recognition.parameters()
        yield from self.posterior.parameters()

    def reset_decoder(self) -> None:
        """Re-initialise the decoder (not an embedding it shares with the encoder)."""
        reset_decoder(self.decoder, self.context_encoder.utterance.embedding)

    def _gold_acts(self, batch: DialogueBatch, like: Tensor) -> Tensor:
        if batch.acts is None:
            return torch.full(like.shape[:1], -1, dtype=torch.long, device=like.device)
        return batch.acts  # (B,), -1 where unknown

    def decoder_condition(self, c: Tensor, z: Tensor, acts: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """[c, z] for CVAE; [c, z, act embedding] for kgCVAE, with ``acts`` (B,) where >= 0 and the act
        predicted from (c, z) (argmax) elsewhere or when ``acts`` is None. Returns (condition, acts used)."""
        generation = torch.cat([c, z], dim=-1)  # (B, C + Z)
        if not self.num_acts:
            return generation, None
        predicted = self.act_network(generation).argmax(-1)  # (B,)
        used = predicted if acts is None else torch.where(acts >= 0, acts, predicted)
        return torch.cat([generation, self.act_embedding(used)], dim=-1), used  # (B, C + Z + A), (B,)

    # -- training ------------------------------------------------------------------------------------

    def decoder_inputs(self, inputs: Tensor) -> Tensor:
        """Word dropout on the decoder inputs (B, T), only in training (:func:`decoder_word_dropout`)."""
        return decoder_word_dropout(inputs, self.word_dropout, self.training)

    def forward(self, batch: DialogueBatch) -> ModelOutput:
        inference = self.infer(batch)
        q, c, words = inference.q, *split_condition(inference.condition)
        z, log_q = q.rsample_with_log_prob(standard_noise(q.params[0]))  # (B, Z), from q in training and evaluation
        kl = kl_divergence(q, inference.p, z, log_q)
        generation = torch.cat([c, z], dim=-1)  # (B, C + Z)
        aux = c.new_zeros(c.shape[0])  # (B,)
        if self.bow_network is not None:
            aux = aux + self.bow_weight * bag_of_words_nll(self.bow_network(generation), batch.targets, pad_id=PAD_ID)
        gold = act_nll = None
        if self.num_acts:
            gold = self._gold_acts(batch, c)  # (B,)
            act_logits = self.act_network(generation)  # (B, num_acts)
            act_nll = F.cross_entropy(act_logits.float(), gold, ignore_index=-1, reduction="none")  # (B,), 0 if unknown
            aux = aux + self.act_weight * act_nll
        condition, _ = self.decoder_condition(c, z, gold)  # (B, C + Z [+ A])
        reconstruction = sequence_nll(self.decoder, self.decoder_inputs(batch.inputs), batch.targets,
                                      with_words(condition, words))
        return ModelOutput(reconstruction=reconstruction, kl=kl.value, mu=q.code, logvar=q.params[1], aux_loss=aux,
                           act_nll=act_nll, kl_closed_form=kl.closed_form, posterior=q)

    def log_px_given_z(self, batch: DialogueBatch, z: Tensor, chunk: int | None = None, condition: Any = None) -> Tensor:
        """log p(x | c, z_k) for z (K, B, Z) -> (K, B); kgCVAE: log p(x, y | c, z_k) = log p(x | c, z_k, y) +
        log p(y | c, z_k) with the gold act y where known (elsewhere the decoder reads the predicted act and
        no act term is added), the joint whose bound the evaluation reports. ``condition``: c (B, C) from
        :meth:`infer` (computed when None)."""
        c, words = split_condition(condition) if condition is not None else self.context_and_words(batch)
        k, b, _ = z.shape
        generation = torch.cat([c.expand(k, -1, -1), z], dim=-1)  # (K, B, C + Z)
        gold = self._gold_acts(batch, c)  # (B,)
        full, _ = self.decoder_condition(generation[..., :c.shape[-1]].reshape(k * b, -1), z.reshape(k * b, -1),
                                         gold.repeat(k))  # (K * B, C + Z [+ A]), sample-major
        log_px = chunked_log_likelihood(self.decoder, self.decoder_inputs(batch.inputs), batch.targets,
                                        full.view(k, b, -1), chunk=chunk, words=words)  # (K, B)
        if self.num_acts:
            log_py = torch.log_softmax(self.act_network(generation).float(), dim=-1)  # (K, B, num_acts)
            picked = log_py.gather(-1, gold.clamp_min(0).expand(k, -1).unsqueeze(-1)).squeeze(-1)  # (K, B)
            log_px = log_px + picked * (gold >= 0)
        return log_px

    # -- generation ----------------------------------------------------------------------------------

    def response_condition(self, batch: DialogueBatch, *, num_samples: int = 1,
                           z_source: Literal["prior", "posterior"] = "prior", acts: Tensor | None = None,
                           generator: torch.Generator | None = None, prior_scale: float = 1.0) -> ResponseCondition:
        """The decoder condition for ``num_samples`` z per context, from the prior network (generation) or
        the recognition network (reconstruction, needs ``batch.response``); kgCVAE: for the given
        ``acts`` (B,) or the acts it predicts from (c, z). Rows sample-major."""
        check_response_request(z_source, acts, self.num_acts, batch.context.shape[0], num_samples)
        c, words = self.context_and_words(batch)  # (B, C)
        if z_source == "prior":  # prior_scale: a wider (or narrower) prior, its sd times the scale
            z = self.prior(c, c.shape[0]).sample(num_samples, generator, scale=prior_scale)  # (N, B, Z)
        else:
            z = self.recognize(c, batch).sample(num_samples, generator)
        z = z.flatten(0, 1)  # (N * B, Z)
        forced = None if acts is None else acts.to(c.device).repeat(num_samples)  # (N * B,)
        condition, used = self.decoder_condition(c.repeat(num_samples, 1), z, forced)
        condition = with_words(condition, None if words is None else words.repeat(num_samples))
        return ResponseCondition(condition=condition, z=z, acts=used)

    # -- incremental decoding (textvae.decoding) -----------------------------------------------------

    def decoder_start(self, condition: Tensor | WithContext | None, batch_size: int | None = None) -> RNNState:
        if condition is None:
            raise ValueError("CVAE decodes from [c, z(, act)]: pass response_condition(batch).condition")
        return self.decoder.start(condition)

    def decoder_step(self, tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        return self.decoder.step(tokens, state)  # tokens (B,) -> logits (B, V), new state

    def decoder_reorder(self, state: RNNState, index: Tensor) -> RNNState:
        return self.decoder.reorder(state, index)
