"""Sentence VAE: Bowman et al. (2016), "Generating Sentences from a Continuous Space".

Generative story: z ~ p(z), the prior component (N(0, I) by default, or a learned mixture,
:mod:`textvae.priors`); x ~ p(x|z), an autoregressive decoder (LSTM, GRU or Transformer) that sees z
through its initial state (RNN; optionally also at every input) or added to every input embedding
(Transformer). Inference: q(z|x), the posterior component (:mod:`textvae.posteriors`: a diagonal
Gaussian by default, BN-VAE's, or a Gaussian followed by a normalizing flow) on a sentence encoder.

Objective (assembled by the training system's objective, :mod:`textvae.training_objectives`, from
:class:`ModelOutput`): the negative ELBO ``reconstruction + beta * kl`` with ``reconstruction =
-log p(x|z)``, z ~ q(z|x) by reparameterisation (one sample), and ``kl = KL(q(z|x) || p(z))``, in closed
form per dimension for a Gaussian pair, else a one-sample Monte-Carlo estimate (free bits, annealing and
capacity act on it there); or the importance-weighted bound (:func:`textvae.inference.importance_samples`).
Word dropout (Bowman et al., section 3.3) replaces decoder *inputs* by UNK during training so the decoder
has to lean on z.

Evaluation: :func:`textvae.inference.importance_samples` gives the three (K, B) terms of the
importance-weighted bound on -log p(x) (Burda et al. 2016), batched over sentences *and* samples, from
:meth:`SentenceVAE.infer` and :meth:`SentenceVAE.log_px_given_z`.

Notation: B batch, T tokens, Z latent, K importance samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch import Tensor, nn

from textvae import components
from textvae.data.batching import SentenceBatch
from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from textvae.distributions import kl_divergence, standard_noise
from textvae.models.modules import (
    DecoderState,
    Inference,
    ModelOutput,
    RNNDecoder,
    RNNEncoder,
    TransformerDecoder,
    TransformerEncoder,
    chunked_log_likelihood,
    reset_decoder,
    sequence_nll,
)
from textvae.objectives import word_dropout
from textvae.posteriors import GaussianPosterior, Posterior
from textvae.priors import Prior, StandardNormalPrior


class SentenceVAE(nn.Module):
    """Bowman et al. (2016) sentence VAE.

    Args:
        vocab_size: tokenizer vocabulary size (special ids included).
        architecture: encoder and decoder kind.
        embed_dim: word embedding size; the Transformer's model width.
        hidden_dim: RNN state size; the Transformer's feed-forward width.
        latent_dim: size of z.
        num_layers: RNN layers or Transformer blocks, in the encoder and in the decoder.
        bidirectional: bidirectional RNN encoder.
        num_heads: Transformer attention heads.
        dropout: dropout on embeddings and hidden states.
        word_dropout: probability of replacing a decoder input word by UNK, in training only (never BOS/EOS/PAD).
        z_to_every_input: RNN decoder: concatenate z to every input embedding, besides the initial state.
        tie_embeddings: share the decoder's input embedding with its output layer.
        max_len: Transformer: longest sequence (positions), BOS and EOS included.
        positions: Transformer: learned or sinusoidal position embeddings.
        pooling: Transformer encoder: mean over the tokens or the output at BOS.
        posterior: q(z|x) from the encoder's vector, a :class:`~textvae.posteriors.Posterior` built for
            (encoder size, latent_dim): a class, a callable, or a spec dict (:mod:`textvae.components`);
            default :class:`~textvae.posteriors.GaussianPosterior`. BN-VAE is
            :class:`~textvae.posteriors.BatchNormGaussian`.
        prior: p(z), a :class:`~textvae.priors.Prior` built for (0, latent_dim); default N(0, I).
    """

    def __init__(self, *, vocab_size: int, architecture: Literal["lstm", "gru", "transformer"] = "lstm",
                 embed_dim: int = 256, hidden_dim: int = 256, latent_dim: int = 32, num_layers: int = 1,
                 bidirectional: bool = False, num_heads: int = 4, dropout: float = 0.0, word_dropout: float = 0.0,
                 z_to_every_input: bool = False, tie_embeddings: bool = False, max_len: int = 512,
                 positions: Literal["learned", "sinusoidal"] = "learned", pooling: Literal["mean", "first"] = "mean",
                 posterior: Callable[[int, int], Posterior] | None = None,
                 prior: Callable[[int, int], Prior] | None = None):
        # the constructor arguments, exactly: textvae.export writes them to config.json to rebuild the model
        init_args = {name: value for name, value in locals().items() if name not in ("self", "__class__")}
        super().__init__()
        self.init_args = init_args
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}; use LanguageModel for no latent")
        if not 0.0 <= word_dropout <= 1.0:
            raise ValueError(f"word_dropout must be in [0, 1], got {word_dropout}")
        self.latent_dim = latent_dim
        self.word_dropout = word_dropout
        self.max_words = max_len - 2  # the longest input it reads, BOS and EOS aside (the tools' limit)
        self.encoder: RNNEncoder | TransformerEncoder
        self.decoder: RNNDecoder | TransformerDecoder
        if architecture == "transformer":
            if z_to_every_input:
                raise ValueError("z_to_every_input is for RNN decoders; the Transformer adds z to every input already")
            self.encoder = TransformerEncoder(
                vocab_size=vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers,
                num_heads=num_heads, dropout=dropout, max_len=max_len, positions=positions, pooling=pooling)
            self.decoder = TransformerDecoder(
                vocab_size=vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, latent_dim=latent_dim,
                num_layers=num_layers, num_heads=num_heads, dropout=dropout, max_len=max_len,
                positions=positions, tie_embeddings=tie_embeddings)
        elif architecture in ("lstm", "gru"):
            self.encoder = RNNEncoder(
                vocab_size=vocab_size, cell=architecture, embed_dim=embed_dim, hidden_dim=hidden_dim,
                num_layers=num_layers, bidirectional=bidirectional, dropout=dropout)
            self.decoder = RNNDecoder(
                vocab_size=vocab_size, cell=architecture, embed_dim=embed_dim, hidden_dim=hidden_dim,
                latent_dim=latent_dim, num_layers=num_layers, z_to_every_input=z_to_every_input,
                dropout=dropout, tie_embeddings=tie_embeddings)
        else:
            raise ValueError(f"architecture must be 'lstm', 'gru' or 'transformer', got {architecture!r}")
        self.posterior = components.build(posterior or GaussianPosterior, Posterior, self.encoder.output_dim,
                                          latent_dim)
        self.prior = components.build(prior or StandardNormalPrior, Prior, 0, latent_dim)
        init_args |= {"posterior": components.spec(self.posterior), "prior": components.spec(self.prior)}

    # -- inference network ---------------------------------------------------------------------------

    def infer(self, batch: SentenceBatch) -> Inference:
        """q(z|x) from the encoder and p(z), for the sentences of ``batch``."""
        q = self.posterior(self.encoder(batch.tokens, batch.lengths))
        return Inference(q=q, p=self.prior(None, batch.tokens.shape[0]), condition=None)

    def encode(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """A code for each sentence: tokens (B, T) BOS .. EOS, lengths (B,) -> (code, logvar), each (B, Z):
        the posterior mean (a flow posterior: its base mean pushed through the flow) and the base log-variance."""
        q = self.posterior(self.encoder(tokens, lengths))
        return q.code, q.params[1]

    def inference_parameters(self) -> Iterator[nn.Parameter]:
        """The inference network's parameters (encoder and posterior): what aggressive training updates alone."""
        yield from self.encoder.parameters()
        yield from self.posterior.parameters()

    def reset_decoder(self) -> None:
        """Re-initialise the decoder, as after AE pretraining (Li et al. 2019)."""
        reset_decoder(self.decoder)

    # -- training ------------------------------------------------------------------------------------

    def decoder_inputs(self, inputs: Tensor) -> Tensor:
        """Word dropout on the decoder inputs (B, T), only in training; BOS, EOS and PAD are never replaced."""
        if not self.training or self.word_dropout == 0.0:
            return inputs
        return word_dropout(inputs, self.word_dropout, unk_id=UNK_ID, protected=(PAD_ID, BOS_ID, EOS_ID))

    def forward(self, batch: SentenceBatch) -> ModelOutput:
        inference = self.infer(batch)
        q = inference.q
        z, log_q = q.rsample_with_log_prob(standard_noise(q.params[0]))  # (B, Z), (B,): one sample
        kl = kl_divergence(q, inference.p, z, log_q)
        reconstruction = sequence_nll(self.decoder, self.decoder_inputs(batch.inputs), batch.targets, z)  # (B,)
        return ModelOutput(reconstruction=reconstruction, kl=kl.value, mu=q.code, logvar=q.params[1],
                           aux_loss=reconstruction.new_zeros(reconstruction.shape), kl_closed_form=kl.closed_form,
                           posterior=q)

    # -- evaluation ----------------------------------------------------------------------------------

    def log_px_given_z(self, batch: SentenceBatch, z: Tensor, chunk: int | None = None,
                       condition: Any = None) -> Tensor:
        """log p(x | z_k) for z (K, B, Z) -> (K, B), decoding K x B sequences at once, ``chunk`` samples per
        pass (None: as many as keep the logits under a memory budget). Word dropout applies in training
        mode only; call ``eval()`` (and ``torch.no_grad()``) to evaluate. ``condition``: unused (no context)."""
        return chunked_log_likelihood(self.decoder, self.decoder_inputs(batch.inputs), batch.targets, z,
                                      chunk=chunk)

    def sample_prior(self, n: int, generator: torch.Generator | None = None, scale: float = 1.0) -> Tensor:
        """z ~ p(z): (n, Z) on the model's device; ``scale`` multiplies the prior's standard deviation."""
        return self.prior(None, n).sample(generator=generator, scale=scale)

    # -- incremental decoding (textvae.decoding) -----------------------------------------------------

    def decoder_start(self, z: Tensor | None, batch_size: int | None = None) -> DecoderState:
        if z is None:
            raise ValueError("a SentenceVAE decodes from z (B, Z): pass posterior means or sample_prior(n)")
        return self.decoder.start(z)

    def decoder_step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        return self.decoder.step(tokens, state)  # tokens (B,) -> logits (B, V), new state

    def decoder_reorder(self, state: DecoderState, index: Tensor) -> DecoderState:
        return self.decoder.reorder(state, index)
