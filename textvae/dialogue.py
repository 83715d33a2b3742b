"""Responses from a :class:`~textvae.models.DialogueModel`: N per context, batched over contexts and samples.

What ``textvae-respond`` and the dialogue evaluation share. A model offers ``response_condition`` (the
context encoded, N latents drawn per context, kgCVAE's act chosen) and step-wise decoding from that
condition, so any :mod:`textvae.decoding` method decodes all N x B responses in one call.

Default decoding, as the papers generate: a latent model (VHRED, CVAE, kgCVAE) decodes each sampled z
**greedily** (the diversity comes from z, Zhao et al. 2017); HRED, which has no z, **samples** its words at
temperature 1 (Serban et al. 2016); a :class:`~textvae.decoding.Decoding` overrides it. Responses never
contain <unk> unless it has ``allow_unk``: the decoder's <unk> stands for every rare word at once, so
saying it tells the user nothing and repeats the same bigrams across responses (with it allowed, <unk>
also matches the reference's <unk> in BLEU, a match of no word).

Notation: B contexts, N samples per context, U context turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from textvae.data.batching import DialogueBatch
from textvae.decoding import Decoding, Method, generate
from textvae.models import DialogueModel


def default_method(model: DialogueModel) -> Method:
    """Greedy per sampled z for a latent model, word sampling for HRED (see the module doc)."""
    return "greedy" if model.latent_dim > 0 else "sample"


def default_decoding(model: DialogueModel) -> Decoding:
    """The model's :func:`default_method` with every option at its default."""
    return Decoding(default_method(model))


def describe_method(model: DialogueModel, decoding: Decoding) -> str:
    """How the responses are decoded, e.g. "greedy per sampled z", "sample (T 0.7, top-p 0.9)", "beam per sampled
    z (beam 5, <unk> allowed)", "sample per sampled z (T 0.5), prior x0.5" (z drawn with the prior's standard
    deviation halved); the options of the other methods are not named."""
    details = []
    if decoding.method == "sample":
        details.append(f"T {decoding.temperature:g}")
        details += [f"top-k {decoding.top_k}"] if decoding.top_k else []
        details += [f"top-p {decoding.top_p:g}"] if decoding.top_p < 1 else []
    if decoding.method == "beam":
        details.append(f"beam {decoding.beam_size}")
    if decoding.allow_unk:
        details.append("<unk> allowed")
    text = f"{decoding.method} per sampled z" if model.latent_dim > 0 else decoding.method
    text = f"{text} ({', '.join(details)})" if details else text
    return text + (f", prior x{decoding.prior_scale:g}" if decoding.prior_scale != 1.0 else "")


def responder_floor(speakers: Sequence[str]) -> list[int]:
    """Two-party floor of a context: 1 for the turns of the responder, who is whoever did *not* speak the
    last turn (so a one-turn context is all 0)."""
    return [int(s != speakers[-1]) for s in speakers]


class Responses(NamedTuple):
    ids: list[list[list[int]]]  # [b][s] token ids of sample s for context b, without BOS/EOS
    acts: list[list[int]] | None  # [b][s] act id the decoder was conditioned on (kgCVAE), else None


@torch.no_grad()
def generate_responses(model: DialogueModel, batch: DialogueBatch, *, num_samples: int,
                       decoding: Decoding | None = None, z_source: Literal["prior", "posterior"] = "prior",
                       acts: Tensor | None = None, generator: torch.Generator | None = None) -> Responses:
    """``num_samples`` responses to each context of ``batch`` (already on the model's device), all N x B
    decoded together with ``decoding`` (None: :func:`default_decoding`); its ``prior_scale`` widens the prior
    that z is drawn from. ``acts`` (B,) forces kgCVAE's act; ``generator`` (on the model's device) draws the
    latents and the sampled words. The model is in eval mode for the call."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if decoding is None:
        decoding = default_decoding(model)
    was_training = model.training
    model.eval()
    try:
        condition = model.response_condition(batch, num_samples=num_samples, z_source=z_source, acts=acts,
                                             generator=generator, prior_scale=decoding.prior_scale)
        ids = generate(model, condition.condition, decoding, generator=generator)  # N * B, sample-major
    finally:
        model.train(was_training)
    b = batch.context.shape[0]
    per_context = [[ids[s * b + i] for s in range(num_samples)] for i in range(b)]
    act_ids = None
    if condition.acts is not None:
        act_ids = condition.acts.view(num_samples, b).T.tolist()  # (B, N)
    return Responses(ids=per_context, acts=act_ids)
