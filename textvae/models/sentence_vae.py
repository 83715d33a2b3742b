"""Sentence VAE: Bowman et al. (2016), "Generating Sentences from a Continuous Space".

Generative story: z ~ N(0, I); x ~ p(x|z), an autoregressive decoder (LSTM, GRU or Transformer) that
sees z through its initial state (RNN; optionally also at every input) or added to every input
embedding (Transformer). Inference: q(z|x) = N(mu, diag(exp(logvar))) from a sentence encoder.

Objective (assembled by the training system from :class:`ModelOutput`): the negative ELBO
``reconstruction + beta * kl`` with ``reconstruction = -log p(x|z)``, z ~ q(z|x) by reparameterisation
(one sample), and ``kl = KL(q(z|x) || N(0, I))`` in closed form per dimension (free bits, annealing and
capacity act on it there). Word dropout (Bowman et al., section 3.3) replaces decoder *inputs* by UNK
during training so the decoder has to lean on z.

Evaluation: :meth:`SentenceVAE.importance_samples` gives the three (K, B) terms of the importance-weighted
bound on -log p(x) (Burda et al. 2016), batched over sentences *and* samples.

Notation: B batch, T tokens, Z latent, K importance samples.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from textvae.data.batching import SentenceBatch
from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from textvae.models.modules import (
    DecoderState,
    GaussianHead,
    ModelOutput,
    RNNDecoder,
    RNNEncoder,
    TransformerDecoder,
    TransformerEncoder,
    sequence_nll,
)
from textvae.objectives import gaussian_kl, log_normal, log_standard_normal, reparameterize, word_dropout

# Logits kept in memory at once by log_px_given_z when chunk is None: 2**25 floats = 128 MiB.
LOGITS_BUDGET = 2**25


class ImportanceSamples(NamedTuple):
    log_px_given_z: Tensor  # (K, B) log p(x | z_k)
    log_pz: Tensor  # (K, B) log p(z_k)
    log_qz: Tensor  # (K, B) log q(z_k | x)


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
        mu_batchnorm: BN-VAE's gamma (Zhu et al. 2020): batch-normalise the posterior mean with this fixed
            scale, which keeps at least gamma^2 / 2 nats of informative KL per dimension; 0 disables it.
    """

    def __init__(self, *, vocab_size: int, architecture: Literal["lstm", "gru", "transformer"] = "lstm",
                 embed_dim: int = 256, hidden_dim: int = 256, latent_dim: int = 32, num_layers: int = 1,
                 bidirectional: bool = False, num_heads: int = 4, dropout: float = 0.0, word_dropout: float = 0.0,
                 z_to_every_input: bool = False, tie_embeddings: bool = False, max_len: int = 512,
                 positions: Literal["learned", "sinusoidal"] = "learned", pooling: Literal["mean", "first"] = "mean",
                 mu_batchnorm: float = 0.0):
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
        self.posterior = GaussianHead(input_dim=self.encoder.output_dim, latent_dim=latent_dim,
                                      mu_batchnorm=mu_batchnorm)

    # -- inference network ---------------------------------------------------------------------------

    def encode(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """q(z|x): tokens (B, T) BOS .. EOS, lengths (B,) -> (mu, logvar), each (B, Z)."""
        return self.posterior(self.encoder(tokens, lengths))

    # -- training ------------------------------------------------------------------------------------

    def decoder_inputs(self, inputs: Tensor) -> Tensor:
        """Word dropout on the decoder inputs (B, T), only in training; BOS, EOS and PAD are never replaced."""
        if not self.training or self.word_dropout == 0.0:
            return inputs
        return word_dropout(inputs, self.word_dropout, unk_id=UNK_ID, protected=(PAD_ID, BOS_ID, EOS_ID))

    def forward(self, batch: SentenceBatch) -> ModelOutput:
        mu, logvar = self.encode(batch.tokens, batch.lengths)  # (B, Z) x2
        z = reparameterize(mu, logvar)  # (B, Z), one sample in training and evaluation alike
        reconstruction = sequence_nll(self.decoder, self.decoder_inputs(batch.inputs), batch.targets, z)  # (B,)
        return ModelOutput(reconstruction=reconstruction, kl=gaussian_kl(mu, logvar), mu=mu, logvar=logvar,
                           aux_loss=reconstruction.new_zeros(reconstruction.shape))

    # -- evaluation ----------------------------------------------------------------------------------

    def log_px_given_z(self, batch: SentenceBatch, z: Tensor, chunk: int | None = None) -> Tensor:
        """log p(x | z_k) for z (K, B, Z) -> (K, B), decoding K x B sequences at once, ``chunk`` samples per
        pass (None: as many as keep the logits under ``LOGITS_BUDGET`` floats). No word dropout; call
        ``eval()`` (and ``torch.no_grad()``) first to switch dropout off and save memory."""
        k, b, _ = z.shape
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be >= 1 samples per pass, got {chunk}")
        if chunk is None:
            per_sample = int(batch.target_mask.sum()) * self.decoder.output.out_features
            chunk = max(1, LOGITS_BUDGET // max(per_sample, 1))
        inputs, targets = batch.inputs, batch.targets  # (B, T)
        out = []
        for z_chunk in z.split(chunk, dim=0):  # (k', B, Z)
            n = z_chunk.shape[0]
            nll = sequence_nll(self.decoder, inputs.repeat(n, 1), targets.repeat(n, 1),
                               z_chunk.reshape(n * b, -1))  # (k' * B,), sample-major like z_chunk
            out.append(-nll.view(n, b))
        return torch.cat(out, dim=0)  # (K, B)

    def importance_samples(self, batch: SentenceBatch, k: int, chunk: int | None = None,
                           generator: torch.Generator | None = None) -> ImportanceSamples:
        """K samples z_k ~ q(z|x) per sentence and the three (K, B) log densities of the importance-weighted
        bound; pass them to :func:`textvae.objectives.importance_weighted_nll`."""
        mu, logvar = self.encode(batch.tokens, batch.lengths)  # (B, Z) x2
        z = reparameterize(mu, logvar, k=k, generator=generator)  # (K, B, Z)
        return ImportanceSamples(log_px_given_z=self.log_px_given_z(batch, z, chunk=chunk),
                                 log_pz=log_standard_normal(z), log_qz=log_normal(z, mu, logvar))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z ~ N(0, I): (n, Z) on the model's device."""
        weight = self.posterior.to_mu.weight
        return torch.randn(n, self.latent_dim, generator=generator, device=weight.device, dtype=weight.dtype)

    # -- incremental decoding (textvae.decoding) -----------------------------------------------------

    def decoder_start(self, z: Tensor | None, batch_size: int | None = None) -> DecoderState:
        if z is None:
            raise ValueError("a SentenceVAE decodes from z (B, Z): pass posterior means or sample_prior(n)")
        return self.decoder.start(z)

    def decoder_step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        return self.decoder.step(tokens, state)  # tokens (B,) -> logits (B, V), new state

    def decoder_reorder(self, state: DecoderState, index: Tensor) -> DecoderState:
        return self.decoder.reorder(state, index)
