"""Shared building blocks: sentence encoders, Gaussian heads, the hierarchical dialogue context encoder,
z-conditioned decoders and the model outputs.

Notation: B batch, T tokens, U turns, E embedding, H hidden, Z latent, V vocab. Sequences are ``BOS w_1 .. w_n EOS``
padded on the right with ``PAD_ID`` (see :mod:`textvae.data.batching`).

Every decoder has the same interface, so one model file can swap architectures and
:mod:`textvae.decoding` never needs to know which one it drives:

* ``forward(inputs (B, T), z (B, Z) | None) -> logits (B, T, V)``: teacher forcing;
  ``features`` + ``project`` split it so a model can project only the real (non-PAD) positions;
* ``start(z, batch_size) -> state``, ``step(tokens (B,), state) -> (logits (B, V), state)`` and
  ``reorder(state, index (B',)) -> state`` (rows of the state picked by ``index``: beam search).

A decoder built with ``latent_dim=0`` has no latent input: that is the language model.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textvae.data.batching import DialogueBatch
from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from textvae.distributions import DiagonalGaussian, FlowDistribution, GaussianMixture
from textvae.objectives import word_dropout

# Logits kept in memory at once by chunked_log_likelihood when chunk is None: 2**25 floats = 128 MiB.
LOGITS_BUDGET = 2**25
# Positions projected to the vocabulary at once in evaluation (projected_nll): 1024 x V logits, a few MiB
NLL_ROWS = 1024
# The vocabulary projection's matmul runs on a weight padded to a multiple of this many rows (its logits cut back
# to V columns) once it has at least PADDED_PROJECTION_ROWS rows to project: see VocabularyProjection.
PROJECTION_ROW_MULTIPLE = 64
PADDED_PROJECTION_ROWS = 128


def run_rnn(rnn: nn.RNNBase, x, hidden=None):
    """``rnn(x, hidden)``; under CPU autocast (``--trainer.precision bf16-mixed`` on the CPU) in float32, as
    oneDNN has no bfloat16 LSTM/GRU on most processors. ``x``: a tensor or a PackedSequence."""
    if torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            if hidden is not None:
                hidden = tuple(h.float() for h in hidden) if isinstance(hidden, tuple) else hidden.float()
            return rnn(x.float(), hidden)
    return rnn(x, hidden)


class ModelOutput(NamedTuple):
    """What every model's ``forward(batch)`` returns; the training system combines the terms."""

    reconstruction: Tensor  # (B,) -log p(x|z) for one z ~ q(z|x), summed over words + EOS (PAD masked)
    kl: Tensor | None  # (B, Z) true KL(q(z|x) || p(z)) per dimension; None without a latent
    mu: Tensor | None  # (B, Z) posterior mean
    logvar: Tensor | None  # (B, Z) posterior log-variance
    aux_loss: Tensor  # (B,) extra per-example losses (bag-of-words, dialogue acts); zeros if none
    # (B,) -log p(y | c, z) of an observed act y that the decoder is conditioned on (kgCVAE): part of the
    # bound on -log p(x | c), which the evaluation adds to the NLL (its share of aux_loss is a training weight)
    act_nll: Tensor | None = None
    # kl is the closed form per dimension (B, Z); False: a one-sample Monte-Carlo estimate (B, 1) (a flow
    # posterior or a mixture prior), which free bits per dimension cannot act on
    kl_closed_form: bool = True
    posterior: DiagonalGaussian | FlowDistribution | None = None  # q(z | .) of the batch, for the MI estimate


class Inference(NamedTuple):
    """What a latent model infers for a batch (``model.infer(batch)``): everything the objectives, the
    importance-weighted bound, semi-amortised refinement and the evaluation need besides the decoder."""

    q: DiagonalGaussian | FlowDistribution  # q(z | x[, c]), rows (B,)
    p: DiagonalGaussian | GaussianMixture  # p(z[ | c]), rows (B,)
    condition: Any  # what log_px_given_z needs besides z (a dialogue model's context encoding); None for sentences


class ImportanceSamples(NamedTuple):
    log_px_given_z: Tensor  # (K, B) log p(x | z_k)
    log_pz: Tensor  # (K, B) log p(z_k)
    log_qz: Tensor  # (K, B) log q(z_k | x)


class ResponseCondition(NamedTuple):
    """What a dialogue model decodes a response from: ``condition`` goes to ``decoder_start`` as its first
    argument (in :mod:`textvae.decoding` it takes the place of ``z``). Rows are sample-major: row
    ``s * B + b`` is sample ``s`` of context ``b``."""

    condition: Tensor  # (N * B, C) context encoding, z (latent models) and act embedding (kgCVAE), as the decoder wants
    z: Tensor | None  # (N * B, Z) the latent used; None for HRED
    acts: Tensor | None  # (N * B,) act ids the decoder was conditioned on (kgCVAE: given or predicted); else None


class ContextWords(NamedTuple):
    """A dialogue context's words, for a decoder that attends to them and copies them
    (:class:`AttentionRNNDecoder`): every context turn's tokens one after another, oldest turn first."""

    states: Tensor  # (B, L, H_u) the utterance encoder's output at each word
    mask: Tensor  # (B, L) True at the words that may be attended to (not PAD, not BOS)
    ids: Tensor  # (B, L) their token ids, what copying a word generates

    def repeat(self, n: int) -> ContextWords:
        """The rows repeated ``n`` times, sample-major (row ``s * B + b`` is context ``b``)."""
        return ContextWords(self.states.repeat(n, 1, 1), self.mask.repeat(n, 1), self.ids.repeat(n, 1))

    def index_select(self, index: Tensor) -> ContextWords:
        return ContextWords(self.states.index_select(0, index), self.mask.index_select(0, index),
                            self.ids.index_select(0, index))


class WithContext(NamedTuple):
    """A decoder condition (B, C) together with the context's words, what an :class:`AttentionRNNDecoder`
    starts from. ``shape`` and ``device`` are the vector's, so :mod:`textvae.decoding` takes it for a z."""

    vector: Tensor  # (B, C) [c, z(, act)]: what a decoder without attention would read
    words: ContextWords

    @property
    def shape(self) -> torch.Size:
        return self.vector.shape

    @property
    def device(self) -> torch.device:
        return self.vector.device


def with_words(condition: Tensor, words: ContextWords | None) -> Tensor | WithContext:
    """``condition`` as the decoder reads it: alone, or with the context's words when the model attends."""
    return condition if words is None else WithContext(condition, words)


def split_condition(condition: Tensor | WithContext) -> tuple[Tensor, ContextWords | None]:
    """The vector and the context's words (None without them) of a condition :func:`with_words` made."""
    return (condition.vector, condition.words) if isinstance(condition, WithContext) else (condition, None)


class VocabularyProjection(nn.Linear):
    """The output layer, (..., H) -> (..., V): an ``nn.Linear`` (same parameters, state-dict keys and values) whose
    matmul, for at least ``PADDED_PROJECTION_ROWS`` rows, runs on its weight padded with zero rows to a multiple
    of ``PROJECTION_ROW_MULTIPLE`` (the bias with -inf), the logits then cut back to the V real columns. BLAS kernels run a
    matmul whose output width is a multiple of the vector and cache blocks at full speed and an odd width (a
    vocabulary of 5,151) at two thirds of it; the padding costs one copy of the weight, which a projection of
    many rows repays (nanoGPT pads GPT-2's vocabulary to 50,304 for the same reason; here the model's
    distribution stays over the V real words). Fewer rows (a decoding step) take the plain matmul."""

    def forward(self, x: Tensor) -> Tensor:
        return self.softmax_logits(x)[..., :self.out_features]  # a view; the whole width without padding

    def softmax_logits(self, x: Tensor) -> Tensor:
        """(..., V') logits for a softmax over the V words: V' = V, or on the padded path the padded width with
        the padding's logits at -inf (probability 0), which a cross-entropy reads as they are: no cut, no copy."""
        pad = -self.out_features % PROJECTION_ROW_MULTIPLE
        if pad == 0 or x.numel() < PADDED_PROJECTION_ROWS * self.in_features:
            return super().forward(x)
        weight = F.pad(self.weight, (0, 0, 0, pad))  # (V + pad, H), the gradient flows back to the V real rows
        bias = self.bias if self.bias is not None else self.weight.new_zeros(self.out_features)
        return F.linear(x, weight, F.pad(bias, (0, pad), value=-math.inf))


def decoder_word_dropout(inputs: Tensor, p: float, training: bool) -> Tensor:
    """Word dropout (Bowman et al. 2016) on a decoder's inputs (B, T), in training only: each word becomes <unk>
    with probability ``p``; BOS, EOS and PAD never do. What every model's ``decoder_inputs`` applies."""
    if not training or p == 0.0:
        return inputs
    return word_dropout(inputs, p, unk_id=UNK_ID, protected=(PAD_ID, BOS_ID, EOS_ID))


def sequence_nll(decoder: RNNDecoder | TransformerDecoder, inputs: Tensor, targets: Tensor,
                 z: Tensor | None) -> Tensor:
    """-log p(targets | inputs, z) summed over the real targets of each row: (B, T) x2 -> (B,).

    Only non-PAD positions are projected to the vocabulary: with V in the tens of thousands the output
    layer dominates the cost, and padded positions would otherwise pay for it.
    """
    mask = targets != PAD_ID  # (B, T)
    if torch.is_grad_enabled() or isinstance(z, WithContext):
        logits = decoder.masked_logits(inputs, z, mask)  # (N, V) with N real targets
        token_nll = F.cross_entropy(logits.float(), targets[mask], reduction="none")  # (N,)
    else:  # evaluation (a decoder that projects its features alone): see projected_nll
        token_nll = projected_nll(decoder, decoder.features(inputs, z)[mask], targets[mask])  # (N,)
    return token_nll.new_zeros(mask.shape).masked_scatter(mask, token_nll).sum(-1)  # (B,)


def projected_nll(decoder: RNNDecoder | TransformerDecoder, h: Tensor, targets: Tensor) -> Tensor:
    """-log p(target) at N positions from the decoder's features h (N, H): (N,). The vocabulary projection runs
    ``NLL_ROWS`` positions at a time, so the logits, the bias broadcast into them and the log-softmax stay in the
    cache instead of making passes over K x B sentences' worth of memory (the same values as one projection).
    The decoder's ``softmax_logits`` may carry impossible (-inf) columns past V (:class:`VocabularyProjection`)."""
    out = []
    for h_rows, target_rows in zip(h.split(NLL_ROWS), targets.split(NLL_ROWS), strict=True):
        logits = decoder.softmax_logits(h_rows).float()  # (n, V')
        out.append(F.cross_entropy(logits, target_rows, reduction="none"))  # (n,)
    return torch.cat(out) if out else h.new_zeros(0)


def chunked_log_likelihood(decoder: RNNDecoder | TransformerDecoder, inputs: Tensor, targets: Tensor, z: Tensor,
                           *, chunk: int | None = None, words: ContextWords | None = None) -> Tensor:
    """log p(targets | inputs, z_k) for z (K, B, Z') -> (K, B): K x B sequences decoded together, ``chunk``
    samples per pass (None: as many as keep the logits under ``LOGITS_BUDGET`` floats). ``z`` is whatever
    the decoder reads (a dialogue model's [c, z]); ``words``: the B contexts' words, for a decoder that
    attends to them (:class:`AttentionRNNDecoder`)."""
    k, b, _ = z.shape
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1 samples per pass, got {chunk}")
    if chunk is None:
        per_sample = int((targets != PAD_ID).sum()) * decoder.vocab_size
        chunk = max(1, LOGITS_BUDGET // max(per_sample, 1))
    out = []
    for z_chunk in z.split(chunk, dim=0):  # (k', B, Z')
        n = z_chunk.shape[0]
        condition = z_chunk.reshape(n * b, -1)
        if words is not None:
            condition = WithContext(condition, words.repeat(n))
        nll = sequence_nll(decoder, inputs.repeat(n, 1), targets.repeat(n, 1), condition)
        out.append(-nll.view(n, b))  # sample-major, like z_chunk
    return torch.cat(out, dim=0)  # (K, B)


# ---------------------------------------------------------------------------------------------------
# Encoders: (tokens (B, T), lengths (B,)) -> sentence vector (B, output_dim)


class RNNEncoder(nn.Module):
    """LSTM/GRU over the embedded sentence; the vector is the last layer's final hidden state
    (forward and backward final states concatenated when bidirectional). Packed, so PAD is never read."""

    def __init__(self, *, vocab_size: int, cell: Literal["lstm", "gru"] = "lstm", embed_dim: int = 256,
                 hidden_dim: int = 256, num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)  # He et al. (2019)'s initialisation
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(embed_dim, hidden_dim, num_layers, batch_first=True, bidirectional=bidirectional,
                       dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.num_layers, self.directions, self.hidden_dim = num_layers, 2 if bidirectional else 1, hidden_dim
        self.output_dim = self.directions * hidden_dim

    def forward(self, tokens: Tensor, lengths: Tensor, *, states: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """(B, T) tokens -> (B, directions * H) vectors; with ``states`` also the last layer's output at every
        position, (B, T, directions * H), zeros at PAD."""
        batch_size = tokens.shape[0]
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        if not states and self.directions == 1 and (self.num_layers == 1 or not self.training or self.rnn.dropout == 0):
            # A forward RNN's output at the last real token is its final state over the packed sentence, and a
            # padded batch runs through the fused (oneDNN) kernel, which a packed one cannot use on the CPU: a few
            # PAD steps per length-bucketed batch against per-step matmuls and gradient sums. (Dropout between
            # layers would draw for the PAD positions too, changing the random stream: packed then.)
            outputs, _ = run_rnn(self.rnn, x)  # (B, T, H)
            last = (lengths.to(tokens.device) - 1).view(batch_size, 1, 1).expand(-1, 1, self.hidden_dim)
            return outputs.gather(1, last).squeeze(1)  # (B, H)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, hidden = run_rnn(self.rnn, packed)  # (layers * directions, B, H), back in the input order
        h = hidden[0] if isinstance(hidden, tuple) else hidden  # LSTM: (h, c); keep h
        h = h.view(self.num_layers, self.directions, batch_size, self.hidden_dim)[-1]  # (directions, B, H)
        vector = h.transpose(0, 1).reshape(batch_size, self.output_dim)  # (B, directions * H)
        if not states:
            return vector
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=tokens.shape[1])  # (B, T, D * H)
        return vector, outputs


class Positions(nn.Module):
    """Position embeddings (T, E): learned (GPT) or fixed sinusoids (Vaswani et al. 2017)."""

    def __init__(self, *, max_len: int, dim: int, kind: Literal["learned", "sinusoidal"] = "learned"):
        super().__init__()
        self.max_len = max_len
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        else:
            position = torch.arange(max_len).unsqueeze(1)  # (max_len, 1)
            frequency = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))  # (E/2,)
            table = torch.zeros(max_len, dim)
            table[:, 0::2] = torch.sin(position * frequency)
            table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
            self.register_buffer("table", table, persistent=False)

    def forward(self, start: int, length: int) -> Tensor:
        if start + length > self.max_len:
            raise ValueError(f"position {start + length - 1} is beyond max_len={self.max_len}; build the model "
                             "with a larger max_len or decode shorter sequences")
        return self.table[start:start + length]  # (T, E)


class SelfAttention(nn.Module):
    """Multi-head self-attention with an optional cache of past keys/values (incremental decoding)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim={dim} must be divisible by num_heads={num_heads}")
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.num_heads, self.dropout = num_heads, dropout

    def forward(self, x: Tensor, *, attn_mask: Tensor | None = None, is_causal: bool = False,
                past: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        b, t, e = x.shape
        q, k, v = (u.view(b, t, self.num_heads, e // self.num_heads).transpose(1, 2)
                   for u in self.qkv(x).split(e, dim=-1))  # (B, heads, T, E/heads) each
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, heads, T_past + T, .)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, e)), (k, v)  # (B, T, E)


class TransformerBlock(nn.Module):
    """Pre-LN block (Xiong et al. 2020; GPT-2): x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.ln_attention = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, num_heads, dropout)
        self.ln_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, *, attn_mask: Tensor | None = None, is_causal: bool = False,
                past: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, cache = self.attention(self.ln_attention(x), attn_mask=attn_mask, is_causal=is_causal, past=past)
        x = x + self.dropout(a)
        return x + self.dropout(self.mlp(self.ln_mlp(x))), cache  # (B, T, E)


def _init_transformer(module: nn.Module) -> None:
    """GPT-2 / nanoGPT initialisation: N(0, 0.02) weights, zero biases (keeps tied logits small)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()


class TransformerEncoder(nn.Module):
    """Bidirectional pre-LN Transformer; PAD keys are masked. The vector is the mean over the real tokens
    (``pooling="mean"``) or the output at BOS (``"first"``, BOS acting as BERT's [CLS])."""

    def __init__(self, *, vocab_size: int, embed_dim: int = 256, hidden_dim: int = 1024, num_layers: int = 2,
                 num_heads: int = 4, dropout: float = 0.0, max_len: int = 512,
                 positions: Literal["learned", "sinusoidal"] = "learned", pooling: Literal["mean", "first"] = "mean"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.positions = Positions(max_len=max_len, dim=embed_dim, kind=positions)
        self.blocks = nn.ModuleList(TransformerBlock(embed_dim, num_heads, hidden_dim, dropout)
                                    for _ in range(num_layers))
        self.ln_final = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.pooling = pooling
        self.output_dim = embed_dim
        _init_transformer(self)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        real = tokens != PAD_ID  # (B, T)
        x = self.dropout(self.embedding(tokens) + self.positions(0, tokens.shape[1]))  # (B, T, E)
        attn_mask = real[:, None, None, :]  # (B, 1, 1, T): every query sees the real keys only
        for block in self.blocks:
            x, _ = block(x, attn_mask=attn_mask)
        x = self.ln_final(x)  # (B, T, E)
        if self.pooling == "first":
            return x[:, 0]  # (B, E)
        weights = real.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # (B, E)


def tanh_mlp(input_dim: int, hidden_dim: int, num_hidden: int) -> nn.Sequential:
    """``num_hidden`` tanh layers of ``hidden_dim`` (an empty Sequential for 0): (B, D) -> (B, H)."""
    layers: list[nn.Module] = []
    for i in range(num_hidden):
        layers += [nn.Linear(input_dim if i == 0 else hidden_dim, hidden_dim), nn.Tanh()]
    return nn.Sequential(*layers)


def reset_decoder(decoder: RNNDecoder | TransformerDecoder, encoder_embedding: nn.Embedding | None = None) -> None:
    """Re-initialise a decoder, except an embedding it shares with the encoder (``encoder_embedding``): after
    AE pretraining (Li et al. 2019) the encoder, and so its embedding, is what is kept."""
    shared = encoder_embedding is not None and decoder.embedding is encoder_embedding
    saved = decoder.embedding.weight.detach().clone() if shared else None
    decoder.reset_parameters()
    if saved is not None:
        with torch.no_grad():
            decoder.embedding.weight.copy_(saved)


def keep_legacy_keys(model: nn.Module, renames: dict[str, str]) -> None:
    """Let ``model.load_state_dict`` read weights saved under older parameter names: each key starting with
    an old prefix is renamed to the new one before loading (exports and checkpoints stay loadable when a
    module moves)."""
    def rename(module, state_dict, prefix, *args):
        for key in list(state_dict):
            for old, new in renames.items():
                if key.startswith(prefix + old):
                    state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
                    break

    model._register_load_state_dict_pre_hook(rename, with_module=True)


# ---------------------------------------------------------------------------------------------------
# Dialogue context: (context (B, U, T), its lengths (B, U), turns (B,), floor (B, U)) -> (B, H)


class ContextEncoder(nn.Module):
    """Hierarchical context encoder of HRED (Sordoni et al. 2015; Serban et al. 2016), as in Zhao et al. (2017).

    One utterance encoder (an :class:`RNNEncoder`), shared across turns, reads every context turn into a
    vector; the latent models also encode the response with it (``utterances``). A context RNN reads the
    turn vectors oldest first, each concatenated with a one-hot floor feature (is the turn's speaker the
    responder?); the context vector is the last layer's final state. Padded turns are never read.
    """

    def __init__(self, *, vocab_size: int, cell: Literal["lstm", "gru"] = "gru", embed_dim: int = 200,
                 utterance_dim: int = 300, bidirectional: bool = True, context_dim: int = 600, num_layers: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        self.utterance = RNNEncoder(vocab_size=vocab_size, cell=cell, embed_dim=embed_dim, hidden_dim=utterance_dim,
                                    bidirectional=bidirectional, dropout=dropout)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.context_rnn = rnn(self.utterance.output_dim + 2, context_dim, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.output_dim = context_dim

    def utterances(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Utterances (B, T) BOS .. EOS with lengths (B,) -> vectors (B, H_u)."""
        return self.utterance(tokens, lengths)

    def forward(self, context: Tensor, context_lengths: Tensor, context_turns: Tensor, floor: Tensor, *,
                words: bool = False) -> Tensor | tuple[Tensor, ContextWords]:
        """The context vector (B, H); with ``words`` also the context's words (:class:`ContextWords`) for a
        decoder that attends to them or copies them, from the same pass of the utterance encoder."""
        b, u, t = context.shape
        real = context_lengths > 0  # (B, U); real turns come first in every row
        encoded = self.utterance(context[real], context_lengths[real], states=words)
        vectors = encoded[0] if words else encoded  # (N, H_u), N real turns
        turns = vectors.new_zeros(b, u, vectors.shape[-1])  # (B, U, H_u)
        turns[real] = vectors
        x = torch.cat([self.dropout(turns), F.one_hot(floor.clamp(0, 1), 2).to(turns.dtype)], dim=-1)  # (B, U, H_u + 2)
        packed = pack_padded_sequence(x, context_turns.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = run_rnn(self.context_rnn, packed)  # (layers, B, H), back in the input order
        h = hidden[0] if isinstance(hidden, tuple) else hidden  # LSTM: (h, c); keep h
        c = self.dropout(h[-1])  # (B, H)
        if not words:
            return c
        states = vectors.new_zeros(b, u, t, vectors.shape[-1])  # (B, U, T, H_u)
        states[real] = encoded[1]
        ids = context.reshape(b, u * t)  # (B, L), L = U * T: the turns' words one after another, oldest first
        return c, ContextWords(self.dropout(states.view(b, u * t, -1)), (ids != PAD_ID) & (ids != BOS_ID), ids)


def encode_dialogue_context(batch: DialogueBatch, context_encoder: ContextEncoder, *,
                            topic_embedding: nn.Embedding | None = None, profile_dim: int = 0,
                            words: bool = False) -> tuple[Tensor, ContextWords | None]:
    """What a dialogue model reads of a context: c = [the context encoding, the topic embedding (with
    ``topic_embedding``), the speaker profiles (``profile_dim`` > 0)] (B, C) and, with ``words``, the context's
    words for a decoder that attends to them (else None), from one pass of ``context_encoder``. An unknown topic
    (-1) embeds to zeros; a batch without profiles reads zeros (unknown callers)."""
    encoded = context_encoder(batch.context, batch.context_lengths, batch.context_turns, batch.context_floor,
                              words=words)
    c, context_words = encoded if words else (encoded, None)
    parts, b = [c], batch.context.shape[0]
    if topic_embedding is not None:
        topics = batch.topics if batch.topics is not None else c.new_full((b,), -1, dtype=torch.long)
        parts.append(topic_embedding(topics.clamp_min(0)) * (topics >= 0).unsqueeze(-1))  # (B, topic_dim)
    if profile_dim:
        profiles = batch.profiles
        if profiles is None:
            profiles = c.new_zeros(b, profile_dim)
        elif profiles.shape != (b, profile_dim):
            raise ValueError(f"this model reads {profile_dim} speaker profile features per example, "
                             f"the batch has {tuple(profiles.shape)}")
        parts.append(profiles.to(c.dtype))  # (B, P)
    return (torch.cat(parts, dim=-1) if len(parts) > 1 else c), context_words  # (B, C)


def check_response_request(z_source: str, acts: Tensor | None, num_acts: int, batch_size: int,
                           num_samples: int) -> None:
    """The argument checks every dialogue model's ``response_condition`` makes (clear ValueErrors)."""
    if z_source not in ("prior", "posterior"):
        raise ValueError(f"z_source must be 'prior' or 'posterior', got {z_source!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if acts is None:
        return
    if num_acts == 0:
        raise ValueError("this model is not conditioned on dialog acts (num_acts=0): pass acts=None")
    if acts.shape != (batch_size,):
        raise ValueError(f"acts must be one act id per context, shape ({batch_size},), got {tuple(acts.shape)}")
    if acts.numel() and (int(acts.min()) < 0 or int(acts.max()) >= num_acts):
        raise ValueError(f"act ids must be in [0, {num_acts}), got {acts.tolist()}")


# ---------------------------------------------------------------------------------------------------
# Decoders


class RNNState(NamedTuple):
    hidden: Tensor | tuple[Tensor, Tensor]  # GRU (layers, B, H); LSTM (h, c), each (layers, B, H)
    z: Tensor | None  # (B, Z), kept when z is concatenated to every input or skips to the output


class RNNDecoder(nn.Module):
    """LSTM/GRU language model conditioned on z (Bowman et al. 2016).

    z sets the initial state through ``latent_to_hidden`` (for an LSTM both h_0 and c_0, for every
    layer) and, with ``z_to_every_input``, is also concatenated to every input embedding, as in
    He et al. (2019)'s decoder, which makes z harder to ignore (``every_input_dim``: only z's last
    ``every_input_dim`` entries). ``z_to_output`` adds a linear map of z to every output state before the
    vocabulary projection (the skip connection of Dieng et al. 2019's Skip-VAE), a path from z to every word
    that the recurrence cannot wash out. ``latent_dim=0``: a plain LM, zero state.
    ``tie_embeddings`` shares the input embedding with the output layer (Press & Wolf 2017); when
    ``hidden_dim != embed_dim`` a linear layer first maps the hidden state to the embedding size.
    """

    def __init__(self, *, vocab_size: int, cell: Literal["lstm", "gru"] = "lstm", embed_dim: int = 256,
                 hidden_dim: int = 256, latent_dim: int = 0, num_layers: int = 1, z_to_every_input: bool = False,
                 dropout: float = 0.0, tie_embeddings: bool = False, every_input_dim: int = 0,
                 z_to_output: bool = False):
        super().__init__()
        if (z_to_every_input or z_to_output) and latent_dim == 0:
            raise ValueError("z_to_every_input and z_to_output need a latent (latent_dim > 0)")
        if not 0 <= every_input_dim <= latent_dim or (z_to_every_input and every_input_dim):
            raise ValueError(f"every_input_dim must be in [0, latent_dim={latent_dim}] and is not combined with "
                             f"z_to_every_input, got {every_input_dim}")
        # how many trailing entries of z are concatenated to every input: all of them, or the last
        # every_input_dim (kgCVAE feeds only its dialog-act embedding to every step, Zhao et al. 2017)
        self.every_input_dim = latent_dim if z_to_every_input else every_input_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(embed_dim + self.every_input_dim, hidden_dim, num_layers,
                       batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.is_lstm = cell == "lstm"
        self.num_layers, self.hidden_dim, self.latent_dim = num_layers, hidden_dim, latent_dim
        self.z_to_every_input = z_to_every_input
        parts = 2 if self.is_lstm else 1
        self.latent_to_hidden = nn.Linear(latent_dim, parts * num_layers * hidden_dim) if latent_dim else None
        self.latent_to_output = nn.Linear(latent_dim, hidden_dim) if z_to_output else None
        self.to_embed = nn.Linear(hidden_dim, embed_dim) if tie_embeddings and hidden_dim != embed_dim else None
        self.output = VocabularyProjection(embed_dim if tie_embeddings else hidden_dim, vocab_size)
        if tie_embeddings:
            self.output.weight = self.embedding.weight
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        """A fresh initialisation, as at construction (AE pretraining resets the decoder, Li et al. 2019)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()

    def _check_z(self, z: Tensor | None) -> None:
        if (z is None) != (self.latent_to_hidden is None):
            raise ValueError("this decoder needs z (B, Z)" if z is None else "this decoder has no latent: pass z=None")

    def _initial_hidden(self, z: Tensor | None, batch_size: int, like: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        parts = 2 if self.is_lstm else 1
        if self.latent_to_hidden is None:
            h = like.new_zeros(parts, self.num_layers, batch_size, self.hidden_dim)
        else:  # (B, parts * layers * H) -> (parts, layers, B, H)
            h = self.latent_to_hidden(z).view(-1, parts, self.num_layers, self.hidden_dim).permute(1, 2, 0, 3)
        return (h[0].contiguous(), h[1].contiguous()) if self.is_lstm else h[0].contiguous()

    def _embed(self, tokens: Tensor, z: Tensor | None) -> Tensor:
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        if self.every_input_dim:
            every = z[:, z.shape[1] - self.every_input_dim:]  # (B, Z'), Z' = every_input_dim (all of z by default)
            x = torch.cat([x, every.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=-1)  # (B, T, E + Z')
        return x

    def _out(self, h: Tensor, z: Tensor | None = None) -> Tensor:
        """RNN outputs (B, [T,] H) -> the output layer's input; ``z`` (B, Z) for the skip connection."""
        if self.latent_to_output is not None:
            skip = self.latent_to_output(z)  # (B, H)
            h = h + (skip.unsqueeze(1) if h.dim() == 3 else skip)
        h = self.dropout(h)
        return self.to_embed(h) if self.to_embed is not None else h

    def features(self, inputs: Tensor, z: Tensor | None) -> Tensor:
        """(B, T) decoder inputs -> (B, T, H) states before the output layer."""
        self._check_z(z)
        x = self._embed(inputs, z)
        out, _ = run_rnn(self.rnn, x, self._initial_hidden(z, inputs.shape[0], x))  # (B, T, H)
        return self._out(out, z)

    @property
    def vocab_size(self) -> int:
        return self.output.out_features

    def project(self, h: Tensor) -> Tensor:
        return self.output(h)  # (..., V)

    def softmax_logits(self, h: Tensor) -> Tensor:
        """:meth:`project` for a loss: (..., V' >= V), columns past V at -inf (see VocabularyProjection)."""
        return self.output.softmax_logits(h)

    def masked_logits(self, inputs: Tensor, z: Tensor | None, mask: Tensor) -> Tensor:
        """Teacher forcing, projected to the vocabulary only where ``mask`` (B, T) is True: (N, V)."""
        return self.project(self.features(inputs, z)[mask])

    def forward(self, inputs: Tensor, z: Tensor | None) -> Tensor:
        return self.project(self.features(inputs, z))  # (B, T, V)

    def start(self, z: Tensor | None, batch_size: int | None = None) -> RNNState:
        self._check_z(z)
        batch_size = z.shape[0] if z is not None else batch_size
        if batch_size is None:
            raise ValueError("start(z=None) needs batch_size")
        like = z if z is not None else self.output.weight
        keep_z = self.every_input_dim or self.latent_to_output is not None
        return RNNState(self._initial_hidden(z, batch_size, like), z if keep_z else None)

    def step(self, tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        x = self._embed(tokens.unsqueeze(1), state.z)  # (B, 1, E [+ Z])
        out, hidden = run_rnn(self.rnn, x, state.hidden)  # (B, 1, H)
        return self.project(self._out(out[:, 0], state.z)), RNNState(hidden, state.z)  # (B, V)

    def reorder(self, state: RNNState, index: Tensor) -> RNNState:
        hidden = (tuple(h.index_select(1, index) for h in state.hidden) if isinstance(state.hidden, tuple)
                  else state.hidden.index_select(1, index))
        return RNNState(hidden, None if state.z is None else state.z.index_select(0, index))


class AttentionState(NamedTuple):
    hidden: Tensor | tuple[Tensor, Tensor]  # as RNNState
    z: Tensor | None  # (B, Z), kept when z is concatenated to every input
    words: ContextWords  # what every step attends to


class AttentionRNNDecoder(RNNDecoder):
    """:class:`RNNDecoder` that attends to the dialogue context's words and, with ``copy``, copies them.

    Attention (Luong et al. 2015, "general" scores, no input feeding, so teacher forcing stays one RNN
    pass): at step t the RNN state h_t scores each context word's encoder state m_j by (W_a h_t) . m_j;
    a_t = softmax over the words that may be attended; the output is W_o tanh(W_c [h_t; sum_j a_tj m_j]).
    Copying (See et al. 2017, pointer-generator, on the model's own vocabulary): p_gen = sigmoid(w [h_t;
    ctx_t; x_t]) with x_t the input embedding, and p(w) = p_gen softmax(W_o ...)(w) + (1 - p_gen) sum of
    a_tj over the context words j whose id is w; a word outside the vocabulary is copied as <unk>, as it
    reads. With ``copy`` the decoder returns log-probabilities where other decoders return logits: both are
    normalised by a softmax alike, so NLL, sampling, temperature and beam search read them unchanged.

    It decodes from a :class:`WithContext` condition: the vector an :class:`RNNDecoder` would read as z
    (``latent_dim`` its size) and the context's words (``memory_dim`` the size of their states).
    """

    def __init__(self, *, memory_dim: int, copy: bool = False, **kwargs):
        super().__init__(**kwargs)
        if memory_dim < 1:
            raise ValueError(f"memory_dim must be >= 1, got {memory_dim}")
        if self.latent_to_output is not None:
            raise ValueError("z_to_output is for the plain RNN decoder, not the attending one")
        h = self.hidden_dim
        self.attention_query = nn.Linear(h, memory_dim, bias=False)
        self.attention_out = nn.Linear(h + memory_dim, h)
        self.copy_gate = nn.Linear(h + memory_dim + self.embedding.embedding_dim, 1) if copy else None

    def _check_words(self, condition) -> tuple[Tensor, ContextWords]:
        if not isinstance(condition, WithContext):
            raise ValueError("this decoder attends to the context's words: pass a WithContext condition")
        return condition.vector, condition.words

    def _attend(self, h: Tensor, words: ContextWords) -> tuple[Tensor, Tensor, Tensor]:
        """h (B, T, H) -> the attended output (B, T, H), the attention (B, T, L) and the attended states (B, T, M)."""
        scores = torch.einsum("btm,blm->btl", self.attention_query(h), words.states)  # (B, T, L)
        scores = scores.float().masked_fill(~words.mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, L)
        context = torch.einsum("btl,blm->btm", weights.to(words.states.dtype), words.states)  # (B, T, M)
        out = torch.tanh(self.attention_out(torch.cat([h, context], dim=-1)))  # (B, T, H)
        return out, weights, context

    def _outputs(self, h: Tensor, x: Tensor, words: ContextWords, mask: Tensor | None = None) -> Tensor:
        """RNN outputs h (B, T, H) and the input embeddings x (B, T, E) -> logits or, with copying,
        log-probabilities: (B, T, V), or (N, V) at the N positions where ``mask`` (B, T) is True (only those are
        projected to the vocabulary)."""
        out, weights, context = self._attend(h, words)  # (B, T, H), (B, T, L), (B, T, M)
        ids = words.ids.unsqueeze(1).expand(-1, h.shape[1], -1)  # (B, T, L): what each attended word copies
        if mask is not None:
            out, weights, context, h, x, ids = (t[mask] for t in (out, weights, context, h, x, ids))
        logits = self.project(self._out(out))  # (..., V)
        if self.copy_gate is None:
            return logits
        gate = torch.sigmoid(self.copy_gate(torch.cat([h, context, x], dim=-1)).float())  # (..., 1)
        copied = logits.new_zeros(logits.shape, dtype=torch.float32).scatter_add_(-1, ids, weights)  # (..., V)
        probs = gate * torch.softmax(logits.float(), dim=-1) + (1 - gate) * copied
        return torch.log(probs.clamp_min(1e-30))  # the clamp keeps log(0) out of the gradient

    def _teacher_forced(self, inputs: Tensor, z, mask: Tensor | None) -> Tensor:
        vector, words = self._check_words(z)
        x = self._embed(inputs, vector)  # (B, T, E [+ Z'])
        h, _ = run_rnn(self.rnn, x, self._initial_hidden(vector, inputs.shape[0], x))  # (B, T, H)
        return self._outputs(h, x[..., :self.embedding.embedding_dim], words, mask)

    def features(self, inputs: Tensor, z) -> Tensor:
        raise NotImplementedError("AttentionRNNDecoder projects with the context's words: use masked_logits")

    def masked_logits(self, inputs: Tensor, z, mask: Tensor) -> Tensor:
        return self._teacher_forced(inputs, z, mask)  # (N, V)

    def forward(self, inputs: Tensor, z) -> Tensor:
        return self._teacher_forced(inputs, z, None)  # (B, T, V)

    def start(self, z, batch_size: int | None = None) -> AttentionState:
        vector, words = self._check_words(z)
        state = super().start(vector)
        return AttentionState(state.hidden, state.z, words)

    def step(self, tokens: Tensor, state: AttentionState) -> tuple[Tensor, AttentionState]:
        x = self._embed(tokens.unsqueeze(1), state.z)  # (B, 1, E [+ Z])
        h, hidden = run_rnn(self.rnn, x, state.hidden)  # (B, 1, H)
        out = self._outputs(h, x[..., :self.embedding.embedding_dim], state.words)[:, 0]  # (B, V)
        return out, AttentionState(hidden, state.z, state.words)

    def reorder(self, state: AttentionState, index: Tensor) -> AttentionState:
        rnn = super().reorder(RNNState(state.hidden, state.z), index)
        return AttentionState(rnn.hidden, rnn.z, state.words.index_select(index))


def dialogue_decoder(*, attention: bool, copy: bool, memory_dim: int, **kwargs) -> RNNDecoder:
    """A dialogue model's decoder: an :class:`RNNDecoder`, or with ``attention`` an :class:`AttentionRNNDecoder`
    over context word states of size ``memory_dim`` (``copy``: with the pointer-generator's copying)."""
    if copy and not attention:
        raise ValueError("copy needs attention: the copy distribution is the attention over the context's words")
    if not attention:
        return RNNDecoder(**kwargs)
    return AttentionRNNDecoder(memory_dim=memory_dim, copy=copy, **kwargs)


class TransformerState(NamedTuple):
    cache: list[tuple[Tensor, Tensor]]  # per layer (keys, values), each (B, heads, t, E/heads)
    position: int  # index of the next input token
    latent: Tensor | None  # (B, E) projected z added to every input embedding


class TransformerDecoder(nn.Module):
    """Causal pre-LN Transformer (GPT-2 style) conditioned on z by adding ``latent_to_embedding(z)`` to every
    input embedding (Li et al. 2020, Optimus, "embedding" injection).

    Why not z as a one-token memory for cross-attention: softmax over a single key always gives weight 1,
    so cross-attention to one slot collapses to adding a per-layer linear function of z to the residual
    stream, while paying for query/key projections that can learn nothing. Adding z at the input
    conditions every position from the first layer on, keeps the decoder the same causal self-attention
    stack as the language model (``latent_dim=0``), and keeps the incremental-decoding cache to
    self-attention keys and values. ``hidden_dim`` is the feed-forward width; the model width is ``embed_dim``.
    """

    def __init__(self, *, vocab_size: int, embed_dim: int = 256, hidden_dim: int = 1024, latent_dim: int = 0,
                 num_layers: int = 2, num_heads: int = 4, dropout: float = 0.0, max_len: int = 512,
                 positions: Literal["learned", "sinusoidal"] = "learned", tie_embeddings: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.positions = Positions(max_len=max_len, dim=embed_dim, kind=positions)
        self.latent_to_embedding = nn.Linear(latent_dim, embed_dim) if latent_dim else None
        self.blocks = nn.ModuleList(TransformerBlock(embed_dim, num_heads, hidden_dim, dropout)
                                    for _ in range(num_layers))
        self.ln_final = nn.LayerNorm(embed_dim)
        self.output = VocabularyProjection(embed_dim, vocab_size)
        self.dropout = nn.Dropout(dropout)
        self.latent_dim = latent_dim
        _init_transformer(self)
        if tie_embeddings:
            self.output.weight = self.embedding.weight

    def reset_parameters(self) -> None:
        """A fresh initialisation, as at construction (AE pretraining resets the decoder, Li et al. 2019)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        _init_transformer(self)

    def _latent(self, z: Tensor | None) -> Tensor | None:
        if (z is None) != (self.latent_to_embedding is None):
            raise ValueError("this decoder needs z (B, Z)" if z is None else "this decoder has no latent: pass z=None")
        return None if z is None else self.latent_to_embedding(z)  # (B, E)

    def _embed(self, tokens: Tensor, start: int, latent: Tensor | None) -> Tensor:
        x = self.embedding(tokens) + self.positions(start, tokens.shape[1])  # (B, T, E)
        if latent is not None:
            x = x + latent.unsqueeze(1)
        return self.dropout(x)

    def features(self, inputs: Tensor, z: Tensor | None) -> Tensor:
        """(B, T) decoder inputs -> (B, T, E) final-layer states. Right padding needs no mask:
        causal attention never lets a real position see the PAD after it."""
        x = self._embed(inputs, 0, self._latent(z))
        for block in self.blocks:
            x, _ = block(x, is_causal=True)
        return self.ln_final(x)

    @property
    def vocab_size(self) -> int:
        return self.output.out_features

    def project(self, h: Tensor) -> Tensor:
        return self.output(h)  # (..., V)

    def softmax_logits(self, h: Tensor) -> Tensor:
        """:meth:`project` for a loss: (..., V' >= V), columns past V at -inf (see VocabularyProjection)."""
        return self.output.softmax_logits(h)

    def masked_logits(self, inputs: Tensor, z: Tensor | None, mask: Tensor) -> Tensor:
        """Teacher forcing, projected to the vocabulary only where ``mask`` (B, T) is True: (N, V)."""
        return self.project(self.features(inputs, z)[mask])

    def forward(self, inputs: Tensor, z: Tensor | None) -> Tensor:
        return self.project(self.features(inputs, z))  # (B, T, V)

    def start(self, z: Tensor | None, batch_size: int | None = None) -> TransformerState:
        latent = self._latent(z)
        batch_size = z.shape[0] if z is not None else batch_size
        if batch_size is None:
            raise ValueError("start(z=None) needs batch_size")
        heads = self.blocks[0].attention.num_heads if self.blocks else 1
        empty = self.output.weight.new_zeros(batch_size, heads, 0, self.embedding.embedding_dim // heads)
        return TransformerState([(empty, empty) for _ in self.blocks], 0, latent)

    def step(self, tokens: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        x = self._embed(tokens.unsqueeze(1), state.position, state.latent)  # (B, 1, E)
        cache = []
        for block, past in zip(self.blocks, state.cache, strict=True):
            x, kv = block(x, past=past)
            cache.append(kv)
        logits = self.project(self.ln_final(x[:, 0]))  # (B, V)
        return logits, TransformerState(cache, state.position + 1, state.latent)

    def reorder(self, state: TransformerState, index: Tensor) -> TransformerState:
        cache = [(k.index_select(0, index), v.index_select(0, index)) for k, v in state.cache]
        latent = None if state.latent is None else state.latent.index_select(0, index)
        return TransformerState(cache, state.position, latent)


DecoderState = RNNState | AttentionState | TransformerState
