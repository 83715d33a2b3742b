"""The inference families of textvae.inference and the IWAE objective on a linear-Gaussian model whose
log p(x) and exact posterior are known in closed form:

    p(z) = N(0, I),  p(x | z) = N(x; z, s^2 I)  =>  p(x) = N(x; 0, (1 + s^2) I),
    p(z | x) = N(x / (1 + s^2), s^2 / (1 + s^2) I),

with an amortised q(z | x) = N(a x + c, exp(logvar) I) whose a, c, logvar we set (or learn)."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

from textvae.distributions import DiagonalGaussian, FlowDistribution
from textvae.inference import concatenate, elbo, importance_samples, mutual_information, refine
from textvae.models.modules import Inference
from textvae.objectives import importance_weighted_nll
from textvae.posteriors import IAFStep, PlanarStep
from textvae.training_objectives import IWAE

F64 = torch.float64
Z = 2


class LinearGaussian(nn.Module):
    """The toy model on the LatentModel contract: a batch is x (B, Z) itself."""

    def __init__(self, s: float = 0.8, a: float = 0.2, c: float = 0.5, logvar: float = 0.5):
        super().__init__()
        self.s = s
        self.a = nn.Parameter(torch.tensor(a, dtype=F64))
        self.c = nn.Parameter(torch.tensor(c, dtype=F64))
        self.logvar = nn.Parameter(torch.tensor(logvar, dtype=F64))

    def infer(self, x):
        zeros = torch.zeros_like(x)
        return Inference(q=DiagonalGaussian(self.a * x + self.c, self.logvar.expand_as(x)),
                         p=DiagonalGaussian(zeros, zeros), condition=None)

    def log_px_given_z(self, x, z, chunk=None, condition=None):
        return Normal(z, self.s).log_prob(x).sum(-1)  # (K, B)

    # -- closed forms -------------------------------------------------------------------------------

    def log_px(self, x):
        return Normal(0.0, math.sqrt(1 + self.s**2)).log_prob(x).sum(-1)  # (B,)

    def exact_posterior(self, x):
        return DiagonalGaussian(x / (1 + self.s**2), torch.full_like(x, math.log(self.s**2 / (1 + self.s**2))))

    def elbo_of(self, q: DiagonalGaussian, x):
        """E_q log p(x | z) - KL(q || N(0, I)) in closed form: (B,)."""
        var = q.logvar.exp()
        expected_log_px = (-0.5 * math.log(2 * math.pi * self.s**2) - ((x - q.mu).pow(2) + var) / (2 * self.s**2))
        kl = 0.5 * (q.mu.pow(2) + var - q.logvar - 1)
        return (expected_log_px - kl).sum(-1)


def data(n, s=0.8, seed=0):
    """x ~ p(x) of the model with this s."""
    return math.sqrt(1 + s**2) * torch.randn(n, Z, generator=torch.Generator().manual_seed(seed), dtype=F64)


def normal(mu, logvar):
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)


# ---------------------------------------------------------------------------------------------------
# Importance sampling and the IW bound


def test_importance_samples_are_the_three_terms_at_z_from_the_noise():
    model, x = LinearGaussian(), data(5)
    eps = torch.randn(3, 5, Z, generator=torch.Generator().manual_seed(1), dtype=F64)
    terms = importance_samples(model, x, 3, noise=eps)
    mu, logvar = model.a * x + model.c, model.logvar.expand_as(x)
    z = mu + torch.exp(0.5 * logvar) * eps  # (K, B, Z)
    torch.testing.assert_close(terms.log_px_given_z, Normal(z, model.s).log_prob(x).sum(-1))
    torch.testing.assert_close(terms.log_pz, Normal(0.0, 1.0).log_prob(z).sum(-1))
    torch.testing.assert_close(terms.log_qz, normal(mu, logvar).log_prob(z))


def test_iw_bound_tightens_with_k_toward_the_exact_log_likelihood():
    model, x = LinearGaussian(), data(200)
    exact = float(model.log_px(x).mean())
    with torch.no_grad():
        bounds = [float(-importance_weighted_nll(*importance_samples(
            model, x, k, generator=torch.Generator().manual_seed(1))).mean()) for k in (1, 4, 32, 256)]
    assert bounds == sorted(bounds) and bounds[-1] <= exact  # a lower bound on log p(x), rising with k
    assert exact - bounds[0] > 1.0  # the deliberately poor q leaves a wide gap at k = 1 ...
    assert exact - bounds[-1] < 0.05  # ... that 256 samples all but close
    # with the exact posterior every weight p(x, z) / q(z | x) is p(x): the bound is exact for any k
    exact_q = model.exact_posterior(x)
    eps = torch.randn(2, 200, Z, generator=torch.Generator().manual_seed(2), dtype=F64)
    inference = Inference(q=exact_q, p=model.infer(x).p, condition=None)
    terms = importance_samples(model, x, 2, inference=inference, noise=eps)
    torch.testing.assert_close(-importance_weighted_nll(*terms), model.log_px(x))
    torch.testing.assert_close(terms.log_px_given_z + terms.log_pz - terms.log_qz, model.log_px(x).expand(2, -1))


def test_iwae_with_one_sample_is_the_negative_one_sample_elbo():
    model, x = LinearGaussian(), data(6)
    torch.manual_seed(3)
    terms = IWAE(k=1)(model, x, beta=1.0)
    torch.manual_seed(3)  # the same draw, by hand
    eps = torch.randn(1, 6, Z, dtype=F64)
    with torch.no_grad():
        mu, logvar = model.a * x + model.c, model.logvar.expand_as(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    log_px = Normal(z, model.s).log_prob(x).sum(-1)  # (1, B)
    log_ratio = Normal(0.0, 1.0).log_prob(z).sum(-1) - normal(mu, logvar).log_prob(z)
    one_sample_elbo = (log_px + log_ratio).mean()
    torch.testing.assert_close(terms.loss.detach(), -one_sample_elbo)
    torch.testing.assert_close(terms.metrics["iw_bound"].detach(), one_sample_elbo)
    torch.testing.assert_close(terms.metrics["reconstruction"].detach(), -log_px.mean())
    closed_kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(-1).mean()  # the metric: closed form
    torch.testing.assert_close(terms.metrics["kl"].detach(), closed_kl)
    terms.loss.backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in model.parameters())
    # beta < 1 weighs the prior-to-posterior ratio of every sample: k = 3, beta = 0.3 by hand
    torch.manual_seed(4)
    annealed = IWAE(k=3)(model, x, beta=0.3).loss.detach()
    torch.manual_seed(4)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(3, 6, Z, dtype=F64)
    log_w = (Normal(z, model.s).log_prob(x).sum(-1)
             + 0.3 * (Normal(0.0, 1.0).log_prob(z).sum(-1) - normal(mu, logvar).log_prob(z)))  # (K, B)
    torch.testing.assert_close(annealed, -(torch.logsumexp(log_w, 0) - math.log(3)).mean())


def test_iwae_loss_decreases_with_k_toward_the_negative_log_likelihood():
    model, x = LinearGaussian(), data(500, seed=5)
    torch.manual_seed(0)
    with torch.no_grad():
        losses = [sum(float(IWAE(k=k)(model, x, beta=1.0).loss) for _ in range(3)) / 3 for k in (1, 3, 10, 30)]
    nll = -float(model.log_px(x).mean())
    assert losses == sorted(losses, reverse=True)
    assert losses[-1] > nll and losses[0] - losses[-1] > 2.0  # the steps are far above their noise (~0.1)
    # k = 1 in expectation: the closed-form negative ELBO
    assert losses[0] == pytest.approx(-float(model.elbo_of(model.infer(x).q, x).mean().detach()), abs=0.15)
    with pytest.raises(ValueError):
        IWAE(k=0)


class ShiftedLinearGaussian(LinearGaussian):
    """The toy with a decoder parameter: p(x | z) = N(x; z + b, s^2 I)."""

    def __init__(self, b: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.b = nn.Parameter(torch.tensor(b, dtype=F64))

    def log_px_given_z(self, x, z, chunk=None, condition=None):
        return Normal(z + self.b, self.s).log_prob(x).sum(-1)  # (K, B)


def iwae_gradients(model, x, k, beta, estimator, seed):
    model.zero_grad()
    torch.manual_seed(seed)
    terms = IWAE(k=k, estimator=estimator)(model, x, beta=beta)
    terms.loss.backward()
    return terms, {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_dreg_estimates_the_same_gradient_as_the_reparameterised_bound(beta):
    """The same draws give the same loss, metrics and decoder gradient; the encoder's gradients (a, c, logvar)
    differ draw by draw but agree in expectation: over 40,000 rows both are within a few standard errors of
    each other."""
    model, x = ShiftedLinearGaussian(), data(40000, seed=7)
    reparam, g_reparam = iwae_gradients(model, x, 5, beta, "reparam", seed=11)
    dreg, g_dreg = iwae_gradients(model, x, 5, beta, "dreg", seed=11)
    torch.testing.assert_close(dreg.loss, reparam.loss)
    for key in reparam.metrics:
        torch.testing.assert_close(dreg.metrics[key], reparam.metrics[key])
    torch.testing.assert_close(g_dreg["b"], g_reparam["b"])  # the decoder's gradient is the same estimator
    assert not torch.allclose(g_dreg["logvar"], g_reparam["logvar"])  # the encoder's is another one
    for name in ("a", "c", "logvar"):  # ... with the same mean: compare over independent draws
        means = {est: torch.stack([iwae_gradients(model, x, 5, beta, est, seed=s)[1][name] for s in range(4)])
                 for est in ("reparam", "dreg")}
        spread = (means["reparam"].std() + means["dreg"].std()) / 2
        assert abs(float(means["reparam"].mean() - means["dreg"].mean())) < 4 * float(spread) + 1e-3, name


def test_dreg_encoder_gradient_vanishes_at_the_exact_posterior():
    """At q = p(z | x) every weight is p(x): DReG's encoder gradient is zero for every draw (beta = 1), while the
    reparameterised one still carries the score term's noise."""
    s = 0.8
    model = ShiftedLinearGaussian(b=0.0, s=s, a=1 / (1 + s**2), c=0.0, logvar=math.log(s**2 / (1 + s**2)))
    x = data(64, s=s, seed=3)
    _, g_dreg = iwae_gradients(model, x, 5, 1.0, "dreg", seed=1)
    _, g_reparam = iwae_gradients(model, x, 5, 1.0, "reparam", seed=1)
    for name in ("a", "c", "logvar"):
        torch.testing.assert_close(g_dreg[name], torch.zeros((), dtype=F64), atol=1e-12, rtol=0)
    assert max(abs(float(g_reparam[name])) for name in ("a", "c", "logvar")) > 1e-3


def test_dreg_refuses_a_flow_posterior_and_unknown_estimators():
    model, x = LinearGaussian(), data(4)
    base = model.infer(x)
    flow = FlowDistribution(base.q, torch.zeros(4, 2 * Z + 1, dtype=F64), identity_flows())
    model.infer = lambda batch: Inference(q=flow, p=base.p, condition=None)
    with pytest.raises(ValueError, match="diagonal-Gaussian posterior"):
        IWAE(k=2, estimator="dreg")(model, x, beta=1.0)
    with pytest.raises(ValueError, match="reparam, dreg"):
        IWAE(k=2, estimator="score")


# ---------------------------------------------------------------------------------------------------
# Semi-amortised refinement


def test_refine_moves_a_bad_posterior_to_the_exact_one():
    model, x = LinearGaussian(s=1.0, a=0.0, c=-2.0, logvar=1.5), data(16, s=1.0)
    start = model.infer(x)
    refined = refine(model, x, start, steps=100, lr=0.25, samples=32, generator=torch.Generator().manual_seed(0))
    exact_q = model.exact_posterior(x)  # N(x / 2, 1 / 2)
    assert not refined.q.mu.requires_grad  # evaluation: detached from the encoder
    torch.testing.assert_close(refined.q.mu, exact_q.mu, atol=0.1, rtol=0)
    torch.testing.assert_close(refined.q.logvar, exact_q.logvar, atol=0.15, rtol=0)
    before, after = model.elbo_of(start.q, x).detach(), model.elbo_of(refined.q, x)
    assert (after > before + 1.0).all()
    assert float((model.log_px(x) - after).max()) < 0.02  # the ELBO of the exact posterior is log p(x)
    assert refine(model, x, start, steps=0).q.mu.equal(start.q.mu.detach())
    with pytest.raises(ValueError):
        refine(model, x, start, steps=-1)


def test_refine_improves_a_flow_posterior_and_its_context():
    model, x = LinearGaussian(s=1.0), data(8, s=1.0)
    g = torch.Generator().manual_seed(0)
    base = DiagonalGaussian(torch.full_like(x, 1.5), torch.full_like(x, 1.0))
    context = torch.cat([torch.randn(8, Z, generator=g, dtype=F64), torch.randn(8, Z + 1, generator=g, dtype=F64)], -1)
    start = Inference(q=FlowDistribution(base, context, [PlanarStep(Z, offset=0)]), p=model.infer(x).p, condition=None)
    refined = refine(model, x, start, steps=300, lr=0.1, samples=16, generator=g)
    assert isinstance(refined.q, FlowDistribution) and not torch.equal(refined.q.context, context)
    eps = torch.randn(4000, 8, Z, generator=g, dtype=F64)
    before, after = elbo(model, x, start, eps).detach(), elbo(model, x, refined, eps)  # Monte-Carlo KL, (B,)
    assert (after > before + 1.0).all()
    assert float((model.log_px(x) - after).max()) < 0.08  # from gaps of 3 to 33 nats: the flow can be exact


def test_differentiable_refinement_passes_exact_gradients_to_the_encoder():
    """With differentiable=True the steps stay in the graph: the gradient of a loss at the refined posterior
    with respect to the encoder's c equals a central finite difference through the whole refinement."""
    x = data(4, s=1.0)
    eps = torch.randn(1, 4, Z, generator=torch.Generator().manual_seed(9), dtype=F64)

    def loss_at(c: float, differentiable: bool = True):
        model = LinearGaussian(s=1.0, a=0.3, c=c, logvar=0.2)
        refined = refine(model, x, model.infer(x), steps=3, lr=0.3, max_grad_norm=None, samples=2,
                         differentiable=differentiable, generator=torch.Generator().manual_seed(0))
        return model, -elbo(model, x, refined, eps).sum()

    model, loss = loss_at(-0.5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in model.parameters())
    h = 1e-5
    numerical = (loss_at(-0.5 + h)[1].detach() - loss_at(-0.5 - h)[1].detach()) / (2 * h)
    torch.testing.assert_close(model.c.grad, numerical, rtol=1e-6, atol=1e-8)
    model, detached_loss = loss_at(-0.5, differentiable=False)
    assert not detached_loss.requires_grad  # no gradient reaches the encoder without differentiable=True


# ---------------------------------------------------------------------------------------------------
# Mutual information


def test_mutual_information_is_zero_when_q_ignores_x():
    q = DiagonalGaussian(torch.full((500, Z), 0.7, dtype=F64), torch.full((500, Z), -0.3, dtype=F64))
    assert abs(mutual_information(q, generator=torch.Generator().manual_seed(0))) < 1e-6


def linear_gaussian_posterior(n=2000, a=1.0, s2=0.25, seed=0):
    """x ~ N(0, I), q(z | x) = N(a x, s2 I): I(x; z) = Z/2 log(1 + a^2 / s2)."""
    x = torch.randn(n, Z, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return DiagonalGaussian(a * x, torch.full_like(x, math.log(s2))), Z / 2 * math.log(1 + a**2 / s2)


def test_mutual_information_matches_the_linear_gaussian_closed_form():
    q, expected = linear_gaussian_posterior()
    assert mutual_information(q, generator=torch.Generator().manual_seed(0)) == pytest.approx(expected, abs=0.08)
    with pytest.raises(ValueError):
        mutual_information(q.rows(torch.tensor([0])))


def identity_flows():
    """An IAF step whose gate is 1 to machine precision (MADE's zero output, forget bias 40) and a planar
    step with u = log(e - 1) w, |w| = 1, whence u_hat = (softplus(w.u) - 1) w = 0: together the identity."""
    width = 2 * Z + 1
    torch.manual_seed(0)
    iaf = IAFStep(Z, 8, width, reverse=False, forget_bias=40.0).double()
    return [iaf, PlanarStep(Z, offset=0)]


def test_mutual_information_of_a_flow_posterior():
    n = 300  # log q at every other row's sample inverts the flow n^2 times (bisection for planar)
    q, expected = linear_gaussian_posterior(n)
    reference = mutual_information(q, generator=torch.Generator().manual_seed(0))
    w = torch.tensor([0.6, 0.8], dtype=F64)
    context = torch.cat([math.log(math.e - 1) * w, w, torch.tensor([0.3], dtype=F64)]).expand(n, -1)
    flow = FlowDistribution(q, context, identity_flows())
    eps = torch.randn(n, Z, generator=torch.Generator().manual_seed(1), dtype=F64)
    torch.testing.assert_close(flow.rsample_with_log_prob(eps), q.rsample_with_log_prob(eps))  # the identity
    assert mutual_information(flow, generator=torch.Generator().manual_seed(0)) == pytest.approx(reference, abs=1e-6)
    # one bijection f shared by every row (the same context) leaves I(x; f(z)) = I(x; z), and the estimate
    # too: log|det df| at z_i is the same under every q(. | x_j), so it cancels in log q - log aggregate
    g = torch.Generator().manual_seed(2)
    shared = torch.cat([2.0 * torch.randn(Z, generator=g, dtype=F64), torch.randn(Z + 1, generator=g, dtype=F64)])
    bent = FlowDistribution(q, shared.expand(n, -1), [PlanarStep(Z, offset=0)])
    assert not torch.allclose(bent.rsample_with_log_prob(eps)[0], q.rsample(eps), atol=0.1)
    estimate = mutual_information(bent, generator=torch.Generator().manual_seed(0))
    assert estimate == pytest.approx(reference, abs=1e-6)
    assert estimate == pytest.approx(expected, abs=0.2)  # and near the closed form, with n = 300 rows


# ---------------------------------------------------------------------------------------------------
# Concatenation


def test_concatenate_keeps_rows_in_order():
    g = torch.Generator().manual_seed(0)
    parts = [DiagonalGaussian(torch.randn(n, Z, generator=g), torch.randn(n, Z, generator=g)) for n in (2, 3, 1)]
    whole = concatenate(parts)
    assert isinstance(whole, DiagonalGaussian)
    assert torch.equal(whole.mu, torch.cat([p.mu for p in parts]))
    assert torch.equal(whole.logvar, torch.cat([p.logvar for p in parts]))
    flows = [PlanarStep(Z, offset=0)]
    flow_parts = [FlowDistribution(p, torch.randn(p.mu.shape[0], 2 * Z + 1, generator=g), flows) for p in parts]
    flow_whole = concatenate(flow_parts)
    assert flow_whole.flows is flows
    z = torch.randn(6, Z, generator=g)
    expected = torch.cat([part.log_prob(z[start:start + part.base.mu.shape[0]])
                          for part, start in zip(flow_parts, (0, 2, 5), strict=True)])
    torch.testing.assert_close(flow_whole.log_prob(z), expected)
    assert torch.equal(flow_whole.rows(torch.tensor([2, 3, 4])).context, flow_parts[1].context)


def test_refine_keep_best_never_ends_below_its_start_even_with_a_step_size_that_diverges():
    """With a step size far too large the plain steps overshoot; keep_best returns, per example, the best
    parameters it scored, so the refined ELBO (in closed form here) is no worse than the start's."""
    model, x = LinearGaussian(s=1.0, a=0.8, c=0.1, logvar=-0.5), data(16, s=1.0)
    start = model.infer(x)
    wild = refine(model, x, start, steps=5, lr=50.0, samples=8, generator=torch.Generator().manual_seed(0))
    kept = refine(model, x, start, steps=5, lr=50.0, samples=8, keep_best=True,
                  generator=torch.Generator().manual_seed(0))
    before = model.elbo_of(start.q, x).detach()
    assert (model.elbo_of(wild.q, x) < before - 1.0).any()  # the overshoot is real
    assert (model.elbo_of(kept.q, x) >= before - 0.05).all()
    with pytest.raises(ValueError, match="keep_best"):
        refine(model, x, start, steps=1, keep_best=True, differentiable=True)
