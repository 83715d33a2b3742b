import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from textvae.objectives import (
    bag_of_words_nll,
    free_bits_kl,
    gaussian_kl,
    gaussian_kl_between,
    importance_weighted_nll,
    kl_term,
    lerp,
    log_normal,
    log_standard_normal,
    reparameterize,
    slerp,
    word_dropout,
)


def _gaussians(b=5, z=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, z, generator=g, dtype=torch.float64), torch.randn(
        b, z, generator=g, dtype=torch.float64
    )


def _normal(mu, logvar):
    return Normal(mu, torch.exp(0.5 * logvar))


# ---------------------------------------------------------------------------------------------------
# Sampling and densities


def test_reparameterize_shapes_determinism_and_moments():
    mu = torch.tensor([[1.0, -2.0]])
    logvar = torch.log(torch.tensor([[0.25, 4.0]]))
    assert reparameterize(mu, logvar).shape == (1, 2)
    z = reparameterize(mu, logvar, k=20_000, generator=torch.Generator().manual_seed(0))  # (K, B, Z)
    assert z.shape == (20_000, 1, 2)
    again = reparameterize(mu, logvar, k=20_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    torch.testing.assert_close(z.mean(0), mu, atol=0.05, rtol=0)
    torch.testing.assert_close(z.var(0), logvar.exp(), atol=0.1, rtol=0.03)
    with pytest.raises(ValueError):
        reparameterize(mu, logvar, k=0)


def test_log_normal_matches_torch_distributions_and_broadcasts_over_k():
    mu, logvar = _gaussians()
    z = torch.randn(7, *mu.shape, dtype=torch.float64)  # (K, B, Z)
    expected = _normal(mu, logvar).log_prob(z).sum(-1)  # (K, B)
    torch.testing.assert_close(log_normal(z, mu, logvar), expected)
    torch.testing.assert_close(log_normal(z[0], mu, logvar), expected[0])
    torch.testing.assert_close(log_standard_normal(z), Normal(0.0, 1.0).log_prob(z).sum(-1))


# ---------------------------------------------------------------------------------------------------
# KL


def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = _gaussians()
    expected = kl_divergence(_normal(mu, logvar), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    kl = gaussian_kl(mu, logvar)
    assert kl.shape == mu.shape
    torch.testing.assert_close(kl, expected)
    assert torch.all(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_gaussian_kl_between_matches_torch_distributions():
    mu_q, logvar_q = _gaussians(seed=1)
    mu_p, logvar_p = _gaussians(seed=2)
    expected = kl_divergence(_normal(mu_q, logvar_q), _normal(mu_p, logvar_p))
    torch.testing.assert_close(gaussian_kl_between(mu_q, logvar_q, mu_p, logvar_p), expected)
    torch.testing.assert_close(
        gaussian_kl_between(mu_q, logvar_q, torch.zeros_like(mu_q), torch.zeros_like(mu_q)),
        gaussian_kl(mu_q, logvar_q),
    )


def test_free_bits_off_is_the_batch_mean_kl():
    kl = torch.tensor([[0.1, 2.0], [0.3, 0.0]])
    assert free_bits_kl(kl).item() == pytest.approx((2.1 + 0.3) / 2)
    # a per-turn (B, U, Z) KL: every turn is one example
    per_turn = torch.stack([kl, 2 * kl])  # (2, 2, 2)
    assert free_bits_kl(per_turn).item() == pytest.approx(per_turn.sum(-1).mean().item())
    assert free_bits_kl(per_turn, per_sentence=1.0).item() == pytest.approx((1.0 + 2.1 + 1.0 + 4.2) / 4)


def test_free_bits_per_dimension_clamps_the_batch_mean_of_each_dimension():
    kl = torch.tensor([[0.1, 2.0, 0.0], [0.3, 0.0, 0.0]])  # batch means per dim: 0.2, 1.0, 0.0
    value = free_bits_kl(kl, per_dim=0.5)
    assert value.dim() == 0
    assert value.item() == pytest.approx(0.5 + 1.0 + 0.5)
    # below the threshold a dimension gets no gradient; above it, the batch-mean gradient 1/B
    kl = kl.clone().requires_grad_(True)
    free_bits_kl(kl, per_dim=0.5).backward()
    assert kl.grad.tolist() == [[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]]


def test_free_bits_per_sentence_clamps_each_sentence_total():
    kl = torch.tensor([[0.1, 0.2], [3.0, 1.0]], requires_grad=True)  # totals 0.3 and 4.0
    value = free_bits_kl(kl, per_sentence=1.0)
    assert value.item() == pytest.approx((1.0 + 4.0) / 2)
    value.backward()
    assert kl.grad.tolist() == [[0.0, 0.0], [0.5, 0.5]]


def test_free_bits_rejects_bad_arguments():
    kl = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="not both"):
        free_bits_kl(kl, per_dim=0.1, per_sentence=1.0)
    with pytest.raises(ValueError):
        free_bits_kl(kl, per_dim=-1.0)
    with pytest.raises(ValueError):
        free_bits_kl(torch.zeros(3))


def test_kl_term_beta_and_capacity():
    kl = torch.tensor(3.0)
    assert kl_term(kl, beta=0.5).item() == pytest.approx(1.5)
    assert kl_term(kl, beta=2.0, capacity=5.0).item() == pytest.approx(4.0)  # 2 |3 - 5|
    assert kl_term(kl, beta=2.0, capacity=1.0).item() == pytest.approx(4.0)  # 2 |3 - 1|
    torch.testing.assert_close(kl_term(torch.tensor([1.0, 4.0]), 1.0, capacity=2.0), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError):
        kl_term(kl, 1.0, capacity=-1.0)


# ---------------------------------------------------------------------------------------------------
# Importance-weighted bound on a linear-Gaussian model with a closed-form log p(x)
#   z ~ N(0, 1), x | z ~ N(z, s2)  =>  p(x) = N(0, 1 + s2)


S2 = 0.5


def _toy_iw_nll(x, mu_q, logvar_q, k, generator):
    # x, mu_q, logvar_q: (B, 1)
    z = reparameterize(mu_q, logvar_q, k=k, generator=generator)  # (K, B, 1)
    log_px_given_z = log_normal(x, z, torch.full_like(z, math.log(S2)))  # (K, B)
    return importance_weighted_nll(log_px_given_z, log_standard_normal(z), log_normal(z, mu_q, logvar_q)), (
        log_px_given_z,
        z,
    )


def test_importance_weighted_nll_tightens_towards_minus_log_px():
    reps = 4000
    x = torch.full((reps, 1), 1.5, dtype=torch.float64)  # the same x, many independent estimates
    nll_true = -Normal(0.0, math.sqrt(1 + S2)).log_prob(torch.tensor(1.5, dtype=torch.float64)).item()
    # a deliberately imperfect q (the true posterior is N(1.0, 1/3))
    mu_q = torch.full_like(x, 0.6)
    logvar_q = torch.full_like(x, math.log(0.6))
    g = torch.Generator().manual_seed(0)
    means = {k: _toy_iw_nll(x, mu_q, logvar_q, k, g)[0].mean().item() for k in (1, 5, 50, 500)}
    # analytic negative ELBO: E_q[-log p(x|z)] + KL(q || p)
    var_q = 0.6
    neg_elbo = 0.5 * (math.log(2 * math.pi * S2) + ((1.5 - 0.6) ** 2 + var_q) / S2)
    neg_elbo += gaussian_kl(mu_q[:1], logvar_q[:1]).sum().item()
    assert means[1] == pytest.approx(neg_elbo, abs=0.03)
    assert neg_elbo > nll_true + 0.1  # the test is only meaningful if q is imperfect
    assert means[1] > means[5] > means[50] > means[500] >= nll_true - 1e-3
    assert means[500] == pytest.approx(nll_true, abs=0.01)


def test_importance_weighted_nll_with_one_sample_is_the_negative_elbo_sample():
    x = torch.tensor([[0.3], [-1.0]], dtype=torch.float64)
    mu_q, logvar_q = (
        torch.tensor([[0.1], [-0.4]], dtype=torch.float64),
        torch.tensor([[-1.0], [0.2]], dtype=torch.float64),
    )
    nll, (log_px_given_z, z) = _toy_iw_nll(x, mu_q, logvar_q, 1, torch.Generator().manual_seed(3))
    elbo = log_px_given_z[0] + log_standard_normal(z[0]) - log_normal(z[0], mu_q, logvar_q)
    assert nll.shape == (2,)
    torch.testing.assert_close(nll, -elbo)


def test_importance_weighted_nll_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        importance_weighted_nll(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2, 3))


# ---------------------------------------------------------------------------------------------------
# Word dropout

PAD, BOS, EOS, UNK = 0, 1, 2, 3


def _tokens(shape=(200, 500), seed=0):
    return torch.randint(0, 50, shape, generator=torch.Generator().manual_seed(seed))


def test_bag_of_words_nll_hand_computed():
    logits = torch.log(torch.tensor([[1.0, 1.0, 2.0, 3.0]]))  # softmax: [1, 1, 2, 3] / 7
    expected = -(math.log(2 / 7) + 2 * math.log(3 / 7))  # words 2, 3, 3; id 0 is padding
    assert bag_of_words_nll(logits, torch.tensor([[2, 3, 3, 0]]), pad_id=0).item() == pytest.approx(expected)
    # word order does not matter and padding adds nothing
    assert bag_of_words_nll(logits, torch.tensor([[3, 0, 2, 3]]), pad_id=0).item() == pytest.approx(expected)
    rows = bag_of_words_nll(logits.expand(2, -1), torch.tensor([[2, 0], [0, 0]]), pad_id=0)
    assert rows.tolist() == pytest.approx([-math.log(2 / 7), 0.0])


def test_word_dropout_rate_is_p_on_unprotected_tokens():
    tokens = _tokens()
    out = word_dropout(
        tokens, 0.3, unk_id=UNK, protected={PAD, BOS, EOS}, generator=torch.Generator().manual_seed(1)
    )
    eligible = ~torch.isin(tokens, torch.tensor([PAD, BOS, EOS, UNK]))
    rate = (out[eligible] == UNK).float().mean().item()
    assert rate == pytest.approx(0.3, abs=0.01)
    changed = out != tokens
    assert torch.all(out[changed] == UNK)
    assert not changed[~eligible].any()


def test_word_dropout_never_touches_protected_ids_even_at_p_one():
    tokens = _tokens((20, 30))
    tokens[:, 0] = BOS
    tokens[:, -5:] = PAD
    protected = torch.tensor([PAD, BOS, 7])
    out = word_dropout(tokens, 1.0, unk_id=UNK, protected=protected)
    is_protected = torch.isin(tokens, protected)
    assert torch.equal(out[is_protected], tokens[is_protected])
    assert torch.all(out[~is_protected] == UNK)
    assert torch.all(out[:, 0] == BOS) and torch.all(out[:, -5:] == PAD)


def test_word_dropout_p_zero_is_a_copy_and_seeded_calls_are_deterministic():
    tokens = _tokens((4, 9))
    out = word_dropout(tokens, 0.0, unk_id=UNK, protected={PAD, BOS})
    assert torch.equal(out, tokens) and out.data_ptr() != tokens.data_ptr()
    a = word_dropout(
        tokens, 0.5, unk_id=UNK, protected={PAD, BOS}, generator=torch.Generator().manual_seed(5)
    )
    b = word_dropout(
        tokens, 0.5, unk_id=UNK, protected={PAD, BOS}, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(a, b) and not torch.equal(a, tokens)
    with pytest.raises(ValueError):
        word_dropout(tokens, 1.5, unk_id=UNK, protected={PAD})


# ---------------------------------------------------------------------------------------------------
# Interpolation


def test_lerp_endpoints_and_midpoint():
    z0, z1 = torch.tensor([0.0, 2.0]), torch.tensor([4.0, -2.0])
    path = lerp(z0, z1, 5)
    assert path.shape == (5, 2)
    assert torch.equal(path[0], z0) and torch.equal(path[-1], z1)
    torch.testing.assert_close(path[2], torch.tensor([2.0, 0.0]))
    with pytest.raises(ValueError):
        lerp(z0, z1, 1)


def test_slerp_follows_the_great_circle():
    z0, z1 = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 3.0, 0.0])
    path = slerp(z0, z1, 9)
    assert path.shape == (9, 3)
    assert torch.equal(path[0], z0) and torch.equal(path[-1], z1)
    torch.testing.assert_close(path.norm(dim=-1), torch.full((9,), 3.0))
    torch.testing.assert_close(path[4], torch.tensor([3.0, 3.0, 0.0]) / math.sqrt(2))
    # lerp cuts through the middle instead
    assert lerp(z0, z1, 9)[4].norm() < 2.2


def test_slerp_parallel_antiparallel_and_zero_vectors_fall_back_to_lerp():
    z0 = torch.tensor([1.0, 2.0])
    for z1 in (2 * z0, z0 + 1e-9, -z0, torch.zeros(2)):
        path = slerp(z0, z1, 6)
        assert torch.isfinite(path).all()
        torch.testing.assert_close(path, lerp(z0, z1, 6))


def test_slerp_on_a_batch_of_pairs():
    z0 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z1 = torch.tensor([[0.0, 1.0], [2.0, 2.0]])  # the second pair is parallel
    path = slerp(z0, z1, 3)  # (steps, B, Z)
    assert path.shape == (3, 2, 2)
    torch.testing.assert_close(path[1, 0], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    torch.testing.assert_close(path[1, 1], torch.tensor([1.5, 1.5]))
