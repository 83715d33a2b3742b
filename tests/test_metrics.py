import math

import pytest
import torch

from textvae.metrics import (
    active_units,
    corpus_bleu,
    dataset_mutual_information,
    distinct_n,
    mutual_information,
    perplexity,
    self_bleu,
)

# ---------------------------------------------------------------------------------------------------
# Active units


def test_active_units_on_constructed_means():
    g = torch.Generator().manual_seed(0)
    n = 1000
    mu = torch.stack(
        [
            torch.randn(n, generator=g),  # variance ~1: active
            0.05 * torch.randn(n, generator=g),  # variance ~0.0025: inactive
            torch.full((n,), 3.0),  # constant: inactive
            0.5 * torch.randn(n, generator=g),  # variance ~0.25: active
        ],
        dim=1,
    )  # (N, Z)
    count, variances = active_units(mu)
    assert count == 2
    assert variances.shape == (4,)
    torch.testing.assert_close(variances, mu.var(dim=0))  # unbiased, as He et al.
    assert active_units(mu, threshold=0.001)[0] == 3
    with pytest.raises(ValueError):
        active_units(mu[:1])


# ---------------------------------------------------------------------------------------------------
# Mutual information


def _reference_calc_mi(mu, logvar, z):
    """He et al. (2019) calc_mi, transcribed with the samples z given."""
    x_batch, nz = mu.shape
    neg_entropy = (-0.5 * nz * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    dev = z.unsqueeze(1) - mu.unsqueeze(0)
    var = logvar.exp().unsqueeze(0)
    log_density = -0.5 * ((dev**2) / var).sum(-1) - 0.5 * (
        nz * math.log(2 * math.pi) + logvar.unsqueeze(0).sum(-1)
    )
    log_qz = torch.logsumexp(log_density, dim=1) - math.log(x_batch)
    return (neg_entropy - log_qz.mean()).item()


def test_mutual_information_is_he_et_al_calc_mi():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(16, 4, generator=g), torch.randn(16, 4, generator=g)
    z = torch.randn(16, 4, generator=g)
    assert mutual_information(mu, logvar, z) == pytest.approx(_reference_calc_mi(mu, logvar, z), rel=1e-5)


def test_mutual_information_is_zero_when_q_ignores_x():
    b, z_dim = 2000, 2
    mu = torch.full((b, z_dim), 0.7, dtype=torch.float64)
    logvar = torch.full((b, z_dim), -0.3, dtype=torch.float64)
    mi = mutual_information(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert abs(mi) < 0.1  # the sampling noise of the estimate is about 1/sqrt(B) = 0.02


def test_mutual_information_matches_the_linear_gaussian_closed_form():
    # x ~ N(0, I), q(z|x) = N(a x, s2 I)  =>  I(x; z) = Z/2 log(1 + a^2 / s2)
    b, z_dim, a, s2 = 2000, 2, 1.0, 0.25
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, z_dim, generator=g, dtype=torch.float64)
    mu = a * x
    logvar = torch.full_like(mu, math.log(s2))
    expected = z_dim / 2 * math.log(1 + a**2 / s2)  # log 5 = 1.609
    assert mutual_information(mu, logvar, generator=g) == pytest.approx(expected, abs=0.08)


def test_dataset_mutual_information_weights_batches_by_size():
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(b, 2, generator=g), torch.randn(b, 2, generator=g)) for b in (3, 5)]
    total = dataset_mutual_information(batches, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)  # the same draws, batch by batch
    per_batch = [mutual_information(mu, logvar, generator=g) for mu, logvar in batches]
    assert total == pytest.approx((3 * per_batch[0] + 5 * per_batch[1]) / 8)
    with pytest.raises(ValueError):
        dataset_mutual_information([])


# ---------------------------------------------------------------------------------------------------
# Distinct-n and BLEU


def test_distinct_n_hand_computed():
    sentences = ["a b a b", "a b c"]
    # unigrams: a b a b a b c -> 3 distinct of 7; bigrams: ab ba ab ab bc -> 3 distinct of 5
    assert distinct_n(sentences, 1) == pytest.approx(3 / 7)
    assert distinct_n(sentences, 2) == pytest.approx(3 / 5)
    assert distinct_n([s.split() for s in sentences], 2) == pytest.approx(3 / 5)
    assert distinct_n(sentences, 2, denominator="tokens") == pytest.approx(3 / 7)
    assert distinct_n(["a", ""], 2) == 0.0
    with pytest.raises(ValueError):
        distinct_n(sentences, 0)


def test_corpus_bleu_hand_computed():
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    # precisions 4/5, 3/4, 2/3, 1/2 and no brevity penalty: BLEU = (1/5) ** (1/4)
    expected = 100 * 0.2**0.25
    assert corpus_bleu(["a b c d e"], ["a b c d f"]) == pytest.approx(expected, abs=1e-3)
    assert corpus_bleu(["a b c d e"], [["a b c d f", "x y"]]) == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError):
        corpus_bleu(["a"], ["a", "b"])


def test_self_bleu_hand_computed():
    assert self_bleu(["a b c d", "a b c d"]) == pytest.approx(100.0)
    # each of the first two against the other: 100 * 0.2 ** 0.25; the third shares nothing: 0
    expected = 2 * 100 * 0.2**0.25 / 3
    assert self_bleu(["a b c d e", "a b c d f", "v w x y z"]) == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError):
        self_bleu(["only one"])


@pytest.mark.parametrize("tokenize", ["none", "13a"])
def test_self_bleu_equals_the_quadratic_sacrebleu_definition(tokenize):
    import random

    import sacrebleu

    rng = random.Random(0)
    words = "the a cat dog sat ran on under mat , .".split()
    sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(40)]
    sentences += [sentences[0], sentences[1] + " !"]  # duplicates and near-duplicates
    expected = sum(
        sacrebleu.sentence_bleu(s, sentences[:i] + sentences[i + 1 :], tokenize=tokenize).score
        for i, s in enumerate(sentences)
    ) / len(sentences)
    assert self_bleu(sentences, tokenize=tokenize) == pytest.approx(expected, rel=1e-9)


def test_linear_probe_finds_linear_signal_and_not_noise():
    from textvae.metrics import linear_probe

    g = torch.Generator().manual_seed(0)
    labels = [["a", "b", "c"][i % 3] for i in range(600)]
    centers = torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])
    signal = torch.stack([centers[i % 3] for i in range(600)]) + 0.5 * torch.randn(600, 2, generator=g)
    accuracy, chance = linear_probe(signal, labels)
    assert accuracy > 0.95 and abs(chance - 1 / 3) < 0.1
    noise_accuracy, _ = linear_probe(torch.randn(600, 2, generator=g), labels)
    assert noise_accuracy < 0.5


def test_perplexity_is_exp_of_the_mean_nll_and_overflows_to_inf():
    assert perplexity(2 * math.log(7.0), 2) == pytest.approx(7.0)
    assert perplexity(1e6, 1) == math.inf
