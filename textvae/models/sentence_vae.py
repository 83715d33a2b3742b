"""Sentence VAE: Bowman et al. (2016), "Generating Sentences from a Continuous Space".

Generative story: z ~ p(z), the prior component (N(0, I) by default, or a learned mixture,
:mod:`textvae.priors`); x ~ p(x|z), an autoregressive decoder (LSTM, GRU or Transformer) that sees z
through its initial state (RNN; optionally also at every input) or added to every input embedding
(Transformer), or a pretrained causal LM (GPT-2-like) that reads z as an extra key/value slot in every
attention layer and/or added to its input embeddings (Optimus; :mod:`textvae.models.pretrained`, with a
pretrained BERT-like encoder). Inference: q(z|x), the posterior component (:mod:`textvae.posteriors`: a diagonal
Gaussian by default, BN-VAE's, or a Gaussian followed by a normalizing flow) on a sentence encoder.

Objective (assembled by the training system's objective, :mod:`textvae.training_objectives`, from
:class:`ModelOutput`): the negative ELBO ``reconstruction + beta * kl`` with ``reconstruction =
-log p(x|z)``, z ~ q(z|x) by reparameterisation (one sample), and ``kl = KL(q(z|x) || p(z))``, in closed
form per dimension for a Gaussian pair, else a one-sample Monte-Carlo estimate (free bits, annealing and
capacity act on it there); or the importance-weighted bound (:func:`textvae.inference.importance_samples`).
Word dropout (Bowman et al., section 3.3) replaces decoder *inputs* by UNK during training so the decoder
has to lean on z. ``bow_weight`` adds Zhao et al. (2017)'s bag-of-words loss on z alone: one softmax from z
must explain every word of the sentence, which puts the sentence's content words (its topic, its
sentiment) in z, where an autoregressive decoder would otherwise infer them from the words it wrote.

Labels (``num_labels`` > 0): a conditional VAE on a sentence label y (Sohn et al. 2015): q(z | x, y) reads the
label's embedding beside the encoder's features, the prior p(z | y) is a prior component on that embedding
(:class:`~textvae.priors.ConditionalGaussianPrior`; or N(0, I)), and the decoder reads [z; e(y)]. A
classifier q(y | x) on the encoder's features makes it the semi-supervised M2 model (Kingma et al. 2014):
on a labelled sentence the bound on log p(x | y) plus ``classifier_weight`` times log q(y | x); on an
unlabelled one (label -1) y is marginalised, sum_y q(y | x) (bound on log p(x | y)) - KL(q(y | x) || p(y))
with p(y) uniform, and the KL over y is the last column of ``kl``. Generation picks y: the decoder reads
``decoder_code(z, labels)``; keeping z and changing y is style transfer.

Evaluation: :func:`textvae.inference.importance_samples` gives the three (K, B) terms of the
importance-weighted bound on -log p(x) (Burda et al. 2016), batched over sentences *and* samples, from
:meth:`SentenceVAE.infer` and :meth:`SentenceVAE.log_px_given_z`.

Notation: B batch, T tokens, Z latent, K importance samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from textvae import components
from textvae.data.batching import SentenceBatch
from textvae.data.tokenizers import PAD_ID, SPECIAL_TOKENS
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
    decoder_word_dropout,
    reset_decoder,
    sequence_nll,
)
from textvae.models.pretrained import PretrainedDecoder, PretrainedEncoder
from textvae.objectives import bag_of_words_nll
from textvae.posteriors import GaussianPosterior, Posterior
from textvae.priors import Prior, StandardNormalPrior


def _mlp(input_dim: int, hidden_dim: int, output_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.Tanh(), nn.Dropout(dropout),
                         nn.Linear(hidden_dim, output_dim))


class SentenceVAE(nn.Module):
    """Bowman et al. (2016) sentence VAE.

    Args:
        vocab_size: tokenizer vocabulary size (special ids included).
        architecture: encoder and decoder kind; ``"pretrained"``: a Hugging Face encoder model and causal LM from
            local folders (``encoder_model``, ``decoder_model``; the data's tokenizer is the decoder's), the size
            arguments below then being theirs.
        embed_dim: word embedding size; the Transformer's model width.
        hidden_dim: RNN state size; the Transformer's feed-forward width.
        latent_dim: size of z.
        num_layers: RNN layers or Transformer blocks, in the encoder and in the decoder.
        bidirectional: bidirectional RNN encoder.
        num_heads: Transformer attention heads.
        dropout: dropout on embeddings and hidden states.
        word_dropout: probability of replacing a decoder input word by UNK, in training only (never BOS/EOS/PAD).
        z_to_every_input: RNN decoder: concatenate z to every input embedding, besides the initial state.
        z_to_output: RNN decoder: add a linear map of z to every output state before the vocabulary projection
            (Dieng et al. 2019's skip connection).
        tie_embeddings: share the decoder's input embedding with its output layer.
        max_len: Transformer: longest sequence (positions), BOS and EOS included.
        positions: Transformer: learned or sinusoidal position embeddings.
        pooling: Transformer encoder: mean over the tokens or the output at BOS.
        posterior: q(z|x) from the encoder's vector, a :class:`~textvae.posteriors.Posterior` built for
            (encoder size, latent_dim): a class, a callable, or a spec dict (:mod:`textvae.components`);
            default :class:`~textvae.posteriors.GaussianPosterior`. BN-VAE is
            :class:`~textvae.posteriors.BatchNormGaussian`.
        prior: p(z), a :class:`~textvae.priors.Prior` built for (0, latent_dim), or for (label_dim, latent_dim)
            with labels: p(z | y); default N(0, I).
        bow_weight: weight of the bag-of-words loss on z (Zhao et al. 2017); 0 turns it off.
        bow_skip: the bag-of-words loss leaves out the special tokens and the ids below ``4 + bow_skip``: with
            the word tokenizer, whose ids are in frequency order, the ``bow_skip`` most frequent words (function
            words and punctuation, as topic models drop stop words), so z is asked for the content words only.
        num_labels: sentence labels the model is conditioned on (a CVAE on y); 0: none. A recipe sets it to
            the data's count (textvae-train checks they agree).
        label_dim: size of the label embedding e(y).
        classifier_weight: weight of -log q(y | x) on labelled sentences (M2's alpha); the classifier q(y | x)
            also marginalises y on unlabelled ones. 0 with every sentence labelled: Sohn et al.'s CVAE (the
            classifier still learns nothing then, and the model needs the label of a sentence to encode it).
        mlp_dim: hidden size of the bag-of-words and classifier networks.
        encoder_model: ``"pretrained"``: the local folder of a Hugging Face encoder model (BERT-like).
        decoder_model: ``"pretrained"``: the local folder of a Hugging Face causal LM (GPT-2-like).
        latent_injection: ``"pretrained"``: how the LM reads z: ``"memory"`` (a key/value slot in every attention
            layer), ``"embedding"`` (added to every input embedding) or ``"both"`` (Optimus's comparison).
        load_pretrained: ``"pretrained"``: start from the folders' weights (False: their configurations, randomly
            initialised; an export rebuilds the model so before loading its own weights).
    """

    def __init__(self, *, vocab_size: int,
                 architecture: Literal["lstm", "gru", "transformer", "pretrained"] = "lstm",
                 embed_dim: int = 256, hidden_dim: int = 256, latent_dim: int = 32, num_layers: int = 1,
                 bidirectional: bool = False, num_heads: int = 4, dropout: float = 0.0, word_dropout: float = 0.0,
                 z_to_every_input: bool = False, z_to_output: bool = False, tie_embeddings: bool = False,
                 max_len: int = 512,
                 positions: Literal["learned", "sinusoidal"] = "learned", pooling: Literal["mean", "first"] = "mean",
                 posterior: Callable[[int, int], Posterior] | None = None,
                 prior: Callable[[int, int], Prior] | None = None, bow_weight: float = 0.0, bow_skip: int = 0,
                 num_labels: int = 0,
                 label_dim: int = 16, classifier_weight: float = 0.0, mlp_dim: int = 256,
                 encoder_model: str | None = None, decoder_model: str | None = None,
                 latent_injection: Literal["memory", "embedding", "both"] = "both", load_pretrained: bool = True):
        # the constructor arguments, exactly: textvae.export writes them to config.json to rebuild the model
        init_args = {name: value for name, value in locals().items() if name not in ("self", "__class__")}
        super().__init__()
        self.init_args = init_args
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}; use LanguageModel for no latent")
        if not 0.0 <= word_dropout <= 1.0:
            raise ValueError(f"word_dropout must be in [0, 1], got {word_dropout}")
        if min(bow_weight, bow_skip, num_labels, classifier_weight) < 0 or label_dim < 1 or mlp_dim < 1:
            raise ValueError(f"need bow_weight, bow_skip, num_labels, classifier_weight >= 0 and label_dim, mlp_dim >= 1, "
                             f"got {bow_weight}, {bow_skip}, {num_labels}, {classifier_weight}, {label_dim}, {mlp_dim}")
        self.bow_skip = bow_skip
        if classifier_weight > 0 and num_labels < 2:
            raise ValueError(f"classifier_weight needs num_labels >= 2 (a classifier q(y|x)), got num_labels={num_labels}")
        self.latent_dim = latent_dim
        self.num_labels, self.classifier_weight, self.bow_weight = num_labels, classifier_weight, bow_weight
        label_width = label_dim if num_labels else 0
        self.word_dropout = word_dropout
        self.max_words = max_len - 2  # the longest input it reads, BOS and EOS aside (the tools' limit)
        self.encoder: RNNEncoder | TransformerEncoder | PretrainedEncoder
        self.decoder: RNNDecoder | TransformerDecoder | PretrainedDecoder
        if (encoder_model is not None or decoder_model is not None) != (architecture == "pretrained"):
            raise ValueError("encoder_model and decoder_model go with architecture 'pretrained', which needs both")
        if architecture == "pretrained":
            if encoder_model is None or decoder_model is None:
                raise ValueError("architecture 'pretrained' needs encoder_model and decoder_model (local folders)")
            if z_to_every_input or z_to_output:
                raise ValueError("z_to_every_input and z_to_output are for RNN decoders; set latent_injection for a "
                                 "pretrained one")
            self.encoder = PretrainedEncoder(encoder_model, decoder_model, load_weights=load_pretrained)
            self.decoder = PretrainedDecoder(decoder_model, vocab_size=vocab_size, latent_dim=latent_dim + label_width,
                                             injection=latent_injection, load_weights=load_pretrained)
            self.max_words = min(max_len, self.decoder.max_positions) - 2
        elif architecture == "transformer":
            if z_to_every_input or z_to_output:
                raise ValueError("z_to_every_input and z_to_output are for RNN decoders; the Transformer adds z to "
                                 "every input already")
            self.encoder = TransformerEncoder(
                vocab_size=vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers,
                num_heads=num_heads, dropout=dropout, max_len=max_len, positions=positions, pooling=pooling)
            self.decoder = TransformerDecoder(
                vocab_size=vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, latent_dim=latent_dim + label_width,
                num_layers=num_layers, num_heads=num_heads, dropout=dropout, max_len=max_len,
                positions=positions, tie_embeddings=tie_embeddings)
        elif architecture in ("lstm", "gru"):
            self.encoder = RNNEncoder(
                vocab_size=vocab_size, cell=architecture, embed_dim=embed_dim, hidden_dim=hidden_dim,
                num_layers=num_layers, bidirectional=bidirectional, dropout=dropout)
            self.decoder = RNNDecoder(
                vocab_size=vocab_size, cell=architecture, embed_dim=embed_dim, hidden_dim=hidden_dim,
                latent_dim=latent_dim + label_width, num_layers=num_layers, z_to_every_input=z_to_every_input,
                z_to_output=z_to_output, dropout=dropout, tie_embeddings=tie_embeddings)
        else:
            raise ValueError(f"architecture must be 'lstm', 'gru', 'transformer' or 'pretrained', got {architecture!r}")
        features = self.encoder.output_dim
        self.posterior = components.build(posterior or GaussianPosterior, Posterior, features + label_width, latent_dim)
        self.prior = components.build(prior or StandardNormalPrior, Prior, label_width, latent_dim)
        self.label_embedding = nn.Embedding(num_labels, label_dim) if num_labels else None
        self.classifier = _mlp(features, mlp_dim, num_labels, dropout) if num_labels else None
        self.bow_network = _mlp(latent_dim, mlp_dim, vocab_size, dropout) if bow_weight > 0 else None
        init_args |= {"posterior": components.spec(self.posterior), "prior": components.spec(self.prior)}

    # -- inference network ---------------------------------------------------------------------------

    def _labelled(self, features: Tensor, labels: Tensor) -> tuple[Any, Any, Tensor]:
        """q(z | x, y), p(z | y) and e(y) for encoder features (B, D) and label ids (B,)."""
        e = self.label_embedding(labels)  # (B, L)
        return self.posterior(torch.cat([features, e], -1)), self.prior(e, labels.shape[0]), e

    def labels_for(self, features: Tensor, labels: Tensor | None) -> Tensor:
        """The label of each row: the given one, or q(y | x)'s most likely where it is -1 or not given. (B,)"""
        guess = self.classifier(features).argmax(-1)  # (B,)
        return guess if labels is None else torch.where(labels >= 0, labels, guess)

    def infer(self, batch: SentenceBatch) -> Inference:
        """q(z|x) from the encoder and p(z), for the sentences of ``batch``. With labels: q(z | x, y) and
        p(z | y) at each sentence's label (q(y | x)'s most likely one where it has none), and ``condition``
        e(y): the bounds are then on log p(x | y)."""
        features = self.encoder(batch.tokens, batch.lengths)
        if self.num_labels:
            q, p, e = self._labelled(features, self.labels_for(features, batch.labels))
            return Inference(q=q, p=p, condition=e)
        return Inference(q=self.posterior(features), p=self.prior(None, batch.tokens.shape[0]), condition=None)

    def encode(self, tokens: Tensor, lengths: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """A code for each sentence: tokens (B, T) BOS .. EOS, lengths (B,) -> (code, logvar), each (B, Z):
        the posterior mean (a flow posterior: its base mean pushed through the flow) and the base log-variance.
        With labels: q(z | x, y) at ``labels`` (B,), q(y | x)'s most likely label where not given or -1."""
        code, logvar, _ = self.encode_labelled(tokens, lengths, labels)
        return code, logvar

    def encode_labelled(self, tokens: Tensor, lengths: Tensor,
                        labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """:meth:`encode` and the label each code was encoded at, (B,) (None without labels): one encoder pass."""
        features = self.encoder(tokens, lengths)
        if not self.num_labels:
            q = self.posterior(features)
            return q.code, q.params[1], None
        labels = self.labels_for(features, labels)
        q = self._labelled(features, labels)[0]
        return q.code, q.params[1], labels

    def classify(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """log q(y | x): (B, T), (B,) -> (B, num_labels)."""
        if not self.num_labels:
            raise ValueError("this model has no labels to classify (num_labels = 0)")
        return torch.log_softmax(self.classifier(self.encoder(tokens, lengths)), -1)

    def decoder_code(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """What the decoder reads for z (B, Z): z itself, or [z; e(y)] (B, Z + L) for labels (B,) with labels."""
        if not self.num_labels:
            if labels is not None:
                raise ValueError("this model has no labels (num_labels = 0): decode from z alone")
            return z
        if labels is None:
            raise ValueError("this model generates for a label: give one label id per row")
        return torch.cat([z, self.label_embedding(labels.to(z.device))], -1)

    def inference_parameters(self) -> Iterator[nn.Parameter]:
        """The inference network's parameters (encoder, posterior and classifier): what aggressive training
        updates alone."""
        yield from self.encoder.parameters()
        yield from self.posterior.parameters()
        if self.classifier is not None:
            yield from self.classifier.parameters()

    def reset_decoder(self) -> None:
        """Re-initialise the decoder, as after AE pretraining (Li et al. 2019); a pretrained one goes back to its
        pretrained weights."""
        reset_decoder(self.decoder)

    def save_assets(self, folder: Path) -> tuple[dict[str, Any], list[str]]:
        """What an export stores besides the weights (:func:`textvae.export.save_export`): a pretrained backbone's
        configuration and tokenizer in ``folder/encoder`` and ``folder/decoder``. Returns the constructor arguments
        to write instead of the given ones (the folders, relative to the export; no pretrained weights to load:
        the export's are loaded) and the names of those that are folders inside the export."""
        if self.init_args["architecture"] != "pretrained":
            return {}, []
        self.encoder.save_assets(folder / "encoder")
        self.decoder.save_assets(folder / "decoder")
        return {"encoder_model": "encoder", "decoder_model": "decoder", "load_pretrained": False}, \
            ["encoder_model", "decoder_model"]

    # -- training ------------------------------------------------------------------------------------

    def decoder_inputs(self, inputs: Tensor) -> Tensor:
        """Word dropout on the decoder inputs (B, T), only in training (:func:`decoder_word_dropout`)."""
        return decoder_word_dropout(inputs, self.word_dropout, self.training)

    def _terms(self, q: Any, p: Any, inputs: Tensor, targets: Tensor, e: Tensor | None):
        """One z ~ q per row: (z (B, Z), KL, -log p(x | z[, y]) (B,))."""
        z, log_q = q.rsample_with_log_prob(standard_noise(q.params[0]))  # (B, Z), (B,): one sample
        kl = kl_divergence(q, p, z, log_q)
        code = z if e is None else torch.cat([z, e], -1)
        return z, kl, sequence_nll(self.decoder, inputs, targets, code)  # (B,)

    def _bag_of_words(self, z: Tensor, targets: Tensor) -> Tensor:
        if self.bow_network is None:
            return z.new_zeros(z.shape[0])
        if self.bow_skip:  # the specials and the bow_skip most frequent words are not asked for
            targets = targets.masked_fill(targets < len(SPECIAL_TOKENS) + self.bow_skip, PAD_ID)
        return self.bow_weight * bag_of_words_nll(self.bow_network(z), targets, pad_id=PAD_ID)  # (B,)

    def forward(self, batch: SentenceBatch) -> ModelOutput:
        if self.num_labels:
            return self._forward_labelled(batch)
        inference = self.infer(batch)
        q = inference.q
        z, kl, reconstruction = self._terms(q, inference.p, self.decoder_inputs(batch.inputs), batch.targets, None)
        return ModelOutput(reconstruction=reconstruction, kl=kl.value, mu=q.code, logvar=q.params[1],
                           aux_loss=self._bag_of_words(z, batch.targets), kl_closed_form=kl.closed_form,
                           posterior=q)

    def _forward_labelled(self, batch: SentenceBatch) -> ModelOutput:
        """The CVAE / M2 terms. Labelled rows: one pass at their label. Unlabelled rows: one pass per label,
        weighted by q(y | x), and KL(q(y | x) || uniform) as the last column of ``kl`` (0 on labelled rows)."""
        features = self.encoder(batch.tokens, batch.lengths)  # (B, D)
        b, k = features.shape[0], self.num_labels
        labels = batch.labels if batch.labels is not None else features.new_full((b,), -1, dtype=torch.long)
        log_qy = torch.log_softmax(self.classifier(features), -1)  # (B, Y)
        known = labels >= 0  # (B,)
        unknown = (~known).nonzero().squeeze(1)  # (U,)
        # rows: every labelled sentence at its label, then every unlabelled one at each label (label-major)
        rows = torch.cat([known.nonzero().squeeze(1), unknown.repeat(k)])  # (N,)
        row_labels = torch.cat([labels[known], torch.arange(k, device=labels.device).repeat_interleave(len(unknown))])
        q, p, e = self._labelled(features[rows], row_labels)
        inputs = self.decoder_inputs(batch.inputs)
        z, kl, reconstruction = self._terms(q, p, inputs[rows], batch.targets[rows], e)
        aux = self._bag_of_words(z, batch.targets[rows])  # (N,)
        # q(y | x) of each row: 1 for a labelled one, q(y_row | x) for an unlabelled one
        weight = torch.ones_like(reconstruction)
        n_known = int(known.sum())
        weight[n_known:] = log_qy[unknown.repeat(k), row_labels[n_known:]].exp()

        def per_sentence(values: Tensor) -> Tensor:  # (N, ...) -> (B, ...): weighted sum of each sentence's rows
            weighted = values * weight.view(-1, *[1] * (values.dim() - 1))
            return weighted.new_zeros(b, *values.shape[1:]).index_add(0, rows, weighted)

        label_kl = (log_qy.exp() * (log_qy + math.log(k))).sum(-1) * (~known)  # (B,) KL(q(y|x) || U), unlabelled
        classifier = -log_qy.gather(1, labels.clamp_min(0).unsqueeze(1)).squeeze(1) * known  # (B,)
        positions = torch.arange(len(rows), device=rows.device)
        first = torch.full((b,), len(rows), dtype=torch.long, device=rows.device).scatter_reduce(
            0, rows, positions, reduce="amin")  # each sentence's first row
        code = q.code[first]  # (B, Z): at the given label, or at the first label for an unlabelled sentence
        return ModelOutput(reconstruction=per_sentence(reconstruction),
                           kl=torch.cat([per_sentence(kl.value), label_kl.unsqueeze(1)], -1), mu=code,
                           logvar=q.params[1][first], aux_loss=per_sentence(aux) + self.classifier_weight * classifier,
                           kl_closed_form=kl.closed_form, posterior=q.rows(first))

    # -- evaluation ----------------------------------------------------------------------------------

    def log_px_given_z(self, batch: SentenceBatch, z: Tensor, chunk: int | None = None,
                       condition: Any = None) -> Tensor:
        """log p(x | z_k) for z (K, B, Z) -> (K, B), decoding K x B sequences at once, ``chunk`` samples per
        pass (None: as many as keep the logits under a memory budget). Word dropout applies in training
        mode only; call ``eval()`` (and ``torch.no_grad()``) to evaluate. ``condition``: with labels, e(y)
        (B, L) from :meth:`infer` (log p(x | z_k, y)); else unused."""
        if self.num_labels:
            if condition is None:
                raise ValueError("this model reads a label: pass condition=model.infer(batch).condition")
            z = torch.cat([z, condition.unsqueeze(0).expand(z.shape[0], -1, -1)], -1)  # (K, B, Z + L)
        return chunked_log_likelihood(self.decoder, self.decoder_inputs(batch.inputs), batch.targets, z,
                                      chunk=chunk)

    def sample_prior(self, n: int, generator: torch.Generator | None = None, scale: float = 1.0,
                     labels: Tensor | None = None) -> Tensor:
        """z ~ p(z) (with labels: p(z | y) at ``labels`` (n,), drawn uniformly when not given): (n, Z) on the
        model's device; ``scale`` multiplies the prior's standard deviation."""
        if not self.num_labels:
            return self.prior(None, n).sample(generator=generator, scale=scale)
        if labels is None:
            labels = torch.randint(self.num_labels, (n,), generator=generator, device=generator.device
                                   if generator is not None else None)
        labels = labels.to(self.label_embedding.weight.device)
        return self.prior(self.label_embedding(labels), n).sample(generator=generator, scale=scale)

    # -- incremental decoding (textvae.decoding) -----------------------------------------------------

    def decoder_start(self, z: Tensor | None, batch_size: int | None = None) -> DecoderState:
        if z is None:
            raise ValueError("a SentenceVAE decodes from z (B, Z): pass posterior means or sample_prior(n)")
        if self.num_labels and z.shape[-1] == self.latent_dim:
            raise ValueError("this model generates for a label: decode decoder_code(z, labels), not z")
        return self.decoder.start(z)

    def decoder_step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        return self.decoder.step(tokens, state)  # tokens (B,) -> logits (B, V), new state

    def decoder_reorder(self, state: DecoderState, index: Tensor) -> DecoderState:
        return self.decoder.reorder(state, index)
