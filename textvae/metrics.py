"""Evaluation metrics for text VAEs: latent usage (AU, MI) and text diversity/fidelity (distinct-n, BLEU).

AU and MI follow He et al. (2019), "Lagging Inference Networks and Posterior Collapse in Variational
Autoencoders" (code: jxhe/vae-lagging-encoder, ``calc_au`` / ``calc_mi``). BLEU is sacrebleu's, on a
0-100 scale; ``tokenize="none"`` (the default here) splits on whitespace only, for text that is already
tokenised (e.g. the PTB, Yahoo and Yelp sets of the text-VAE literature); pass ``tokenize="13a"`` for
raw, untokenised text.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

import sacrebleu
import torch
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams
from torch import Tensor

from textvae.objectives import LOG_2PI, log_normal, reparameterize

# ---------------------------------------------------------------------------------------------------
# Latent usage


def active_units(mu: Tensor, threshold: float = 0.01) -> tuple[int, Tensor]:
    """Active units (Burda et al. 2016; He et al. 2019): dimension j is active if Cov_x(E_q[z_j]) > threshold.

    ``mu``: (N, Z) posterior means over a whole evaluation set (concatenate the batches; N >= 2).
    Returns ``(count, variances)`` with ``variances`` (Z,) the unbiased (N - 1) variance of each
    dimension's mean across examples, as He et al. compute it. (He et al. test ``>=``; the difference
    only matters at exact ties.)
    """
    if mu.dim() != 2 or mu.shape[0] < 2:
        raise ValueError(f"active_units needs mu of shape (N, Z) with N >= 2, got {tuple(mu.shape)}")
    variances = mu.double().var(dim=0, unbiased=True).to(mu.dtype)  # (Z,)
    return int((variances > threshold).sum().item()), variances


def gaussian_negative_entropy(logvar: Tensor) -> Tensor:
    """E_q[log q(z|x)] = -H(q) for q = N(mu, diag(exp(logvar))): (B, Z) -> (B,)."""
    z_dim = logvar.shape[-1]
    return -0.5 * z_dim * LOG_2PI - 0.5 * (1.0 + logvar).sum(-1)


def mutual_information(
    mu: Tensor, logvar: Tensor, z: Tensor | None = None, generator: torch.Generator | None = None
) -> float:
    """I(x; z) under q, estimated on one batch exactly as He et al. (2019) ``calc_mi``.

    ``I = E_x E_q(z|x)[log q(z|x)] - E_x E_q(z|x)[log q(z)]`` where the first term is the analytic
    negative entropy (mean over the batch) and the aggregate posterior is approximated by the batch,
    ``q(z_i) = 1/B sum_j q(z_i | x_j)`` (a logsumexp), with one sample ``z_i ~ q(z|x_i)`` per example.

    ``mu``, ``logvar``: (B, Z); ``z``: (B, Z) samples, drawn with ``generator`` if not given. In nats.
    The estimate depends on the batch size (the aggregate posterior is a B-component mixture), so
    compare models at the same batch size; for a whole data set use :func:`dataset_mutual_information`.
    """
    batch_size = mu.shape[0]
    if z is None:
        z = reparameterize(mu, logvar, generator=generator)  # (B, Z)
    neg_entropy = gaussian_negative_entropy(logvar).mean()
    # log_density[i, j] = log q(z_i | x_j)
    log_density = log_normal(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))  # (B, B)
    log_qz = torch.logsumexp(log_density, dim=1) - math.log(batch_size)  # (B,)
    return (neg_entropy - log_qz.mean()).item()


def dataset_mutual_information(
    batches: Iterable[tuple[Tensor, Tensor]], generator: torch.Generator | None = None
) -> float:
    """MI over a data set as He et al. (2019) report it: the per-batch :func:`mutual_information`
    averaged with weights equal to the batch sizes. ``batches`` yields ``(mu, logvar)`` pairs, (B, Z) each.
    """
    total, count = 0.0, 0
    for mu, logvar in batches:
        total += mutual_information(mu, logvar, generator=generator) * mu.shape[0]
        count += mu.shape[0]
    if count == 0:
        raise ValueError("dataset_mutual_information got no batches")
    return total / count


# ---------------------------------------------------------------------------------------------------
# Text diversity and fidelity


def _tokens(sentence: str | Sequence[str]) -> list[str]:
    return sentence.split() if isinstance(sentence, str) else list(sentence)


def distinct_n(
    sentences: Sequence[Sequence[str]] | Sequence[str],
    n: int,
    denominator: Literal["ngrams", "tokens"] = "ngrams",
) -> float:
    """Distinct-n (Li et al. 2016): distinct n-grams over the whole set divided by the total.

    ``sentences``: token lists, or strings split on whitespace. ``denominator="ngrams"`` (default, the
    common implementation) divides by the number of n-grams; ``"tokens"`` divides by the number of
    tokens, as Li et al.'s text states. Returns 0.0 when there is no n-gram at all.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if denominator not in ("ngrams", "tokens"):
        raise ValueError(f"denominator must be 'ngrams' or 'tokens', got {denominator!r}")
    ngrams: Counter[tuple[str, ...]] = Counter()
    num_tokens = 0
    for sentence in sentences:
        tokens = _tokens(sentence)
        num_tokens += len(tokens)
        ngrams.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(ngrams.values()) if denominator == "ngrams" else num_tokens
    return len(ngrams) / total if total > 0 and ngrams else 0.0


def self_bleu(sentences: Sequence[str], *, tokenize: str = "none", smooth_method: str = "exp") -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen): mean sentence BLEU of each sentence against all the others.

    Exactly ``mean_i sacrebleu.sentence_bleu(s_i, [s_j for j != i], tokenize=tokenize,
    smooth_method=smooth_method)`` (4-gram, effective order), on a 0-100 scale; higher means less
    diverse. Computed in O(N) rather than O(N^2): each n-gram's clipping count against "all the others"
    is its largest count in any other sentence, so only the top two counts per n-gram are kept.
    """
    if len(sentences) < 2:
        raise ValueError(f"self_bleu needs at least 2 sentences, got {len(sentences)}")
    bleu = BLEU(tokenize=tokenize, smooth_method=smooth_method, effective_order=True)
    order = bleu.max_ngram_order
    stats = [extract_all_word_ngrams(bleu.tokenizer(s.rstrip()), 1, order) for s in sentences]
    # per n-gram: (largest count, the sentence holding it, second-largest count)
    top: dict[tuple[str, ...], tuple[int, int, int]] = {}
    for i, (ngrams, _) in enumerate(stats):
        for ngram, count in ngrams.items():
            first, owner, second = top.get(ngram, (0, -1, 0))
            top[ngram] = (count, i, first) if count > first else (first, owner, max(second, count))
    lengths = Counter(length for _, length in stats)

    scores = []
    for i, (ngrams, hyp_len) in enumerate(stats):
        correct, total = [0] * order, [0] * order
        for ngram, count in ngrams.items():
            first, owner, second = top[ngram]
            total[len(ngram) - 1] += count
            correct[len(ngram) - 1] += min(count, second if owner == i else first)
        # closest other length, ties to the shorter (as sacrebleu)
        others = [length for length, c in lengths.items() if c > (length == hyp_len)]
        ref_len = min(others, key=lambda length: (abs(hyp_len - length), length))
        scores.append(
            BLEU.compute_bleu(
                correct,
                total,
                hyp_len,
                ref_len,
                smooth_method=smooth_method,
                effective_order=True,
                max_ngram_order=order,
            ).score
        )
    return sum(scores) / len(scores)


def corpus_bleu(
    hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], *, tokenize: str = "none"
) -> float:
    """Corpus BLEU (sacrebleu, 0-100), e.g. reconstructions against their inputs.

    ``references``: one string per hypothesis, or one list of reference strings per hypothesis (all
    lists the same length).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if all(isinstance(r, str) for r in references):
        streams = [list(references)]
    else:
        counts = {len(r) for r in references}
        if len(counts) != 1:
            raise ValueError(
                f"every hypothesis needs the same number of references, got counts {sorted(counts)}"
            )
        streams = [list(refs) for refs in zip(*references, strict=True)]  # (num_refs, N)
    return sacrebleu.corpus_bleu(list(hypotheses), streams, tokenize=tokenize).score


def linear_probe(features: Tensor, labels: Sequence[str], *, train_fraction: float = 0.8, steps: int = 200,
                 seed: int = 0) -> tuple[float, float]:
    """How well a linear classifier on ``features`` (N, D), e.g. posterior means, predicts ``labels``.

    Multinomial logistic regression (full-batch L-BFGS, standardised features) fit on a random
    ``train_fraction`` of the examples and scored on the rest. Returns ``(accuracy, chance)`` where
    chance is the accuracy of always answering the most frequent training label.
    """
    if features.dim() != 2 or features.shape[0] != len(labels):
        raise ValueError(f"features must be (N, D) with N = len(labels), got {tuple(features.shape)} and {len(labels)}")
    names = sorted(set(labels))
    y = torch.tensor([names.index(label) for label in labels])
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(train_fraction * len(y))
    if cut < 1 or cut >= len(y):
        raise ValueError(f"train_fraction {train_fraction} leaves no train or no test examples of {len(y)}")
    train, test = order[:cut], order[cut:]
    x = features.detach().float()
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    with torch.enable_grad():
        classifier = torch.nn.Linear(x.shape[1], len(names))
        optimizer = torch.optim.LBFGS(classifier.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(classifier(x[train]), y[train]) + 1e-3 * classifier.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    with torch.no_grad():
        accuracy = (classifier(x[test]).argmax(-1) == y[test]).float().mean().item()
    chance = (y[test] == torch.bincount(y[train]).argmax()).float().mean().item()
    return accuracy, chance
