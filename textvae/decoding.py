"""Batched decoding from any :class:`~textvae.models.TextModel`: greedy, sampling (temperature, top-k,
nucleus) and beam search.

Everything goes through ``decoder_start(z, batch_size)``, ``decoder_step(tokens, state)`` and
``decoder_reorder(state, index)``, so one implementation serves every model: pass ``z`` (B, Z) for a
latent-variable model, or ``z=None`` and ``batch_size`` for a language model.

Each function returns one list of ids per row, without BOS and cut before EOS; ``max_len`` bounds the
generated tokens (EOS included), so a row that never ends has ``max_len`` ids. Rows that have finished
are fed PAD and ignored while the others continue. PAD and BOS are never generated, nor the ids in
``banned`` (e.g. ``(UNK_ID,)``: a response should not say "<unk>"). The model is put in eval mode for
the call (dropout off) and restored after. :class:`Decoding` holds a method and its options, with their
defaults written once; :func:`generate` decodes with one. Notation: B batch, V vocab, Z latent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from textvae.models import TextModel

NEVER_GENERATED = (PAD_ID, BOS_ID)
Method = Literal["greedy", "beam", "sample"]
# Sampling temperatures that stay sane in float32: logits / T must neither overflow (T -> 0; below 1e-3 sampling
# is greedy anyway) nor turn -inf into NaN (T beyond float32's range); above 100 every token is equally likely.
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 100.0
LOGIT_COPIES = 8  # (rows, V) float tensors a decoding step holds at its peak (masking, sorting, softmax)


def _whole(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True)
class Decoding:
    """A decoding method and its options: what the tools' decoding flags build, and what :func:`generate`
    and :func:`textvae.dialogue.generate_responses` take. Options of the other methods are ignored.

    ``max_len`` bounds the generated tokens, EOS included; <unk> is never generated unless ``allow_unk``.
    ``prior_scale`` multiplies the standard deviation of a latent dialogue model's prior network when z is
    drawn for generation (a "z temperature"); a sentence model's z comes from the caller, so it ignores it.
    """

    method: Method
    temperature: float = 1.0  # sample: softmax(logits / temperature)
    top_k: int = 0  # sample among the top_k most likely tokens; 0: all
    top_p: float = 1.0  # sample within the nucleus of probability top_p (Holtzman et al. 2020); 1: all
    beam_size: int = 5
    max_len: int = 50
    allow_unk: bool = False
    prior_scale: float = 1.0

    def __post_init__(self):
        if self.method not in get_args(Method):
            raise ValueError(f"method must be 'greedy', 'beam' or 'sample', got {self.method!r}")
        if not MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE:  # NaN fails too
            raise ValueError(f"temperature must be in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}] (use greedy for "
                             f"the limit 0), got {self.temperature}")
        if not _whole(self.top_k, 0):
            raise ValueError(f"top_k must be an integer >= 0, got {self.top_k!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not _whole(self.beam_size, 1):
            raise ValueError(f"beam_size must be an integer >= 1, got {self.beam_size!r}")
        if not _whole(self.max_len, 1):
            raise ValueError(f"max_len must be an integer >= 1, got {self.max_len!r}")
        if not isinstance(self.allow_unk, bool):
            raise ValueError(f"allow_unk must be true or false, got {self.allow_unk!r}")
        if not 0.0 < self.prior_scale < float("inf"):
            raise ValueError(f"prior_scale must be a finite number > 0, got {self.prior_scale}")


def decoding_bytes(rows: int, decoding: Decoding, vocab_size: int) -> int:
    """A generous estimate of the memory one :func:`generate` call over ``rows`` sequences holds at its peak:
    each step's logits and their working copies, and the generated ids, for every beam. What the tools
    compare with the device's memory before they start, so an impossible request fails at once."""
    width = rows * (decoding.beam_size if decoding.method == "beam" else 1)
    return width * (LOGIT_COPIES * vocab_size * 4 + 3 * decoding.max_len * 8)


@contextmanager
def _evaluating(model: TextModel) -> Iterator[None]:
    was_training = model.training if isinstance(model, nn.Module) else False
    if isinstance(model, nn.Module):
        model.eval()
    try:
        yield
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)


def _setup(model: TextModel, z: Tensor | None, batch_size: int | None, max_len: int):
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if z is not None:
        if batch_size is not None and batch_size != z.shape[0]:
            raise ValueError(f"batch_size={batch_size} disagrees with z of shape {tuple(z.shape)}")
        batch_size, device = z.shape[0], z.device
    elif batch_size is None:
        raise ValueError("decoding without z (a language model) needs batch_size")
    else:
        device = next(model.parameters()).device
    state = model.decoder_start(z, batch_size)
    return state, batch_size, device


def _never_generated(banned: Sequence[int]) -> list[int]:
    """PAD, BOS and the ``banned`` ids: the tokens a decoding call masks at every step."""
    if EOS_ID in banned:
        raise ValueError("EOS cannot be banned: the output could never end")
    return [*NEVER_GENERATED, *banned]


def _allowed(logits: Tensor, never: list[int]) -> Tensor:
    logits = logits.float().clone()  # (B, V)
    logits[:, never] = float("-inf")
    return logits


def _to_lists(tokens: Tensor) -> list[list[int]]:
    """(B, L) generated ids, PAD after EOS -> lists cut before EOS."""
    out = []
    for row in tokens.tolist():
        ids = row[: row.index(EOS_ID)] if EOS_ID in row else row
        out.append([i for i in ids if i != PAD_ID])
    return out


def filter_logits(logits: Tensor, *, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Set to -inf every logit outside the top ``top_k`` (0: no limit) and outside the nucleus: the
    smallest set of most likely tokens whose probability reaches ``top_p`` (Holtzman et al. 2020).
    (B, V) -> (B, V); the most likely token always survives."""
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely tokens
        drop_sorted = mass_before >= top_p  # the nucleus already reached top_p without this token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _decode(model: TextModel, z: Tensor | None, max_len: int, batch_size: int | None, choose,
            banned: Sequence[int]) -> list[list[int]]:
    """The loop greedy and sampling share: ``choose(logits (B, V)) -> tokens (B,)``."""
    never = _never_generated(banned)
    state, n, device = _setup(model, z, batch_size, max_len)
    tokens = torch.full((n, max_len), PAD_ID, dtype=torch.long, device=device)  # (B, max_len)
    last = torch.full((n,), BOS_ID, dtype=torch.long, device=device)  # (B,)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    for t in range(max_len):
        logits, state = model.decoder_step(last, state)  # (B, V)
        chosen = choose(_allowed(logits, never))  # (B,)
        last = chosen.masked_fill(finished, PAD_ID)
        tokens[:, t] = last
        finished |= last == EOS_ID
        if bool(finished.all()):
            break
    return _to_lists(tokens)


@torch.no_grad()
def greedy(model: TextModel, z: Tensor | None, max_len: int, *, batch_size: int | None = None,
           banned: Sequence[int] = ()) -> list[list[int]]:
    """The most likely next token at every step."""
    with _evaluating(model):
        return _decode(model, z, max_len, batch_size, lambda logits: logits.argmax(dim=-1), banned)


@torch.no_grad()
def sample(model: TextModel, z: Tensor | None, max_len: int, *, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0, generator: torch.Generator | None = None,
           batch_size: int | None = None, banned: Sequence[int] = ()) -> list[list[int]]:
    """Ancestral sampling from softmax(logits / temperature), restricted by ``top_k`` and ``top_p``
    (see :func:`filter_logits`). Reproducible given a seeded ``generator`` on the model's device."""
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
        raise ValueError(f"temperature must be in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}] (use greedy for the "
                         f"limit 0), got {temperature}")

    def choose(logits: Tensor) -> Tensor:
        probs = filter_logits(logits / temperature, top_k=top_k, top_p=top_p).softmax(dim=-1)  # (B, V)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)

    with _evaluating(model):
        return _decode(model, z, max_len, batch_size, choose, banned)


@torch.no_grad()
def beam_search(model: TextModel, z: Tensor | None, max_len: int, *, beam_size: int = 5,
                length_penalty: float = 1.0, batch_size: int | None = None,
                banned: Sequence[int] = ()) -> list[list[int]]:
    """Beam search, all rows and beams in one batch of B * beam_size decoder states.

    A beam that emits EOS stays in the beam with its score frozen (it can only continue with PAD at
    cost 0). At the end each row returns the hypothesis with the best ``log p / length ** length_penalty``
    (length counts EOS): 0 ranks by total log-probability (favours short outputs), 1 by per-token mean.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    never = _never_generated(banned)
    with _evaluating(model):
        state, n, device = _setup(model, z, batch_size, max_len)
        rows = torch.arange(n, device=device)
        state = model.decoder_reorder(state, rows.repeat_interleave(beam_size))  # B * beam states
        scores = torch.zeros(n, beam_size, device=device)  # (B, beam) log p of each hypothesis
        scores[:, 1:] = float("-inf")  # all beams start identical: keep one alive
        tokens = torch.full((n, beam_size, max_len), PAD_ID, dtype=torch.long, device=device)
        lengths = torch.zeros(n, beam_size, dtype=torch.long, device=device)
        finished = torch.zeros(n, beam_size, dtype=torch.bool, device=device)
        last = torch.full((n * beam_size,), BOS_ID, dtype=torch.long, device=device)
        for t in range(max_len):
            logits, state = model.decoder_step(last, state)  # (B * beam, V)
            vocab = logits.shape[-1]
            logp = _allowed(logits, never).log_softmax(dim=-1).view(n, beam_size, vocab)  # (B, beam, V)
            pad_only = torch.full((vocab,), float("-inf"), device=device)
            pad_only[PAD_ID] = 0.0
            logp = torch.where(finished.unsqueeze(-1), pad_only, logp)
            candidates = (scores.unsqueeze(-1) + logp).view(n, beam_size * vocab)  # (B, beam * V)
            scores, flat = candidates.topk(beam_size, dim=-1)  # (B, beam)
            origin, token = flat // vocab, flat % vocab  # parent beam and new token, (B, beam)
            tokens = tokens.gather(1, origin.unsqueeze(-1).expand(-1, -1, max_len))
            tokens[:, :, t] = token
            was_finished = finished.gather(1, origin)
            lengths = lengths.gather(1, origin) + (~was_finished).long()
            finished = was_finished | (token == EOS_ID)
            state = model.decoder_reorder(state, (rows.unsqueeze(1) * beam_size + origin).view(-1))
            last = token.view(-1)
            if bool(finished.all()):
                break
        normalized = scores / lengths.clamp_min(1).float() ** length_penalty  # (B, beam)
        best = normalized.argmax(dim=-1)  # (B,)
        return _to_lists(tokens[rows, best])


def generate(model: TextModel, z: Tensor | None, decoding: Decoding, *, batch_size: int | None = None,
             generator: torch.Generator | None = None) -> list[list[int]]:
    """Decode with ``decoding``: :func:`greedy`, :func:`beam_search` or :func:`sample` with its options, <unk>
    banned unless it allows it. ``generator`` draws the sampled words."""
    banned = () if decoding.allow_unk else (UNK_ID,)
    if decoding.method == "greedy":
        return greedy(model, z, decoding.max_len, batch_size=batch_size, banned=banned)
    if decoding.method == "beam":
        return beam_search(model, z, decoding.max_len, beam_size=decoding.beam_size, batch_size=batch_size,
                           banned=banned)
    return sample(model, z, decoding.max_len, temperature=decoding.temperature, top_k=decoding.top_k,
                  top_p=decoding.top_p, generator=generator, batch_size=batch_size, banned=banned)
