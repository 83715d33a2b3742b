"""Responses from a :class:`~textvae.models.DialogueModel`: N per context, batched over contexts and samples.

What ``textvae-respond`` and the dialogue evaluation share. A model offers ``response_condition`` (the
context encoded, N latents drawn per context, kgCVAE's act chosen) and step-wise decoding from that
condition, so any :mod:`textvae.decoding` method decodes all N x B responses in one call.

Default decoding, as the papers generate: a latent model (VHRED, CVAE, kgCVAE) decodes each sampled z
**greedily** (the diversity comes from z, Zhao et al. 2017); HRED, which has no z, **samples** its words at
temperature 1 (Serban et al. 2016). Options override it. Responses never contain <unk> unless
``allow_unk``: the decoder's <unk> stands for every rare word at once, so saying it tells the user
nothing and repeats the same bigrams across responses (with it allowed, <unk> also matches the
reference's <unk> in BLEU, a match of no word).

Notation: B contexts, N samples per context, U context turns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from textvae.data.batching import DialogueBatch
from textvae.data.tokenizers import UNK_ID
from textvae.decoding import generate
from textvae.models import DialogueModel

Method = Literal["greedy", "beam", "sample"]


def default_method(model: DialogueModel) -> Method:
    """Greedy per sampled z for a latent model, word sampling for HRED (see the module doc)."""
    return "greedy" if model.latent_dim > 0 else "sample"


def describe_method(model: DialogueModel, method: Method, options: Mapping[str, Any] | None = None) -> str:
    """E.g. "greedy per sampled z", "sample (T 0.7, top-p 0.9)", "beam per sampled z (beam 5, <unk> allowed)";
    ``options`` as given to :func:`generate_responses` (others ignored)."""
    options = options or {}
    details = []
    if method == "sample":
        details.append(f"T {options.get('temperature', 1.0):g}")
        details += [f"top-k {options['top_k']}"] if options.get("top_k") else []
        details += [f"top-p {options['top_p']:g}"] if options.get("top_p", 1.0) < 1 else []
    if method == "beam":
        details.append(f"beam {options.get('beam_size', 5)}")
    if options.get("allow_unk"):
        details.append("<unk> allowed")
    text = f"{method} per sampled z" if model.latent_dim > 0 else method
    return f"{text} ({', '.join(details)})" if details else text


def responder_floor(speakers: Sequence[str]) -> list[int]:
    """Two-party floor of a context: 1 for the turns of the responder, who is whoever did *not* speak the
    last turn (so a one-turn context is all 0)."""
    return [int(s != speakers[-1]) for s in speakers]


class Responses(NamedTuple):
    ids: list[list[list[int]]]  # [b][s] token ids of sample s for context b, without BOS/EOS
    acts: list[list[int]] | None  # [b][s] act id the decoder was conditioned on (kgCVAE), else None


@torch.no_grad()
def generate_responses(model: DialogueModel, batch: DialogueBatch, *, num_samples: int, method: Method,
                       max_len: int, z_source: Literal["prior", "posterior"] = "prior", acts: Tensor | None = None,
                       generator: torch.Generator | None = None, beam_size: int = 5, temperature: float = 1.0,
                       top_k: int = 0, top_p: float = 1.0, allow_unk: bool = False) -> Responses:
    """``num_samples`` responses to each context of ``batch`` (already on the model's device), all N x B
    decoded together. ``acts`` (B,) forces kgCVAE's act; ``generator`` (on the model's device) draws the
    latents and the sampled words; <unk> is never generated unless ``allow_unk``. The model is in eval
    mode for the call."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    was_training = model.training
    model.eval()
    try:
        condition = model.response_condition(batch, num_samples=num_samples, z_source=z_source, acts=acts,
                                             generator=generator)
        ids = generate(model, condition.condition, method, max_len=max_len, beam_size=beam_size,
                       temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
                       banned=() if allow_unk else (UNK_ID,))  # N * B, sample-major
    finally:
        model.train(was_training)
    b = batch.context.shape[0]
    per_context = [[ids[s * b + i] for s in range(num_samples)] for i in range(b)]
    act_ids = None
    if condition.acts is not None:
        act_ids = condition.acts.view(num_samples, b).T.tolist()  # (B, N)
    return Responses(ids=per_context, acts=act_ids)
