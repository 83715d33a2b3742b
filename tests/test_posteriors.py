"""Posterior components and their spec round trip: every log q(z) is checked against an independent density
(torch.distributions for the Gaussians, a numerical change of variables for the flows)."""

import json
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from test_models import make_batch, sentences, tiny_vae  # the tiny models and batches those tests use
from torch.autograd.functional import jacobian
from torch.distributions import Independent, Normal

from textvae import components
from textvae.distributions import DiagonalGaussian, FlowDistribution
from textvae.posteriors import (
    MADE,
    BatchNormGaussian,
    GaussianPosterior,
    IAFPosterior,
    IAFStep,
    PlanarPosterior,
    PlanarStep,
    Posterior,
)
from textvae.priors import MixturePrior, Prior, StandardNormalPrior

INPUT, Z = 5, 3


def normal_log_prob(mu, logvar, z):
    """log N(z; mu, diag(exp(logvar))) by torch.distributions: (..., B, Z) -> (..., B)."""
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1).log_prob(z)


def features(n=6, seed=0, dtype=torch.float64):
    return torch.randn(n, INPUT, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def noise(*shape, seed=1, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def iaf_posterior(latent_dim=Z, num_flows=2):
    torch.manual_seed(0)
    posterior = IAFPosterior(INPUT, latent_dim, num_flows=num_flows, hidden_dim=16, context_dim=4).double()
    with torch.no_grad():  # MADE's output layer starts at zero (the identity up to a scale): make it bend
        for step in posterior.flows:
            step.made.output.weight.normal_(std=0.7)
            step.made.output.bias.normal_(std=0.5)
    return posterior


def planar_posterior(latent_dim=Z, num_flows=3):
    torch.manual_seed(0)
    posterior = PlanarPosterior(INPUT, latent_dim, num_flows=num_flows).double()
    with torch.no_grad():  # it starts near the identity: make u large enough that tanh bends z
        posterior.to_flow.weight.normal_(std=0.6)
        posterior.to_flow.bias.normal_(std=1.0)
    return posterior


FLOWS = {"iaf": iaf_posterior, "planar": planar_posterior}


def flow_map(q: FlowDistribution, row: int):
    """z_0 (Z,) -> z_K (Z,) for one row of q: the flow steps composed, log-determinants ignored."""
    context = q.context[row:row + 1]

    def f(z0):
        z = z0.unsqueeze(0)
        for step in q.flows:
            z, _ = step(z, context)
        return z[0]

    return f


# ---------------------------------------------------------------------------------------------------
# Gaussian posteriors


@pytest.mark.parametrize("posterior", [GaussianPosterior(INPUT, Z), BatchNormGaussian(INPUT, Z, gamma=0.8)],
                         ids=["gaussian", "bn-gaussian"])
def test_gaussian_log_q_is_the_diagonal_normal_density(posterior):
    posterior = posterior.double().train()
    q = posterior(features())
    assert isinstance(q, DiagonalGaussian)
    for eps in (noise(6, Z), noise(4, 6, Z)):  # (B, Z) and (K, B, Z)
        z, log_q = q.rsample_with_log_prob(eps)
        torch.testing.assert_close(z, q.mu + torch.exp(0.5 * q.logvar) * eps)
        expected = normal_log_prob(q.mu, q.logvar, z)
        assert log_q.shape == eps.shape[:-1]
        torch.testing.assert_close(log_q, expected)
        torch.testing.assert_close(q.log_prob(z), expected)


def test_bn_gaussian_keeps_batch_variance_gamma_squared_in_training():
    gamma = 0.7
    posterior = BatchNormGaussian(INPUT, Z, gamma=gamma).double().train()
    with torch.no_grad():
        posterior.mu_shift.copy_(torch.tensor([0.5, -1.0, 2.0]))
    h = 3.0 * features(64)
    mu = posterior(h).mu
    # BatchNorm divides by sqrt(var + 1e-5): with var(to_mu(h)) of order 1 that is gamma^2 within 1e-4
    torch.testing.assert_close(mu.var(0, unbiased=False), torch.full((Z,), gamma**2, dtype=mu.dtype),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(mu.mean(0), posterior.mu_shift.detach())
    # the raw means varied by another scale: the normalisation, not the encoder, sets gamma
    assert not torch.allclose(posterior.to_mu(h).var(0, unbiased=False), mu.var(0, unbiased=False), atol=1e-2)
    mu.pow(2).sum().backward()
    assert posterior.mu_shift.grad is not None and posterior.mu_shift.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------
# Flow posteriors


@pytest.mark.parametrize("kind", list(FLOWS))
def test_flow_log_q_is_the_numerical_change_of_variables(kind):
    posterior = FLOWS[kind]()
    h = features(4)
    q = posterior(h)
    assert isinstance(q, FlowDistribution)
    eps = noise(4, Z)
    z, log_q = q.rsample_with_log_prob(eps)
    z0 = q.base.mu + torch.exp(0.5 * q.base.logvar) * eps  # (B, Z)
    expected = []
    for row in range(4):
        f = flow_map(q, row)
        torch.testing.assert_close(f(z0[row]), z[row])
        sign, log_abs_det = torch.linalg.slogdet(jacobian(f, z0[row]))
        if kind == "planar":  # each planar step preserves orientation (IAF's reversals may not)
            assert sign > 0
        expected.append(normal_log_prob(q.base.mu[row], q.base.logvar[row], z0[row]) - log_abs_det)
    expected = torch.stack(expected)
    assert not torch.allclose(z, z0, atol=0.1)  # the flow is not near the identity: the test has teeth
    torch.testing.assert_close(log_q, expected)
    torch.testing.assert_close(q.log_prob(z), expected)  # log_prob inverts the flow at z


@pytest.mark.parametrize("kind", list(FLOWS))
def test_each_flow_step_inverse_recovers_its_input(kind):
    q = FLOWS[kind]()(features(5))
    z = q.base.mu + torch.exp(0.5 * q.base.logvar) * noise(5, Z)
    for step in q.flows:
        y, _ = step(z, q.context)
        torch.testing.assert_close(step.inverse(y, q.context), z, atol=1e-10, rtol=0)
        z = y


@pytest.mark.parametrize("kind", list(FLOWS))
def test_flows_are_shape_agnostic_with_the_context_broadcast(kind):
    q = FLOWS[kind]()(features(3))
    eps = noise(4, 3, Z)  # (K, B, Z)
    z, log_q = q.rsample_with_log_prob(eps)
    assert z.shape == (4, 3, Z) and log_q.shape == (4, 3)
    log_prob = q.log_prob(z)
    assert log_prob.shape == (4, 3)
    for k in range(4):
        z_k, log_q_k = q.rsample_with_log_prob(eps[k])  # (B, Z)
        torch.testing.assert_close(z[k], z_k)
        torch.testing.assert_close(log_q[k], log_q_k)
        torch.testing.assert_close(log_prob[k], q.log_prob(z_k))
    torch.testing.assert_close(log_prob, log_q)
    # a z of other rows scored under row 0 only (the mutual-information estimate does this): (N, 1, Z)
    row0 = q.rows(torch.tensor([0]))
    others = z.reshape(-1, 1, Z)
    expected = torch.stack([row0.log_prob(others[n]) for n in range(others.shape[0])])
    torch.testing.assert_close(row0.log_prob(others), expected)
    assert q.sample(k=2).shape == (2, 3, Z) and q.sample().shape == (3, Z)


def test_made_is_autoregressive_and_an_iaf_step_is_triangular_in_its_order():
    z_dim = 4
    torch.manual_seed(0)
    made = MADE(z_dim, hidden_dim=12, context_dim=3).double()
    with torch.no_grad():
        made.output.weight.normal_()
    context, z = noise(1, 3, seed=2), noise(z_dim, seed=3)
    below = torch.tril(torch.ones(z_dim, z_dim, dtype=torch.bool), -1)
    for output in range(2):  # m and s: output d depends on z_<d only
        j = jacobian(lambda v, output=output: made(v.unsqueeze(0), context)[output][0], z)  # (Z, Z)
        assert torch.all(j[~below] == 0)
        assert torch.all(j[below].abs() > 1e-8)  # and on all of them
    for reverse in (False, True):
        torch.manual_seed(1)
        step = IAFStep(z_dim, 12, 3, reverse=reverse).double()
        with torch.no_grad():
            step.made.output.weight.normal_()
            step.made.output.bias.normal_()
        j = jacobian(lambda v, step=step: step(v.unsqueeze(0), context)[0][0], z)
        in_order = j.flip(-1) if reverse else j  # columns in the step's variable order (reversed first)
        assert torch.all(torch.triu(in_order, 1) == 0)
        assert torch.all(torch.tril(in_order, -1)[below].abs() > 1e-8)
        log_det = step(z.unsqueeze(0), context)[1]
        torch.testing.assert_close(log_det, in_order.diagonal().abs().log().sum().unsqueeze(0))


def test_planar_keeps_w_dot_u_hat_above_minus_one_for_adversarial_u_and_w():
    """At z* with w.z* + b = 0 the Jacobian of z + u_hat tanh(w.z + b) has determinant 1 + w.u_hat, which
    Rezende & Mohamed's reparameterisation makes softplus(w.u) > 0 whatever u and w are."""
    z_dim = 3
    g = torch.Generator().manual_seed(0)
    rows = []
    for scale in (0.1, 1.0, 10.0):
        w = scale * torch.randn(z_dim, generator=g, dtype=torch.float64)
        for wu in (-30.0, -3.0, -1.0, 0.0, 2.0):
            u = wu * w / w.pow(2).sum()  # u parallel to w with w.u = wu: the most adversarial direction
            u = u + torch.randn(z_dim, generator=g, dtype=torch.float64).cross(w, dim=0)  # plus a part normal to w
            b = torch.randn(1, generator=g, dtype=torch.float64)
            rows.append(torch.cat([u, w, b]))
    context = torch.stack(rows)  # (N, 2Z + 1)
    step = PlanarStep(z_dim, offset=0)
    u, w, b = context.split([z_dim, z_dim, 1], dim=-1)
    for n in range(context.shape[0]):
        z_star = -b[n] * w[n] / w[n].pow(2).sum()
        f = lambda v, n=n: step(v.unsqueeze(0), context[n:n + 1])[0][0]  # noqa: E731
        det = torch.linalg.det(jacobian(f, z_star))
        expected = F.softplus((w[n] * u[n]).sum())
        torch.testing.assert_close(det, expected, rtol=1e-6, atol=1e-12)
        assert det > 0
        # elsewhere the determinant is positive too, and it is what the step reports
        z = torch.randn(4, z_dim, generator=g, dtype=torch.float64)
        _, log_det = step(z, context[n:n + 1].expand(4, -1))
        for i in range(4):
            torch.testing.assert_close(torch.linalg.slogdet(jacobian(f, z[i]))[1], log_det[i])
    # invertible: bisection recovers z (away from the nearly flat w.u = -30 rows, where it is ill-conditioned)
    well = (w * u).sum(-1) > -10
    z = torch.randn(int(well.sum()), z_dim, generator=g, dtype=torch.float64)
    y, _ = step(z, context[well])
    torch.testing.assert_close(step.inverse(y, context[well]), z, atol=1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------------
# Components: build / spec


def state_shapes(module):
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


@pytest.mark.parametrize("component, base, sizes", [
    (GaussianPosterior, Posterior, (INPUT, Z)),
    (partial(IAFPosterior, num_flows=3, hidden_dim=8, context_dim=5), Posterior, (INPUT, Z)),
    (partial(PlanarPosterior, num_flows=2), Posterior, (INPUT, Z)),
    ({"class_path": "textvae.posteriors.BatchNormGaussian", "init_args": {"gamma": 0.3}}, Posterior, (INPUT, Z)),
    (StandardNormalPrior, Prior, (0, Z)),
    (partial(MixturePrior, num_components=4, learn_weights=False), Prior, (0, Z)),
    ({"class_path": "textvae.priors.ConditionalGaussianPrior", "init_args": {"hidden_dim": 7}}, Prior, (6, Z)),
    ({"class_path": "textvae.priors.ConditionalMixturePrior", "init_args": {"num_components": 2}}, Prior, (6, Z)),
], ids=["class", "iaf-partial", "planar-partial", "bn-spec", "normal-class", "mixture-partial", "conditional-spec",
        "conditional-mixture-spec"])
def test_spec_of_build_rebuilds_the_same_component(component, base, sizes):
    module = components.build(component, base, *sizes)
    spec = json.loads(json.dumps(components.spec(module)))  # what an export's config.json holds
    rebuilt = components.build(spec, base, *sizes)
    assert type(rebuilt) is type(module)
    assert rebuilt.init_args == module.init_args
    assert state_shapes(rebuilt) == state_shapes(module)
    assert len(state_shapes(module)) > 0 or isinstance(module, StandardNormalPrior)  # N(0, I) has no state
    rebuilt.load_state_dict(module.state_dict())
    if isinstance(component, partial):  # the spec records the partial's keywords (and the defaults)
        assert component.keywords.items() <= spec["init_args"].items()


def test_specs_name_only_textvae_components():
    for bad in ("os.system", "builtins.eval", "textvae_extra.posteriors.GaussianPosterior"):
        with pytest.raises(ValueError, match="not a textvae class"):
            components.build({"class_path": bad}, Posterior, INPUT, Z)
    for unknown in ("textvae.posteriors.NoSuchPosterior", "textvae.no_such_module.GaussianPosterior"):
        with pytest.raises(ValueError, match="unknown"):
            components.build({"class_path": unknown}, Posterior, INPUT, Z)
    for wrong in ("textvae.priors.MixturePrior", "textvae.posteriors.F", "textvae.posteriors.MADE"):
        with pytest.raises(ValueError, match="not a Posterior"):
            components.build({"class_path": wrong}, Posterior, INPUT, Z)
    with pytest.raises(ValueError, match="class_path"):
        components.build({"init_args": {}}, Posterior, INPUT, Z)
    with pytest.raises(ValueError, match="class_path"):
        components.build({"class_path": "textvae.posteriors.GaussianPosterior", "extra": 1}, Posterior, INPUT, Z)
    with pytest.raises(ValueError, match="not a Posterior"):  # a callable that builds the wrong kind
        components.build(StandardNormalPrior, Posterior, INPUT, Z)


POSTERIORS = {
    "gaussian": None,
    "bn": partial(BatchNormGaussian, gamma=0.4),
    "iaf": {"class_path": "textvae.posteriors.IAFPosterior",
            "init_args": {"num_flows": 2, "hidden_dim": 8, "context_dim": 4}},
    "planar": partial(PlanarPosterior, num_flows=2),
}
PRIORS = {"normal": None, "mixture": partial(MixturePrior, num_components=3)}


@pytest.mark.parametrize("prior", list(PRIORS))
@pytest.mark.parametrize("posterior", list(POSTERIORS))
def test_sentence_vae_rebuilt_from_json_init_args_gives_identical_outputs(posterior, prior):
    model = tiny_vae("gru", posterior=POSTERIORS[posterior], prior=PRIORS[prior])
    with torch.no_grad():  # flows and mixture weights start trivial: make every parameter matter
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    args = json.loads(json.dumps(model.init_args))
    torch.manual_seed(123)  # a different initialisation: only load_state_dict can make them equal
    rebuilt = type(model)(**args)
    assert rebuilt.init_args == model.init_args
    assert type(rebuilt.posterior) is type(model.posterior) and type(rebuilt.prior) is type(model.prior)
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    batch = make_batch(sentences())
    eps = noise(2, 8, 4, dtype=torch.float32)
    with torch.no_grad():
        a, b = model.infer(batch), rebuilt.infer(batch)
        for x, y in zip(a.q.params, b.q.params, strict=True):
            assert torch.equal(x, y)
        z, log_q = a.q.rsample_with_log_prob(eps)
        z_b, log_q_b = b.q.rsample_with_log_prob(eps)
        assert torch.equal(z, z_b) and torch.equal(log_q, log_q_b)
        assert torch.equal(a.p.log_prob(z), b.p.log_prob(z))
        assert torch.equal(model.log_px_given_z(batch, z), rebuilt.log_px_given_z(batch, z))
        torch.manual_seed(0)
        out_a = model(batch)
        torch.manual_seed(0)
        out_b = rebuilt(batch)
    assert torch.equal(out_a.reconstruction, out_b.reconstruction) and torch.equal(out_a.kl, out_b.kl)
