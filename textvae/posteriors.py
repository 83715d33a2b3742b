"""Posterior components q(z | .): from the inference network's features h (B, D) to a distribution over z.

Every latent model (SentenceVAE, VHRED, CVAE/kgCVAE) takes one as its ``posterior`` argument (see
:mod:`textvae.components` for how a recipe names it):

* :class:`GaussianPosterior`: N(mu, diag(exp(logvar))), mu and logvar linear in h (Kingma & Welling 2014).
* :class:`BatchNormGaussian`: BN-VAE (Zhu et al. 2020): the same with mu batch-normalised to a fixed scale.
* :class:`IAFPosterior`: the Gaussian followed by inverse autoregressive flow steps (Kingma et al. 2016).
* :class:`PlanarPosterior`: the Gaussian followed by planar flows with amortised parameters (Rezende &
  Mohamed 2015; amortised as in van den Berg et al. 2018).
* :class:`GumbelSoftmaxPosterior`: a Gaussian on some dimensions of z and one-hot categorical blocks on the
  rest, relaxed by the Gumbel-softmax in training (Jang et al. 2017; Maddison et al. 2017) with an annealed
  temperature; the joint continuous and discrete z of JointVAE (Dupont 2018). Pair it with
  :class:`textvae.priors.JointPrior`.

The flows' log-determinants enter log q(z); the KL against the prior is then a Monte-Carlo estimate
(:func:`textvae.distributions.kl_divergence`), and log q at any z inverts the flow (IAF in Z passes of its
autoregressive network, planar by bisection along w), which the mutual-information estimate needs.

Notation: B batch, D features, Z latent, H hidden, P flow context, N rows; Zc continuous dimensions,
K_1..K_n the sizes of categorical blocks (sum K their total).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textvae.distributions import (
    DiagonalGaussian,
    FlowDistribution,
    GaussianCategorical,
    PosteriorDistribution,
    continuous_dim,
)


class Posterior(nn.Module):
    """q(z | .) from features (B, D). Subclasses keep their own settings in ``init_args`` (the export)."""

    def __init__(self, input_dim: int, latent_dim: int):
        super().__init__()
        if input_dim < 1 or latent_dim < 1:
            raise ValueError(f"a posterior needs input_dim >= 1 and latent_dim >= 1, got {input_dim}, {latent_dim}")
        self.input_dim, self.latent_dim = input_dim, latent_dim
        self.init_args: dict = {}

    def forward(self, h: Tensor) -> PosteriorDistribution:
        raise NotImplementedError


class GaussianPosterior(Posterior):
    """q(z | .) = N(mu, diag(exp(logvar))) with mu, logvar linear in h."""

    def __init__(self, input_dim: int, latent_dim: int):
        super().__init__(input_dim, latent_dim)
        self.to_mu = nn.Linear(input_dim, latent_dim)
        self.to_logvar = nn.Linear(input_dim, latent_dim)

    def gaussian(self, h: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian(self.to_mu(h), self.to_logvar(h))  # (B, Z) x2

    def forward(self, h: Tensor) -> DiagonalGaussian | FlowDistribution:
        return self.gaussian(h)


class BatchNormGaussian(GaussianPosterior):
    """BN-VAE (Zhu et al. 2020, "A Batch Normalized Inference Network Keeps the KL Vanishing Away"): mu goes
    through batch normalisation with a *fixed* scale ``gamma`` and a learned shift. Across a batch every
    dimension of mu then has variance gamma^2, so the expected KL per dimension is at least gamma^2 / 2 and,
    unlike free bits, that KL is spent on means that differ between sentences (posterior collapse cannot
    happen). In eval mode the running statistics are used, so a posterior does not depend on its batch."""

    def __init__(self, input_dim: int, latent_dim: int, *, gamma: float = 0.5):
        super().__init__(input_dim, latent_dim)
        if gamma <= 0:
            raise ValueError(f"BatchNormGaussian's gamma must be > 0, got {gamma}; use GaussianPosterior for none")
        self.init_args = {"gamma": gamma}
        self.gamma = gamma
        self.mu_norm = nn.BatchNorm1d(latent_dim, affine=False)
        self.mu_shift = nn.Parameter(torch.zeros(latent_dim))

    def gaussian(self, h: Tensor) -> DiagonalGaussian:
        mu = self.gamma * self.mu_norm(self.to_mu(h)) + self.mu_shift  # (B, Z)
        return DiagonalGaussian(mu, self.to_logvar(h))


# ---------------------------------------------------------------------------------------------------
# Inverse autoregressive flow (Kingma et al. 2016)


class MaskedLinear(nn.Linear):
    """A linear map whose weight is multiplied by a fixed 0/1 mask (out, in): MADE's building block."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder (Germain et al. 2015) with a context input: outputs m_d, s_d depend on z_<d and
    the context only. (N, Z), (N, P) -> (N, Z) x2. The output layer starts at zero."""

    def __init__(self, latent_dim: int, hidden_dim: int, context_dim: int):
        super().__init__()
        degree_in = torch.arange(1, latent_dim + 1)  # (Z,)
        degree_hidden = torch.arange(hidden_dim) % max(latent_dim - 1, 1) + 1  # (H,)
        self.input = MaskedLinear(latent_dim, hidden_dim, degree_hidden[:, None] >= degree_in[None, :])
        self.context = nn.Linear(context_dim, hidden_dim, bias=False)
        self.hidden = MaskedLinear(hidden_dim, hidden_dim, degree_hidden[:, None] >= degree_hidden[None, :])
        out_mask = degree_in[:, None] > degree_hidden[None, :]  # (Z, H)
        self.output = MaskedLinear(hidden_dim, 2 * latent_dim, torch.cat([out_mask, out_mask]))
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        h = F.elu(self.input(z) + self.context(context))  # (N, H)
        h = F.elu(self.hidden(h))
        m, s = self.output(h).chunk(2, dim=-1)  # (N, Z) x2
        return m, s


class IAFStep(nn.Module):
    """One IAF step, the numerically stable form of Kingma et al. (2016, eq. 14): [m, s] = MADE(z, h),
    sigma = sigmoid(s + forget_bias), z' = sigma * z + (1 - sigma) * m, log|det| = sum log sigma. The
    dimensions are reversed before the step when ``reverse`` (alternate steps), so every z_d gets to
    depend on every other across steps."""

    def __init__(self, latent_dim: int, hidden_dim: int, context_dim: int, *, reverse: bool,
                 forget_bias: float = 2.0):
        super().__init__()
        self.made = MADE(latent_dim, hidden_dim, context_dim)
        self.reverse, self.forget_bias, self.latent_dim = reverse, forget_bias, latent_dim

    def _gate(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        m, s = self.made(z, context)
        return m, torch.sigmoid(s + self.forget_bias)

    def forward(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        if self.reverse:
            z = z.flip(-1)
        m, sigma = self._gate(z, context)
        return sigma * z + (1 - sigma) * m, torch.log(sigma).sum(-1)  # (N, Z), (N,)

    def inverse(self, y: Tensor, context: Tensor) -> Tensor:
        """z from z' in Z passes: output d depends only on z_<d, which the earlier passes have fixed."""
        z = torch.zeros_like(y)
        for d in range(self.latent_dim):
            m, sigma = self._gate(z, context)
            column = (y[:, d] - (1 - sigma[:, d]) * m[:, d]) / sigma[:, d]  # (N,)
            z = torch.cat([z[:, :d], column.unsqueeze(1), z[:, d + 1:]], dim=1)
        return z.flip(-1) if self.reverse else z


class IAFPosterior(GaussianPosterior):
    """A Gaussian q_0(z_0 | h) followed by ``num_flows`` IAF steps that read the context ``to_context(h)``."""

    def __init__(self, input_dim: int, latent_dim: int, *, num_flows: int = 2, hidden_dim: int = 128,
                 context_dim: int = 64):
        super().__init__(input_dim, latent_dim)
        if num_flows < 1 or hidden_dim < 1 or context_dim < 1:
            raise ValueError(f"IAFPosterior needs num_flows, hidden_dim, context_dim >= 1, got {num_flows}, "
                             f"{hidden_dim}, {context_dim}")
        self.init_args = {"num_flows": num_flows, "hidden_dim": hidden_dim, "context_dim": context_dim}
        self.to_context = nn.Linear(input_dim, context_dim)
        self.flows = nn.ModuleList(IAFStep(latent_dim, hidden_dim, context_dim, reverse=i % 2 == 1)
                                   for i in range(num_flows))

    def forward(self, h: Tensor) -> FlowDistribution:
        return FlowDistribution(self.gaussian(h), torch.tanh(self.to_context(h)), self.flows)  # context (B, P)


# ---------------------------------------------------------------------------------------------------
# Planar flows (Rezende & Mohamed 2015)


class PlanarStep(nn.Module):
    """f(z) = z + u_hat tanh(w.z + b), with this row's (u, w, b) read from its context slice
    [offset, offset + 2Z + 1). u_hat = u + (m(w.u) - w.u) w / |w|^2 with m(x) = -1 + softplus(x) keeps
    w.u_hat > -1, which makes f invertible (Rezende & Mohamed 2015, appendix A.1).
    log|det| = log|1 + (1 - tanh^2(w.z + b)) w.u_hat|."""

    def __init__(self, latent_dim: int, offset: int):
        super().__init__()
        self.latent_dim, self.offset = latent_dim, offset

    def _flow_parameters(self, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z = self.latent_dim
        u, w, b = context[:, self.offset:self.offset + 2 * z + 1].split([z, z, 1], dim=-1)  # (N, Z) x2, (N, 1)
        wu = (w * u).sum(-1, keepdim=True)  # (N, 1)
        u_hat = u + (F.softplus(wu) - 1 - wu) * w / w.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)
        return u_hat, w, b

    def forward(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        u_hat, w, b = self._flow_parameters(context)
        activation = torch.tanh((w * z).sum(-1, keepdim=True) + b)  # (N, 1)
        slope = 1 + (1 - activation.pow(2)) * (w * u_hat).sum(-1, keepdim=True)  # (N, 1), > 0
        return z + u_hat * activation, torch.log(slope.abs().clamp_min(1e-12)).squeeze(-1)

    def inverse(self, y: Tensor, context: Tensor, iterations: int = 60) -> Tensor:
        """Solve alpha + c tanh(alpha + b) = w.y for alpha = w.z (increasing in alpha since c = w.u_hat > -1)
        by bisection on [w.y - |c|, w.y + |c|], then z = y - u_hat tanh(alpha + b)."""
        u_hat, w, b = self._flow_parameters(context)
        target = (w * y).sum(-1, keepdim=True)  # (N, 1)
        c = (w * u_hat).sum(-1, keepdim=True)
        low, high = target - c.abs() - 1e-3, target + c.abs() + 1e-3
        for _ in range(iterations):
            middle = (low + high) / 2
            above = middle + c * torch.tanh(middle + b) > target
            low, high = torch.where(above, low, middle), torch.where(above, middle, high)
        alpha = (low + high) / 2
        return y - u_hat * torch.tanh(alpha + b)


class PlanarPosterior(GaussianPosterior):
    """A Gaussian q_0(z_0 | h) followed by ``num_flows`` planar flows whose (u, w, b) are linear in h."""

    def __init__(self, input_dim: int, latent_dim: int, *, num_flows: int = 4):
        super().__init__(input_dim, latent_dim)
        if num_flows < 1:
            raise ValueError(f"PlanarPosterior needs num_flows >= 1, got {num_flows}")
        self.init_args = {"num_flows": num_flows}
        width = 2 * latent_dim + 1
        self.to_flow = nn.Linear(input_dim, num_flows * width)
        # near the identity at the start (small u), but with |w| ~ 1: u_hat divides by |w|^2
        nn.init.normal_(self.to_flow.weight, std=0.01)
        with torch.no_grad():
            bias = torch.zeros(num_flows, width)
            bias[:, latent_dim:2 * latent_dim].normal_(std=latent_dim ** -0.5)
            self.to_flow.bias.copy_(bias.flatten())
        self.flows = nn.ModuleList(PlanarStep(latent_dim, i * width) for i in range(num_flows))

    def forward(self, h: Tensor) -> FlowDistribution:
        return FlowDistribution(self.gaussian(h), self.to_flow(h), self.flows)  # context (B, K (2Z + 1))


# ---------------------------------------------------------------------------------------------------
# Categorical latents: Gumbel-softmax (Jang et al. 2017; Maddison et al. 2017), JointVAE (Dupont 2018)


class GumbelSoftmaxPosterior(Posterior):
    """q(z | .) = N(mu, diag(exp(logvar))) on the first Zc = latent_dim - sum(categories) dimensions (linear in h,
    as :class:`GaussianPosterior`; none when Zc = 0) times independent categoricals with logits linear in h on
    one-hot blocks of sizes ``categories``: a :class:`~textvae.distributions.GaussianCategorical`.

    In training the blocks are Gumbel-softmax samples at the temperature tau = max(min_temperature,
    temperature * exp(-anneal_rate * t)), t the training-mode forward passes so far (Jang et al. 2017's
    schedule, updated every pass), counted in the ``steps`` buffer so a resumed checkpoint or an export
    continues it; ``straight_through``: one-hot forward, relaxed gradient. In eval mode they are exact one-hot
    samples, scored by the discrete model's log q (the IW-NLL and MI of the discrete model).

    Args:
        categories: the sizes K_i of the categorical blocks, each >= 2; they take the last sum(K_i) dimensions.
        temperature: tau at the start.
        min_temperature: the floor of the annealing (Jang et al.: 0.5).
        anneal_rate: r in exp(-r t) (Jang et al.'s code: 3e-5); 0 keeps tau fixed (Dupont 2018: 0.67).
        straight_through: hard one-hot samples in training too, with the relaxed gradient.
    """

    def __init__(self, input_dim: int, latent_dim: int, *, categories: Sequence[int] = (10,),
                 temperature: float = 1.0, min_temperature: float = 0.5, anneal_rate: float = 3e-5,
                 straight_through: bool = False):
        super().__init__(input_dim, latent_dim)
        categories = tuple(int(k) for k in categories)
        zc = continuous_dim(latent_dim, categories, "GumbelSoftmaxPosterior")
        if not 0 < min_temperature <= temperature or anneal_rate < 0:
            raise ValueError(f"GumbelSoftmaxPosterior needs 0 < min_temperature <= temperature and anneal_rate >= 0, "
                             f"got {min_temperature}, {temperature}, {anneal_rate}")
        self.init_args = {"categories": list(categories), "temperature": temperature,
                          "min_temperature": min_temperature, "anneal_rate": anneal_rate,
                          "straight_through": straight_through}
        self.categories, self.straight_through = categories, straight_through
        self.temperature, self.min_temperature, self.anneal_rate = temperature, min_temperature, anneal_rate
        self.continuous = GaussianPosterior(input_dim, zc) if zc else None
        self.to_logits = nn.Linear(input_dim, sum(categories))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # training forward passes: tau's clock

    def temperature_at(self, step: int) -> float:
        """tau after ``step`` training forward passes."""
        return max(self.min_temperature, self.temperature * math.exp(-self.anneal_rate * step))

    def forward(self, h: Tensor) -> GaussianCategorical:
        temperature = None  # eval: one-hot samples
        if self.training:
            temperature = self.temperature_at(int(self.steps))
            self.steps += 1
        if self.continuous is not None:
            mu, logvar = self.continuous.gaussian(h)  # (B, Zc) x2
        else:
            mu = logvar = h.new_zeros(h.shape[0], 0)
        return GaussianCategorical(mu, logvar, self.to_logits(h), self.categories, temperature,  # logits (B, sum K)
                                   self.straight_through)
