"""Working in a model's latent space: encode texts to posterior means, decode points, interpolate between
two sentences (Bowman et al. 2016, section 5, "homotopies"), project codes to 2-D for a plot, and latent
arithmetic: attribute vectors (Larsen et al. 2016; Li et al. 2020) and analogies (Mikolov et al. 2013).

These are what ``textvae-sample``, ``textvae-homotopy`` and ``textvae-latent`` run; they need a latent-variable
model (``latent_dim > 0``, with ``encode`` and ``sample_prior``), and raise ``ValueError`` for a language model.

Notation: N sentences, B batch, Z latent, S scales.
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
    labels: Tensor | None = None  # (N,) a labelled model's label of each text (given, or q(y|x)'s); else None


def num_labels(model: TextModel) -> int:
    """The labels a model generates for (a CVAE / M2 SentenceVAE), 0 for an unconditioned one."""
    return getattr(model, "num_labels", 0)


class PriorDraws(NamedTuple):
    z: Tensor | None  # (n, Z) draws of z; None for a language model, which decodes from nothing
    labels: Tensor | None  # (n,) a labelled model's label of each draw; else None


def prior_draws(model: TextModel, n: int, *, generator: torch.Generator | None = None, label: int | None = None,
                scale: float = 1.0) -> PriorDraws:
    """n draws from the prior, as :func:`decode_texts` takes them: z ~ p(z) (a labelled model: each for
    ``label``, or for a label drawn uniformly, z ~ p(z | y)); ``scale`` multiplies the prior's standard
    deviation. On ``generator``'s device (the CPU without one)."""
    if getattr(model, "latent_dim", 0) < 1:
        return PriorDraws(None, None)
    if not num_labels(model):
        return PriorDraws(model.sample_prior(n, generator=generator, scale=scale), None)
    device = generator.device if generator is not None else None
    labels = (torch.full((n,), label, dtype=torch.long, device=device) if label is not None else
              torch.randint(num_labels(model), (n,), generator=generator, device=device))
    return PriorDraws(model.sample_prior(n, generator=generator, scale=scale, labels=labels), labels)


@torch.inference_mode()
def encode_texts(model: TextModel, tokenizer: Tokenizer, texts: Sequence[str], *,
                 batch_size: int = 64, labels: Tensor | None = None) -> EncodedTexts:
    """q(z|x) of each text, batched by length (no padding waste); eval mode for the call. A labelled model
    encodes q(z | x, y) at ``labels`` (N,) ids, and at its classifier's most likely label where not given or
    -1; the labels used come back in ``labels``."""
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
    labelled = num_labels(model) > 0
    used = torch.full((len(ids),), -1, dtype=torch.long, device=device) if labels is None else labels.to(device).clone()
    try:
        for start in range(0, len(order), batch_size):
            batch = collate_sentences([SentenceExample(ids[i], None, i) for i in order[start:start + batch_size]])
            index = batch.index.to(device)
            tokens, lengths = batch.tokens.to(device), batch.lengths.to(device)
            if labelled:  # the code and the label it was encoded at (given, or the classifier's), in one pass
                batch_mu, batch_logvar, used[index] = model.encode_labelled(tokens, lengths, used[index])
            else:
                batch_mu, batch_logvar = model.encode(tokens, lengths)
            mu[index] = batch_mu.float()
            logvar[index] = batch_logvar.float()
    finally:
        model.train(was_training)
    return EncodedTexts(mu=mu, logvar=logvar, tokens=sum(len(x) for x in ids),
                        unknown=sum(x.count(UNK_ID) for x in ids), truncated=truncated,
                        labels=used if labelled else None)


@torch.inference_mode()
def decode_texts(model: TextModel, tokenizer: Tokenizer, z: Tensor | None, decoding: Decoding = GREEDY, *,
                 count: int | None = None, chunk: int = 256, generator: torch.Generator | None = None,
                 labels: Tensor | None = None) -> list[str]:
    """Decode each row of ``z`` (N, Z) to text with :func:`textvae.decoding.generate`, ``chunk`` rows at a
    time: the way back from :func:`encode_texts`. A language model takes ``z=None`` and ``count``, the
    number of sentences to generate. ``generator`` draws the sampled words. A labelled model decodes row i
    for label ``labels[i]`` (N,) (required for it; an error for any other model)."""
    if (labels is not None) != (num_labels(model) > 0):
        raise ValueError("this model generates for a label: give one (--label NAME)" if labels is None
                         else "this model has no labels: decode without one")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    n = z.shape[0] if z is not None else count
    if n is None:
        raise ValueError("decoding without z (a language model) needs count")
    texts: list[str] = []
    for start in range(0, n, chunk):
        rows = None if z is None else z[start:start + chunk]  # (chunk, Z)
        if labels is not None:
            rows = model.decoder_code(rows, labels[start:start + chunk].to(rows.device))  # (chunk, Z + L)
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
             generator: torch.Generator | None = None, label: int | None = None) -> Homotopy:
    """Sentences along a path in z between two ends (Bowman et al. 2016, Table 8): each end is a sentence,
    encoded by its posterior mean, or None for a draw from the prior. ``steps`` points lie strictly between
    the ends; every point, ends included, is decoded with ``decoding``. A labelled model decodes the whole
    path for ``label`` (an id; default: the first given end's label by its classifier, else label 0)."""
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
    labels = None
    if num_labels(model):
        if label is None:
            label = int(encoded.labels[0]) if encoded is not None else 0
        labels = torch.full((len(path),), label, dtype=torch.long)
    decoded = decode_texts(model, tokenizer, path, decoding, generator=generator, labels=labels)
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


# ---------------------------------------------------------------------------------------------------
# Latent arithmetic: attribute vectors and analogies


class AttributeVector(NamedTuple):
    vector: Tensor  # (Z,) mean code of the texts labelled target minus that of the texts labelled source
    source: int  # texts labelled source
    target: int  # texts labelled target
    code_norm: float  # average Euclidean norm of those codes: how big a step of ``vector`` is
    tokens: int  # tokens read, without BOS/EOS
    unknown: int  # of those, not in the vocabulary
    truncated: int  # texts cut to ``model.max_words`` tokens


def _label_counts(labels: Sequence[str | None]) -> str:
    counts: dict[str, int] = {}
    for label in labels:
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{label} ({n:,})" for label, n in sorted(counts.items())) or "none"


@torch.inference_mode()
def attribute_vector(model: TextModel, tokenizer: Tokenizer, texts: Sequence[str], labels: Sequence[str | None],
                     source: str, target: str, *, batch_size: int = 64) -> AttributeVector:
    """The direction from one label to another in z: the mean posterior mean of the texts labelled ``target``
    minus that of the texts labelled ``source``; texts with another label (or None) are not read. Added to a
    sentence's code (:func:`add_attribute`) it moves the sentence towards ``target``: the attribute vectors of
    Larsen et al. (2016) for faces, and of Li et al. (2020, Optimus) for sentences, in the continuous sentence
    space of Bowman et al. (2016)."""
    require_latent(model, "an attribute vector")
    if len(labels) != len(texts):
        raise ValueError(f"{len(labels)} labels for {len(texts)} texts")
    if source == target:
        raise ValueError(f"the source and target labels are both {source!r}: give two different labels")
    for label in (source, target):
        if label not in labels:
            raise ValueError(f"no text is labelled {label!r}; labels present: {_label_counts(labels)}")
    rows = [i for i, label in enumerate(labels) if label in (source, target)]
    encoded = encode_texts(model, tokenizer, [texts[i] for i in rows], batch_size=batch_size)
    is_target = torch.tensor([labels[i] == target for i in rows], device=encoded.mu.device)  # (N,)
    vector = encoded.mu[is_target].mean(0) - encoded.mu[~is_target].mean(0)  # (Z,)
    return AttributeVector(vector=vector, source=int((~is_target).sum()), target=int(is_target.sum()),
                           code_norm=float(encoded.mu.norm(dim=1).mean()), tokens=encoded.tokens,
                           unknown=encoded.unknown, truncated=encoded.truncated)


def shift_codes(z: Tensor, vector: Tensor, scales: Sequence[float]) -> Tensor:
    """z + s * vector for every code and every scale s: (N, Z), (Z,) and S scales -> (N, S, Z)."""
    s = torch.tensor(list(scales), dtype=z.dtype, device=z.device)  # (S,)
    return z[:, None, :] + s[None, :, None] * vector.to(z)[None, None, :]  # (N, S, Z)


class AttributeEdit(NamedTuple):
    decoded: list[list[str]]  # for each text, the sentence decoded at each scale, in the order of the scales
    tokens: int  # tokens read from the texts
    unknown: int  # of those, not in the vocabulary
    truncated: int  # texts cut to ``model.max_words`` tokens


@torch.inference_mode()
def add_attribute(model: TextModel, tokenizer: Tokenizer, texts: Sequence[str], vector: Tensor,
                  scales: Sequence[float], *, decoding: Decoding = GREEDY, chunk: int = 256,
                  generator: torch.Generator | None = None) -> AttributeEdit:
    """Each text moved along an :func:`attribute_vector`: its posterior mean z, then z + s * vector decoded with
    ``decoding`` for each scale s (s = 0 decodes z itself, as a reconstruction). A labelled model keeps each
    text's own label (its classifier's) at every scale: only z moves."""
    require_latent(model, "adding an attribute vector")
    if not scales:
        raise ValueError("give at least one scale")
    if vector.shape != (model.latent_dim,):
        raise ValueError(f"the vector has shape {tuple(vector.shape)}; this model's codes are ({model.latent_dim},)")
    encoded = encode_texts(model, tokenizer, texts)
    points = shift_codes(encoded.mu, vector, scales).flatten(0, 1)  # (N * S, Z)
    labels = None if encoded.labels is None else encoded.labels.repeat_interleave(len(scales))  # (N * S,)
    decoded = decode_texts(model, tokenizer, points, decoding, chunk=chunk, generator=generator, labels=labels)
    k = len(scales)
    return AttributeEdit(decoded=[decoded[i:i + k] for i in range(0, len(decoded), k)], tokens=encoded.tokens,
                         unknown=encoded.unknown, truncated=encoded.truncated)


class Analogy(NamedTuple):
    z: Tensor  # (Z,) z_c + scale * (z_b - z_a)
    decoded: str  # the answer d: z decoded
    tokens: int  # tokens read from a, b and c
    unknown: int  # of those, not in the vocabulary
    truncated: int  # of a, b and c, how many were cut to ``model.max_words`` tokens


@torch.inference_mode()
def analogy(model: TextModel, tokenizer: Tokenizer, a: str, b: str, c: str, *, scale: float = 1.0,
            decoding: Decoding = GREEDY, generator: torch.Generator | None = None) -> Analogy:
    """a : b :: c : d by vector offset (Mikolov et al. 2013), on posterior means instead of word vectors, as
    Li et al. (2020, Optimus) do with sentences: z_d = z_c + scale * (z_b - z_a), decoded with ``decoding``
    (a labelled model: for c's label, as its classifier reads c)."""
    require_latent(model, "an analogy")
    encoded = encode_texts(model, tokenizer, [a, b, c])
    z_a, z_b, z_c = encoded.mu  # (Z,) x3
    z = z_c + scale * (z_b - z_a)  # (Z,)
    labels = None if encoded.labels is None else encoded.labels[2:]  # (1,) c's
    (decoded,) = decode_texts(model, tokenizer, z[None], decoding, generator=generator, labels=labels)
    return Analogy(z=z, decoded=decoded, tokens=encoded.tokens, unknown=encoded.unknown,
                   truncated=encoded.truncated)


class Neighbour(NamedTuple):
    index: int  # row of the codes
    cosine: float  # its cosine similarity to the point


def nearest(codes: Tensor, z: Tensor, *, exclude: Sequence[int] = ()) -> Neighbour:
    """The row of ``codes`` (N, Z) most similar to ``z`` (Z,) by cosine, leaving out the rows in ``exclude``
    (Mikolov et al. 2013 leave out the question's own words)."""
    if codes.dim() != 2 or z.shape != codes.shape[1:]:
        raise ValueError(f"codes (N, Z) and a point (Z,) expected, got {tuple(codes.shape)} and {tuple(z.shape)}")
    cosine = torch.nn.functional.cosine_similarity(codes.float(), z.float().to(codes.device)[None], dim=1)  # (N,)
    if exclude:
        cosine[torch.tensor(list(exclude), dtype=torch.long, device=cosine.device)] = -torch.inf
    if codes.shape[0] == 0 or bool(torch.isneginf(cosine).all()):
        raise ValueError("no code left to compare with")
    index = int(cosine.argmax())
    return Neighbour(index=index, cosine=float(cosine[index]))
