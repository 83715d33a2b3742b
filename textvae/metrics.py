"""Evaluation metrics for text VAEs: latent usage (AU, MI) and text diversity/fidelity (distinct-n, BLEU).

AU and MI follow He et al. (2019), "Lagging Inference Networks and Posterior Collapse in Variational
Autoencoders" (code: jxhe/vae-lagging-encoder, ``calc_au`` / ``calc_mi``). BLEU is sacrebleu's, on a
0-100 scale; ``tokenize="none"`` (the default here) splits on whitespace only, for text that is already
tokenised (e.g. the PTB, Yahoo and Yelp sets of the text-VAE literature); pass ``tokenize="13a"`` for
raw, untokenised text.

Clusters are scored against gold classes as VaDE (Jiang et al. 2017) and DEC (Xie et al. 2016) do: the
accuracy of the best one-to-one map of clusters to classes, and the normalised mutual information with the
arithmetic mean of the two entropies as the normaliser (Vinh et al. 2010's NMI_sum, scikit-learn's default).

Dialogue responses are scored as Zhao et al. (2017) and Gu et al. (2019) do: BLEU-1..4 of each of N
sampled responses against the reference (sentence BLEU, 0-1), recall = max and precision = mean over the
samples; and the embedding average / extrema / greedy matching of Liu et al. (2016).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Literal

import sacrebleu
import torch
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams
from torch import Tensor

from textvae.classifier import train_classifier
from textvae.objectives import LOG_2PI, log_normal, reparameterize

PROBE_L2 = 2e-3  # linear_probe's weight penalty, l2 / 2 ||W||^2 on standardised features

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
# Clusters against classes


def contingency_table(predicted: Sequence[Hashable], gold: Sequence[Hashable]) -> Tensor:
    """Counts n[k, c] of the examples in cluster k and class c: (K, C) float64, rows and columns in a fixed order."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} cluster assignments but {len(gold)} gold labels")
    if not predicted:
        raise ValueError("clustering metrics need at least one example")
    clusters = {k: i for i, k in enumerate(sorted(set(predicted), key=repr))}
    classes = {c: j for j, c in enumerate(sorted(set(gold), key=repr))}
    table = torch.zeros(len(clusters), len(classes), dtype=torch.float64)
    for (k, c), n in Counter(zip(predicted, gold, strict=True)).items():
        table[clusters[k], classes[c]] = n
    return table


def clustering_accuracy(predicted: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
    """max over one-to-one maps m of clusters to classes of 1/N sum_i [m(k_i) = y_i] (Xie et al. 2016;
    Jiang et al. 2017), the map found by the Hungarian algorithm on the contingency table. The numbers of
    clusters and classes may differ: the clusters left without a class (or classes without a cluster)
    count as wrong."""
    from scipy.optimize import linear_sum_assignment

    table = contingency_table(predicted, gold)  # (K, C)
    rows, columns = linear_sum_assignment(table.numpy(), maximize=True)
    return table[rows, columns].sum().item() / len(gold)


def normalized_mutual_information(predicted: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
    """I(K; Y) / ((H(K) + H(Y)) / 2) of the empirical joint distribution of clusters and classes, in [0, 1]:
    1 when the clusters are the classes up to names, 0 when independent; 1 when both are one group (as
    scikit-learn's ``normalized_mutual_info_score``)."""
    joint = contingency_table(predicted, gold)
    if joint.shape == (1, 1):
        return 1.0
    joint = joint / joint.sum()  # p(k, y)
    p_cluster, p_class = joint.sum(1), joint.sum(0)  # (K,), (C,)
    nonzero = joint > 0
    mi = (joint[nonzero] * (joint[nonzero] / torch.outer(p_cluster, p_class)[nonzero]).log()).sum()
    entropy = -(p_cluster * p_cluster.log()).sum() - (p_class * p_class.log()).sum()  # no zero marginals
    return max(mi.item(), 0.0) / (entropy.item() / 2)


# ---------------------------------------------------------------------------------------------------
# Text diversity and fidelity


def perplexity(nll: float, tokens: int) -> float:
    """exp(total NLL / tokens), the papers' perplexity when ``tokens`` counts every word and EOS; inf where
    exp overflows (a float, so a bad model's result still prints and serialises)."""
    per_token = nll / tokens
    return math.exp(per_token) if per_token < 700 else math.inf


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

    The multinomial logistic regression of :mod:`textvae.classifier` (standardised features, full-batch
    L-BFGS for at most ``steps`` iterations, L2 penalty :data:`PROBE_L2`) fit on a random ``train_fraction``
    of the examples and scored on the rest. Returns ``(accuracy, chance)`` where chance is the accuracy of
    always answering the most frequent training label (ties: the first in sorted order).
    """
    if features.dim() != 2 or features.shape[0] != len(labels):
        raise ValueError(f"features must be (N, D) with N = len(labels), got {tuple(features.shape)} and {len(labels)}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    cut = int(train_fraction * len(labels))
    if cut < 1 or cut >= len(labels):
        raise ValueError(f"train_fraction {train_fraction} leaves no train or no test examples of {len(labels)}")
    train, test = order[:cut].tolist(), order[cut:].tolist()
    x = features.detach().float().cpu()
    classifier = train_classifier(x[train], [labels[i] for i in train], l2=PROBE_L2, max_steps=steps)
    predicted = classifier.classify(x[test]).labels
    gold = [labels[i] for i in test]
    counts = Counter(labels[i] for i in train)
    majority = max(sorted(counts), key=counts.__getitem__)
    accuracy = sum(p == y for p, y in zip(predicted, gold, strict=True)) / len(gold)
    return accuracy, sum(y == majority for y in gold) / len(gold)


# ---------------------------------------------------------------------------------------------------
# Dialogue responses: BLEU-n recall/precision (Zhao et al. 2017) and embedding similarity (Liu et al. 2016)

BLEU_SMOOTHING = 0.1  # Chen & Cherry (2014) method 1: a zero n-gram match counts as 0.1 match


def sentence_bleu_n(hypothesis: str | Sequence[str], reference: str | Sequence[str], max_order: int = 4) -> list[float]:
    """BLEU-1 .. BLEU-``max_order`` of one hypothesis against one reference, each on a 0-1 scale.

    BLEU-n is sentence BLEU with uniform weights over the 1..n-gram precisions (Zhao et al. 2017), from
    sacrebleu's own statistics and formula (``BLEU.compute_bleu`` with ``max_ngram_order=n``), tokens split
    on whitespace. Smoothing is sacrebleu's ``"floor"`` (Chen & Cherry 2014 method 1, epsilon 0.1): an order
    with no match counts 0.1 match. Why not NLTK's method 7, which Zhao et al.'s code calls: its method-4
    part was rewritten between NLTK releases (3.2.x, current in 2017, reads ``i+1 * k / log(len)`` with an
    operator-precedence slip, ignores the n-gram count and divides by zero on one-word hypotheses, which
    Zhao et al.'s code then scores 0; 3.8 computes something else), so "method 7" names no single number;
    floor smooths each order on its own, whatever happens at the other orders. With effective order (as ``sacrebleu.sentence_bleu``),
    a hypothesis shorter than n words is scored on the orders it has. No unigram match (or an empty
    hypothesis) scores 0; the brevity penalty applies as usual.
    """
    if max_order < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}")
    hyp_ngrams, hyp_len = extract_all_word_ngrams(" ".join(_tokens(hypothesis)), 1, max_order)
    ref_ngrams, ref_len = extract_all_word_ngrams(" ".join(_tokens(reference)), 1, max_order)
    correct, total = [0] * max_order, [0] * max_order
    for ngram, count in hyp_ngrams.items():
        total[len(ngram) - 1] += count
        correct[len(ngram) - 1] += min(count, ref_ngrams.get(ngram, 0))
    return [BLEU.compute_bleu(correct[:n], total[:n], hyp_len, ref_len, smooth_method="floor",
                              smooth_value=BLEU_SMOOTHING, effective_order=True, max_ngram_order=n).score / 100
            for n in range(1, max_order + 1)]


def bleu_recall_precision(hypotheses: Sequence[str] | Sequence[Sequence[str]], reference: str | Sequence[str],
                          max_order: int = 4) -> tuple[list[float], list[float]]:
    """Zhao et al. (2017)'s BLEU of N sampled responses to one context: ``(recall, precision)``, each a list
    of BLEU-1..``max_order`` (0-1), recall the max and precision the mean of :func:`sentence_bleu_n` over
    the samples. Recall: does any sample find the reference; precision: are the samples all good."""
    if not hypotheses:
        raise ValueError("bleu_recall_precision needs at least one hypothesis")
    scores = [sentence_bleu_n(h, reference, max_order) for h in hypotheses]  # (N, max_order)
    by_order = list(zip(*scores, strict=True))
    return [max(s) for s in by_order], [sum(s) / len(s) for s in by_order]


def f1_score(precision: float, recall: float) -> float:
    """Harmonic mean 2PR / (P + R), 0 when both are 0 (Gu et al. 2019's BLEU F1, from the averaged P and R)."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _cosine(a: Tensor, b: Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1, eps=1e-12).item()


def _check_vectors(hypothesis: Tensor, reference: Tensor) -> None:
    if hypothesis.dim() != 2 or reference.dim() != 2 or hypothesis.shape[1] != reference.shape[1]:
        raise ValueError(f"word vectors must be (N, D) and (M, D), got {tuple(hypothesis.shape)} and {tuple(reference.shape)}")
    if len(hypothesis) == 0 or len(reference) == 0:
        raise ValueError("embedding metrics need at least one word vector on each side")


def embedding_average(hypothesis: Tensor, reference: Tensor) -> float:
    """Liu et al. (2016) embedding average: cosine of the mean word vectors. (N, D), (M, D) -> [-1, 1]."""
    _check_vectors(hypothesis, reference)
    return _cosine(hypothesis.mean(0), reference.mean(0))


def _extrema(vectors: Tensor) -> Tensor:
    """Per dimension, the most extreme value: the min where |min| > max, else the max. (N, D) -> (D,)."""
    high, low = vectors.max(0).values, vectors.min(0).values
    return torch.where(low.abs() > high, low, high)


def embedding_extrema(hypothesis: Tensor, reference: Tensor) -> float:
    """Liu et al. (2016) vector extrema (Forgues et al. 2014): cosine of the per-dimension extreme values."""
    _check_vectors(hypothesis, reference)
    return _cosine(_extrema(hypothesis), _extrema(reference))


def embedding_greedy(hypothesis: Tensor, reference: Tensor) -> float:
    """Liu et al. (2016) greedy matching (Rus & Lintean 2012): each word's best cosine with a word of the
    other side, averaged over the words, in both directions, and the two directions averaged."""
    _check_vectors(hypothesis, reference)
    h = torch.nn.functional.normalize(hypothesis.double(), dim=-1, eps=1e-12)
    r = torch.nn.functional.normalize(reference.double(), dim=-1, eps=1e-12)
    cosines = h @ r.T  # (N, M)
    return ((cosines.max(1).values.mean() + cosines.max(0).values.mean()) / 2).item()
