"""Working in a model's latent space: encode texts to posterior means, decode points, interpolate between
two sentences (Bowman et al. 2016, section 5, "homotopies"), and project codes to 2-D for a plot.

These are what ``textvae-sample`` and ``textvae-homotopy`` run; they need a latent-variable model
(``latent_dim > 0``, with ``encode`` and ``sample_prior``), and raise ``ValueError`` for a language model.

Notation: N sentences, B batch, Z latent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from textvae.data.batching import SentenceExample, collate_sentences
from textvae.data.tokenizers import UNK_ID, Tokenizer
from textvae.decoding import Decoding, generate
from textvae.models import SentenceLatentModel, TextModel
from textvae.objectives import lerp, slerp


def require_latent(model: TextModel, what: str) -> None:
    """ValueError (a one-line message for the user) unless ``model`` has a latent space."""
    if getattr(model, "latent_dim", 0) < 1 or not isinstance(model, SentenceLatentModel):
        raise ValueError(f"{what} needs a latent-variable model (e.g. SentenceVAE); "
                         f"this export is a {type(model).__name__}, which has no latent z")


# Bowman et al.'s decoding of a point: the most likely words. A sentence model may say <unk>, as its data does.
GREEDY = Decoding("greedy", allow_unk=True)


def _device(model: TextModel) -> torch.device:
    return next(model.parameters()).device


class EncodedTexts(NamedTuple):
    mu: Tensor  # (N, Z) posterior means, in the order of the texts
    logvar: Tensor  # (N, Z)
    tokens: int  # tokens read, without BOS/EOS
    unknown: int  # of those, how many are not in the vocabulary (read as <unk>)
    truncated: int  # texts cut to ``model.max_words`` tokens


@torch.inference_mode()
def encode_texts(model: TextModel, tokenizer: Tokenizer, texts: Sequence[str], *,
                 batch_size: int = 64) -> EncodedTexts:
    """q(z|x) of each text, batched by length (no padding waste); eval mode for the call."""
    require_latent(model, "encoding sentences")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    limit = model.max_words
    ids = [tokenizer.encode(text) for text in texts]
    truncated = sum(limit is not None and len(x) > limit for x in ids)
    ids = [x[:limit] if limit is not None else x for x in ids]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    device = _device(model)
    was_training = model.training
    model.eval()
    mu = torch.empty(len(ids), model.latent_dim, device=device)  # (N, Z)
    logvar = torch.empty_like(mu)
    try:
        for start in range(0, len(order), batch_size):
            batch = collate_sentences([SentenceExample(ids[i], None, i) for i in order[start:start + batch_size]])
            batch_mu, batch_logvar = model.encode(batch.tokens.to(device), batch.lengths.to(device))  # (B, Z) x2
            mu[batch.index.to(device)] = batch_mu.float()
            logvar[batch.index.to(device)] = batch_logvar.float()
    finally:
        model.train(was_training)
    return EncodedTexts(mu=mu, logvar=logvar, tokens=sum(len(x) for x in ids),
                        unknown=sum(x.count(UNK_ID) for x in ids), truncated=truncated)


def decode_texts(model: TextModel, tokenizer: Tokenizer, z: Tensor | None, decoding: Decoding = GREEDY, *,
                 count: int | None = None, chunk: int = 256, generator: torch.Generator | None = None) -> list[str]:
    """Decode each row of ``z`` (N, Z) to text with :func:`textvae.decoding.generate`, ``chunk`` rows at a
    time: the way back from :func:`encode_texts`. A language model takes ``z=None`` and ``count``, the
    number of sentences to generate. ``generator`` draws the sampled words."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    n = z.shape[0] if z is not None else count
    if n is None:
        raise ValueError("decoding without z (a language model) needs count")
    texts: list[str] = []
    for start in range(0, n, chunk):
        rows = None if z is None else z[start:start + chunk]  # (chunk, Z)
        ids = generate(model, rows, decoding, batch_size=None if z is not None else min(chunk, n - start),
                       generator=generator)
        texts += [tokenizer.decode(x) for x in ids]
    return texts


def interpolate(z0: Tensor, z1: Tensor, steps: int, method: Literal["lerp", "slerp"] = "lerp") -> Tensor:
    """``steps`` points from z0 to z1, both ends included: (Z,) x2 -> (steps, Z)."""
    if method == "lerp":
        return lerp(z0, z1, steps)
    if method == "slerp":
        return slerp(z0, z1, steps)
    raise ValueError(f"method must be 'lerp' or 'slerp', got {method!r}")


class HomotopyPoint(NamedTuple):
    t: float  # position along the path, 0 at the start and 1 at the end
    decoded: str  # the sentence decoded at this point
    given: str | None  # at an end given as a sentence: that sentence; else None


class Homotopy(NamedTuple):
    points: list[HomotopyPoint]  # steps + 2, ends included
    tokens: int  # tokens read from the given ends
    unknown: int  # of those, not in the vocabulary


@torch.inference_mode()
def homotopy(model: TextModel, tokenizer: Tokenizer, start: str | None, end: str | None, *, steps: int,
             method: Literal["lerp", "slerp"] = "lerp", decoding: Decoding = GREEDY,
             generator: torch.Generator | None = None) -> Homotopy:
    """Sentences along a path in z between two ends (Bowman et al. 2016, Table 8): each end is a sentence,
    encoded by its posterior mean, or None for a draw from the prior. ``steps`` points lie strictly between
    the ends; every point, ends included, is decoded with ``decoding``."""
    require_latent(model, "a homotopy")
    if steps < 1:
        raise ValueError(f"steps must be >= 1 (points between the two ends), got {steps}")
    given = [start, end]
    texts = [t for t in given if t is not None]
    encoded = encode_texts(model, tokenizer, texts) if texts else None
    prior = model.sample_prior(2, generator=generator).float()  # (2, Z); used for the ends given as None
    ends, used = [], 0
    for i, text in enumerate(given):
        if text is None:
            ends.append(prior[i])
        else:
            ends.append(encoded.mu[used])
            used += 1
    path = interpolate(ends[0], ends[1], steps + 2, method)  # (steps + 2, Z)
    decoded = decode_texts(model, tokenizer, path, decoding, generator=generator)
    last = steps + 1
    points = [HomotopyPoint(t=i / last, decoded=sentence, given=start if i == 0 else end if i == last else None)
              for i, sentence in enumerate(decoded)]
    return Homotopy(points=points, tokens=encoded.tokens if encoded else 0,
                    unknown=encoded.unknown if encoded else 0)


# ---------------------------------------------------------------------------------------------------
# 2-D projection and plot


class Projection(NamedTuple):
    points: Tensor  # (N, 2) coordinates on the first two principal components
    explained: tuple[float, float]  # fraction of the variance along each


def project_2d(mu: Tensor) -> Projection:
    """PCA of posterior means (N, Z) -> (N, 2), by SVD of the centred codes. Component signs are fixed
    (largest loading positive) so the same codes always give the same picture. Z = 1 gives a zero y."""
    if mu.dim() != 2 or mu.shape[0] < 2:
        raise ValueError(f"a projection needs at least 2 codes of shape (N, Z), got {tuple(mu.shape)}")
    x = mu.detach().double().cpu()
    x = x - x.mean(0)  # (N, Z)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)  # vh (min(N, Z), Z)
    components = vh[:2]  # (k, Z), k <= 2
    signs = components.gather(1, components.abs().argmax(1, keepdim=True)).sign()  # (k, 1)
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)
    points = x @ components.T  # (N, k)
    variance = s.pow(2)
    total = float(variance.sum()) or 1.0
    explained = [float(v) / total for v in variance[:2]]
    if points.shape[1] < 2:  # Z == 1 (or N == 2 with all codes on a line)
        points = torch.cat([points, points.new_zeros(points.shape[0], 2 - points.shape[1])], dim=1)
        explained += [0.0] * (2 - len(explained))
    return Projection(points=points.float(), explained=(explained[0], explained[1]))


def plot_projection(projection: Projection, labels: Sequence[str], path: str | os.PathLike, *,
                    title: str) -> None:
    """Scatter plot of a :class:`Projection` coloured by label, with a legend; written as PNG with
    matplotlib's Agg canvas (no display, no global pyplot state)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(labels) != projection.points.shape[0]:
        raise ValueError(f"{len(labels)} labels for {projection.points.shape[0]} points")
    names = sorted(set(labels))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    figure = Figure(figsize=(7, 6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    xy = projection.points.numpy()
    for i, name in enumerate(names):
        rows = [j for j, label in enumerate(labels) if label == name]
        axes.scatter(xy[rows, 0], xy[rows, 1], s=12, alpha=0.7, color=cmap(i % cmap.N), label=f"{name} ({len(rows)})")
    axes.set_xlabel(f"PC 1 ({projection.explained[0]:.0%} of the variance)")
    axes.set_ylabel(f"PC 2 ({projection.explained[1]:.0%} of the variance)")
    axes.set_title(title)
    axes.legend(loc="best", fontsize="small", markerscale=1.5, framealpha=0.8)
    figure.tight_layout()
    figure.savefig(os.fspath(path), format="png")
