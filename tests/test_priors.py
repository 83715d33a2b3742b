"""Prior components and the KL between a posterior and a prior, against torch.distributions and by-hand
mixtures."""


import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from textvae.distributions import DiagonalGaussian, GaussianMixture, kl_divergence
from textvae.priors import (
    ConditionalGaussianPrior,
    ConditionalMixturePrior,
    MixturePrior,
    StandardNormalPrior,
)

Z = 2


def mixture_prior(seed=0, num_components=3):
    torch.manual_seed(seed)
    prior = MixturePrior(0, Z, num_components=num_components).double()
    with torch.no_grad():  # uneven weights and variances, so that a slip in either shows
        # unnormalised logits: the weights are their softmax (0.2, 0.5, 0.3)
        prior.logits.copy_(torch.log(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)) + 0.7)
        prior.logvar.copy_(torch.tensor([[0.0, -1.0], [0.5, 0.2], [-0.7, 0.3]], dtype=torch.float64))
    return prior


def normals(prior):
    """The components as torch.distributions, batch shape (C,), event (Z,)."""
    return Independent(Normal(prior.mu.detach(), torch.exp(0.5 * prior.logvar.detach())), 1)


def points(*shape, seed=1):
    return 1.5 * torch.randn(*shape, Z, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------
# Mixture prior


def test_mixture_log_density_is_the_logsumexp_of_weighted_normals():
    prior = mixture_prior()
    p = prior(None, 5)
    assert isinstance(p, GaussianMixture)
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    reference = MixtureSameFamily(Categorical(probs=weights), normals(prior))
    for z in (points(5), points(4, 5)):  # (B, Z) and (K, B, Z)
        by_hand = torch.logsumexp(torch.stack([weights[c].log() + Independent(
            Normal(prior.mu[c].detach(), torch.exp(0.5 * prior.logvar[c].detach())), 1).log_prob(z)
            for c in range(3)]), dim=0)
        log_p = p.log_prob(z)
        assert log_p.shape == z.shape[:-1]
        torch.testing.assert_close(log_p, by_hand)
        torch.testing.assert_close(log_p, reference.log_prob(z))


def test_mixture_responsibilities_are_bayes_rule():
    prior = mixture_prior()
    z = points(6)
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    joint = weights * normals(prior).log_prob(z.unsqueeze(-2)).exp()  # (B, C): pi_c N(z; mu_c, var_c)
    responsibilities = prior(None, 6).responsibilities(z)
    torch.testing.assert_close(responsibilities.sum(-1), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(responsibilities, joint / joint.sum(-1, keepdim=True))
    assert responsibilities.max() > 0.9  # the points are not all equidistant from the components


def test_mixture_samples_land_at_the_means_with_the_weights_frequencies():
    prior = MixturePrior(0, Z, num_components=3, learn_weights=True, init_std=1e-3).double()
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    with torch.no_grad():
        prior.mu.copy_(torch.tensor([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]]))
        prior.logits.copy_(weights.log() + 1.7)  # the weights are the softmax, whatever the offset
    samples = prior(None, 1000).sample(k=4, generator=torch.Generator().manual_seed(0))  # (K, B, Z)
    assert samples.shape == (4, 1000, Z)
    distance = torch.cdist(samples.reshape(-1, Z), prior.mu.detach())  # (N, C)
    nearest = distance.argmin(-1)
    assert distance.min(-1).values.max() < 0.01  # every sample within a few sd (1e-3) of a mean
    frequencies = torch.bincount(nearest, minlength=3).double() / nearest.numel()
    # the binomial sd of a frequency from 4000 draws is at most 0.008
    torch.testing.assert_close(frequencies, weights, atol=0.025, rtol=0)
    assert prior(None, 3).sample().shape == (3, Z)
    at_means = prior(None, 3).sample(generator=torch.Generator().manual_seed(1), scale=0.0)
    assert all(any(torch.equal(row, mean) for mean in prior.mu.detach()) for row in at_means)


def test_mixture_weights_are_learned_only_when_asked():
    for learn in (True, False):
        prior = MixturePrior(0, Z, num_components=4, learn_weights=learn)
        prior(None, 3).log_prob(torch.randn(3, Z)).sum().backward()
        assert (prior.logits.grad is not None) == learn
        torch.testing.assert_close(torch.softmax(prior.logits.detach(), -1), torch.full((4,), 0.25))
    with pytest.raises(ValueError):
        MixturePrior(0, Z, num_components=0)


# ---------------------------------------------------------------------------------------------------
# Conditional mixture prior (a mixture per row, from a prior network)


def conditional_mixture(seed=0, rows=4, condition_dim=6):
    torch.manual_seed(seed)
    prior = ConditionalMixturePrior(condition_dim, Z, num_components=3, hidden_dim=8).double()
    condition = torch.randn(rows, condition_dim, generator=torch.Generator().manual_seed(seed + 1),
                            dtype=torch.float64)
    return prior, condition


def test_conditional_mixture_log_density_per_row_against_torch_distributions():
    prior, condition = conditional_mixture()
    p = prior(condition, 4)
    assert p.logits.shape == (4, 3) and p.mu.shape == p.logvar.shape == (4, 3, Z)
    assert not torch.allclose(p.mu[0], p.mu[1])  # each row its own mixture
    reference = MixtureSameFamily(Categorical(logits=p.logits.detach()),
                                  Independent(Normal(p.mu.detach(), torch.exp(0.5 * p.logvar.detach())), 1))
    for z in (points(4), points(5, 4)):  # (B, Z) and (K, B, Z)
        log_p = p.log_prob(z)
        assert log_p.shape == z.shape[:-1]
        torch.testing.assert_close(log_p, reference.log_prob(z))
    row = 2  # one row by hand: log sum_c pi_c N(z; mu_c, var_c)
    z = points(4, seed=3)[row]
    weights = torch.softmax(p.logits[row], -1)
    by_hand = torch.log(sum(weights[c] * Independent(Normal(p.mu[row, c], torch.exp(0.5 * p.logvar[row, c])), 1)
                            .log_prob(z).exp() for c in range(3)))
    torch.testing.assert_close(p.log_prob(points(4, seed=3))[row], by_hand)
    p.log_prob(z).sum().backward()  # every head learns from the density
    assert all(param.grad is not None for param in prior.parameters())


def test_conditional_mixture_samples_each_row_from_its_own_components():
    prior, condition = conditional_mixture(rows=2)
    with torch.no_grad():  # far-apart, narrow components; row 0 and row 1 get different weights
        p = prior(condition, 2)
        mu = torch.tensor([[[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]], [[0.0, -5.0], [9.0, 9.0], [-9.0, 9.0]]],
                          dtype=torch.float64)
        weights = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], dtype=torch.float64)
        p = p._replace(logits=weights.log() + 0.4, mu=mu, logvar=torch.full_like(mu, -14.0))
    samples = p.sample(k=3000, generator=torch.Generator().manual_seed(0))  # (K, B, Z)
    assert samples.shape == (3000, 2, Z) and p.sample().shape == (2, Z)
    for row in range(2):
        distance = torch.cdist(samples[:, row], mu[row])  # (K, C)
        assert distance.min(-1).values.max() < 0.01  # every draw at one of its own row's means
        frequencies = torch.bincount(distance.argmin(-1), minlength=3).double() / 3000
        torch.testing.assert_close(frequencies, weights[row], atol=0.03, rtol=0)  # binomial sd <= 0.009
    at_means = p.sample(k=5, generator=torch.Generator().manual_seed(1), scale=0.0)
    assert all(any(torch.equal(at_means[k, row], m) for m in mu[row]) for k in range(5) for row in range(2))


def test_conditional_mixture_needs_a_condition():
    with pytest.raises(ValueError, match="needs a condition"):
        ConditionalMixturePrior(0, Z)
    with pytest.raises(ValueError, match="num_components"):
        ConditionalMixturePrior(4, Z, num_components=0)
    with pytest.raises(ValueError, match="needs the condition"):
        ConditionalMixturePrior(4, Z)(None, 3)


# ---------------------------------------------------------------------------------------------------
# Gaussian priors


def test_conditional_prior_depends_on_the_condition_and_needs_one():
    torch.manual_seed(0)
    prior = ConditionalGaussianPrior(6, Z, hidden_dim=8, num_hidden=2)
    c = torch.randn(4, 6)
    p = prior(c, 4)
    assert isinstance(p, DiagonalGaussian) and p.mu.shape == p.logvar.shape == (4, Z)
    # rows with different conditions differ, and a row depends only on its own condition
    assert not torch.allclose(p.mu[0], p.mu[1])
    again = prior(torch.cat([c[:1], torch.randn(3, 6)]), 4)
    torch.testing.assert_close(again.mu[0], p.mu[0])
    torch.testing.assert_close(again.logvar[0], p.logvar[0])
    assert not torch.allclose(again.mu[1:], p.mu[1:])
    linear = ConditionalGaussianPrior(6, Z, num_hidden=0)  # no hidden layer: mu linear in c
    torch.testing.assert_close(linear(c, 4).mu, c @ linear.to_mu.weight.T + linear.to_mu.bias)
    with pytest.raises(ValueError, match="condition"):
        ConditionalGaussianPrior(0, Z)
    with pytest.raises(ValueError, match="condition"):
        prior(None, 4)


def test_standard_normal_prior_is_zeros_of_the_batch_shape_on_the_module_device():
    prior = StandardNormalPrior(0, 3)
    p = prior(None, 5)
    assert torch.equal(p.mu, torch.zeros(5, 3)) and torch.equal(p.logvar, torch.zeros(5, 3))
    assert prior.double()(None, 2).mu.dtype == torch.float64
    on_meta = prior.to("meta")(None, 2)  # a device other than the CPU, without an accelerator
    assert on_meta.mu.device.type == "meta" and on_meta.logvar.shape == (2, 3)
    z = torch.randn(4, 5, 3)
    torch.testing.assert_close(StandardNormalPrior(0, 3)(None, 5).log_prob(z),
                               Independent(Normal(torch.zeros(3), torch.ones(3)), 1).log_prob(z))


# ---------------------------------------------------------------------------------------------------
# KL(q || p)


def test_gaussian_kl_is_closed_form_and_agrees_with_torch_distributions():
    g = torch.Generator().manual_seed(0)
    q = DiagonalGaussian(torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g))
    p = DiagonalGaussian(torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g))
    kl = kl_divergence(q, p, None, None)  # the sample is not needed in closed form
    assert kl.closed_form and kl.value.shape == (4, 3)
    as_normal = lambda d: Normal(d.mu, torch.exp(0.5 * d.logvar))  # noqa: E731
    torch.testing.assert_close(kl.value, torch.distributions.kl_divergence(as_normal(q), as_normal(p)))
    torch.testing.assert_close(kl.value.sum(-1), torch.distributions.kl_divergence(
        Independent(as_normal(q), 1), Independent(as_normal(p), 1)))
    standard = StandardNormalPrior(0, 3)(None, 4)  # zeros broadcast against q
    torch.testing.assert_close(kl_divergence(q, standard, None, None).value,
                               0.5 * (q.mu.pow(2) + q.logvar.exp() - q.logvar - 1))


def test_kl_to_a_mixture_prior_is_a_monte_carlo_estimate_that_converges():
    prior = mixture_prior()
    p = prior(None, 3)
    g = torch.Generator().manual_seed(0)
    q = DiagonalGaussian(torch.randn(3, Z, generator=g, dtype=torch.float64),
                         0.5 * torch.randn(3, Z, generator=g, dtype=torch.float64))
    q_dist = Independent(Normal(q.mu, torch.exp(0.5 * q.logvar)), 1)
    p_dist = MixtureSameFamily(Categorical(logits=prior.logits.detach()), normals(prior))
    # one sample: log q(z) - log p(z) there, by torch.distributions
    z, log_q = q.rsample_with_log_prob(torch.randn(3, Z, generator=g, dtype=torch.float64))
    one = kl_divergence(q, p, z, log_q)
    assert not one.closed_form and one.value.shape == (3, 1)
    torch.testing.assert_close(one.value[:, 0], q_dist.log_prob(z) - p_dist.log_prob(z))
    # K samples are averaged; the mean approaches a reference from 10x more (the estimate's sd is <= 0.012)
    reference_z = q.mu + torch.exp(0.5 * q.logvar) * torch.randn(200_000, 3, Z, generator=g, dtype=torch.float64)
    reference = (q_dist.log_prob(reference_z) - p_dist.log_prob(reference_z)).mean(0)  # (B,)
    z, log_q = q.rsample_with_log_prob(torch.randn(20_000, 3, Z, generator=g, dtype=torch.float64))
    estimate = kl_divergence(q, p, z, log_q).value[:, 0]
    torch.testing.assert_close(estimate, reference, atol=0.05, rtol=0)
    assert (reference > 0.1).all()  # a KL far from 0: the tolerance is not the whole value
