"""Distributions over z as the latent models use them: drawn from explicit noise, scored at any z.

A posterior component (:mod:`textvae.posteriors`) returns a :class:`DiagonalGaussian`, a
:class:`FlowDistribution` (a Gaussian pushed through a normalizing flow) or a :class:`GaussianCategorical`
(a Gaussian and one-hot categorical blocks, Gumbel-softmax in training); a prior component
(:mod:`textvae.priors`) a :class:`DiagonalGaussian` (N(0, I) or a prior network's), a
:class:`GaussianMixture` or a :class:`GaussianCategorical`. What every posterior offers:

* ``rsample_with_log_prob(eps)``: z from standard-normal noise ``eps`` (..., B, Z) by reparameterisation,
  and log q(z) at it, (..., B). The noise is an argument so evaluation can draw it from seeded generators.
* ``log_prob(z)``: the log density at any z (..., B, Z) -> (..., B) (a flow is inverted for it), which
  the mutual-information estimate needs at other sentences' samples.
* ``code``: one deterministic point per row, (B, Z): the mean of a Gaussian, the base mean pushed
  through the flow; what reconstruction, homotopies and active units read.
* ``params`` / ``with_params``: the per-example tensors that define it, for semi-amortised refinement; the
  first two are (B, Z) for every posterior (what encoders return as code and log-variance).
* ``noise_like``: a (B, Z) tensor whose shape, device and dtype the noise takes
  (``standard_noise(q.noise_like, k)``).

:func:`kl_divergence` is closed-form per dimension between two diagonal Gaussians, closed-form per
continuous dimension and per categorical block between two :class:`GaussianCategorical`, and a
Monte-Carlo estimate log q(z) - log p(z) at the sample otherwise.

Notation: B batch, Z latent, K samples, C mixture components, P flow context; Zc continuous dimensions,
K_1..K_n the sizes of n categorical blocks (sum K their total).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from textvae.objectives import (
    block_one_hot,
    categorical_kl,
    categorical_log_prob,
    gaussian_kl_between,
    gumbel_from_normal,
    gumbel_softmax,
    log_normal,
)


def standard_noise(like: Tensor, k: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """eps ~ N(0, I) shaped like ``like`` (B, Z), or (K, B, Z) with ``k``, on its device."""
    if k is not None and k < 1:
        raise ValueError(f"k must be a positive number of samples, got {k}")
    shape = like.shape if k is None else (k, *like.shape)
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


class DiagonalGaussian(NamedTuple):
    """N(mu, diag(exp(logvar))) per row: mu, logvar (B, Z) (or broadcastable, e.g. zeros for N(0, I))."""

    mu: Tensor
    logvar: Tensor

    def rsample(self, eps: Tensor) -> Tensor:
        return self.mu + torch.exp(0.5 * self.logvar) * eps  # (..., B, Z)

    def rsample_with_log_prob(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        z = self.rsample(eps)
        return z, self.log_prob(z)

    def sample(self, k: int | None = None, generator: torch.Generator | None = None, scale: float = 1.0) -> Tensor:
        """z with the standard deviation times ``scale``: (B, Z), or (K, B, Z) with ``k``."""
        return self.mu + scale * torch.exp(0.5 * self.logvar) * standard_noise(self.mu, k, generator)

    def log_prob(self, z: Tensor) -> Tensor:
        return log_normal(z, self.mu, self.logvar)  # (..., B)

    @property
    def code(self) -> Tensor:
        return self.mu

    @property
    def gaussian(self) -> DiagonalGaussian:
        return self

    @property
    def noise_like(self) -> Tensor:
        return self.mu  # (B, Z)

    @property
    def params(self) -> tuple[Tensor, ...]:
        return (self.mu, self.logvar)

    def with_params(self, params: Sequence[Tensor]) -> DiagonalGaussian:
        return DiagonalGaussian(*params)

    def to(self, device: torch.device | str) -> DiagonalGaussian:
        return DiagonalGaussian(self.mu.to(device), self.logvar.to(device))

    def rows(self, index: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian(self.mu[index], self.logvar[index])


class FlowDistribution(NamedTuple):
    """A base Gaussian pushed through invertible maps: z_0 ~ N(mu, var), z_k = f_k(z_{k-1}; context);
    log q(z_K) = log N(z_0) - sum_k log |det df_k/dz_{k-1}|. ``context`` (B, P) holds each row's
    amortised flow parameters (planar) or the encoder's context for the flow networks (IAF)."""

    base: DiagonalGaussian
    context: Tensor
    flows: Sequence[nn.Module]  # each: forward(z (N, Z), context (N, P)) -> (z, log_det (N,)); inverse(z, context)

    def _flat(self, z: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
        lead = z.shape[:-1]  # (..., B)
        context = self.context.expand(*lead, self.context.shape[-1])  # (..., B, P)
        return z.reshape(-1, z.shape[-1]), context.reshape(-1, context.shape[-1]), lead

    def rsample_with_log_prob(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        z0 = self.base.rsample(eps)  # (..., B, Z)
        log_q = self.base.log_prob(z0)  # (..., B)
        z, context, lead = self._flat(z0)
        for flow in self.flows:
            z, log_det = flow(z, context)
            log_q = log_q - log_det.view(lead)
        return z.view(*lead, -1), log_q

    def sample(self, k: int | None = None, generator: torch.Generator | None = None, scale: float = 1.0) -> Tensor:
        eps = scale * standard_noise(self.base.mu, k, generator)
        return self.rsample_with_log_prob(eps)[0]

    def log_prob(self, z: Tensor) -> Tensor:
        flat, context, lead = self._flat(z)
        log_det = flat.new_zeros(flat.shape[0])
        for flow in reversed(self.flows):
            flat = flow.inverse(flat, context)
            log_det = log_det + flow(flat, context)[1]
        return self.base.log_prob(flat.view(*lead, -1)) - log_det.view(lead)

    @property
    def code(self) -> Tensor:
        return self.rsample_with_log_prob(torch.zeros_like(self.base.mu))[0]

    @property
    def gaussian(self) -> None:
        return None  # not a Gaussian: no closed-form KL

    @property
    def noise_like(self) -> Tensor:
        return self.base.mu  # (B, Z)

    @property
    def params(self) -> tuple[Tensor, ...]:
        return (self.base.mu, self.base.logvar, self.context)

    def with_params(self, params: Sequence[Tensor]) -> FlowDistribution:
        mu, logvar, context = params
        return FlowDistribution(DiagonalGaussian(mu, logvar), context, self.flows)

    def to(self, device: torch.device | str) -> FlowDistribution:
        return FlowDistribution(self.base.to(device), self.context.to(device), self.flows)

    def rows(self, index: Tensor) -> FlowDistribution:
        return FlowDistribution(self.base.rows(index), self.context[index], self.flows)


class GaussianMixture(NamedTuple):
    """p(z) = sum_c pi_c N(z; mu_c, diag(exp(logvar_c))) over a batch of ``batch_size`` rows: the same for every
    row (logits (C,), mu and logvar (C, Z): a learned mixture prior) or one per row (logits (B, C), mu and
    logvar (B, C, Z): a prior network's mixture given each row's condition)."""

    logits: Tensor
    mu: Tensor
    logvar: Tensor
    batch_size: int

    def component_log_probs(self, z: Tensor) -> Tensor:
        """log pi_c + log N(z; mu_c, var_c): (..., Z) -> (..., C), or (..., B, Z) -> (..., B, C) per row."""
        return torch.log_softmax(self.logits, -1) + log_normal(z.unsqueeze(-2), self.mu, self.logvar)

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.logsumexp(self.component_log_probs(z), dim=-1)  # (...)

    def responsibilities(self, z: Tensor) -> Tensor:
        """p(c | z): (..., Z) -> (..., C)."""
        return torch.softmax(self.component_log_probs(z), dim=-1)

    def sample(self, k: int | None = None, generator: torch.Generator | None = None, scale: float = 1.0) -> Tensor:
        """c ~ Categorical(pi), then z ~ N(mu_c, (scale sd_c)^2): (B, Z), or (K, B, Z) with ``k``."""
        shape = (self.batch_size,) if k is None else (k, self.batch_size)
        eps = torch.randn((*shape, self.mu.shape[-1]), generator=generator, device=self.mu.device,
                          dtype=self.mu.dtype)
        probs = torch.softmax(self.logits.float(), -1)
        if self.logits.dim() == 1:  # one mixture for every row
            component = torch.multinomial(probs, math.prod(shape), replacement=True, generator=generator).view(shape)
            return self.mu[component] + scale * torch.exp(0.5 * self.logvar[component]) * eps
        draws = 1 if k is None else k
        component = torch.multinomial(probs, draws, replacement=True, generator=generator).T  # (K, B)
        rows = torch.arange(self.batch_size, device=self.mu.device)
        z = self.mu[rows, component] + scale * torch.exp(0.5 * self.logvar[rows, component]) * eps.view(
            draws, self.batch_size, -1)  # (K, B, Z)
        return z.view(*shape, -1)

    def to(self, device: torch.device | str) -> GaussianMixture:
        return GaussianMixture(self.logits.to(device), self.mu.to(device), self.logvar.to(device), self.batch_size)


def continuous_dim(latent_dim: int, categories: Sequence[int], who: str) -> int:
    """Zc = latent_dim - sum K for a z of a Gaussian part and categorical blocks of sizes ``categories``;
    ValueError (naming ``who``) unless every block has >= 2 classes and they fit in latent_dim."""
    if len(categories) == 0 or min(categories) < 2:
        raise ValueError(f"{who} needs categories: one or more block sizes >= 2, got {list(categories)}")
    if sum(categories) > latent_dim:
        raise ValueError(f"{who}'s categories {list(categories)} take {sum(categories)} dimensions of z but "
                         f"latent_dim is {latent_dim}: set latent_dim to the continuous dimensions + {sum(categories)}")
    return latent_dim - sum(categories)


class GaussianCategorical(NamedTuple):
    """z = [z_c ; one-hot c_1 ; .. ; one-hot c_n] (Dupont 2018, "Learning Disentangled Joint Continuous and
    Discrete Representations"): N(mu, diag(exp(logvar))) on the first Zc columns (Zc may be 0) and independent
    categoricals Cat(softmax(logits_i)) of sizes K_1..K_n on the rest; Z = Zc + sum K.

    It is drawn from standard-normal noise (..., B, Z) like every distribution here, so seeded evaluation noise
    serves it unchanged: the first Zc columns reparameterise the Gaussian, each categorical column becomes
    Gumbel noise g = -log(-log Phi(eps)) (Phi(eps) is uniform). With a ``temperature`` tau (a posterior in
    training) a block is the Gumbel-softmax sample softmax((logits + g) / tau) (Jang et al. 2017; the Concrete
    distribution of Maddison et al. 2017), or with ``straight_through`` its one-hot with that gradient; with
    None (evaluation, the prior) the exact one-hot of argmax(logits + g).

    Densities are the discrete model's: log q(z) = log N(z_c) + sum_i log softmax(logits_i)[argmax z_i], the
    probability of the classes z picks, so importance weights and the MI estimate are those of the model that
    decodes one-hots. A relaxed training sample is scored at its argmax too (a surrogate: the ELBO's KL is in
    closed form and does not use it). A prior is the same with zero mu, logvar and logits: N(0, I) x uniform."""

    mu: Tensor  # (B, Zc)
    logvar: Tensor  # (B, Zc)
    logits: Tensor  # (B, sum K) each block's unnormalised log-probabilities, block after block
    categories: tuple[int, ...]  # (K_1, .., K_n)
    temperature: float | None = None  # tau of the relaxed samples; None: one-hot samples
    straight_through: bool = False

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        zc = self.mu.shape[-1]
        return z[..., :zc], z[..., zc:]  # (..., B, Zc), (..., B, sum K)

    def rsample_with_log_prob(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        eps_c, eps_d = self._split(eps)
        z_c = self.mu + torch.exp(0.5 * self.logvar) * eps_c  # (..., B, Zc)
        z_d = gumbel_softmax(self.logits, gumbel_from_normal(eps_d), self.categories,
                             temperature=self.temperature, straight_through=self.straight_through)  # (..., B, sum K)
        z = torch.cat([z_c, z_d], dim=-1)  # (..., B, Z)
        return z, log_normal(z_c, self.mu, self.logvar) + categorical_log_prob(self.logits, z_d, self.categories)

    def sample(self, k: int | None = None, generator: torch.Generator | None = None, scale: float = 1.0) -> Tensor:
        """One-hot samples whatever the temperature, the Gaussian's standard deviation times ``scale``: (B, Z),
        or (K, B, Z) with ``k``."""
        eps = standard_noise(self.noise_like, k, generator)
        eps_c, eps_d = self._split(eps)
        return self._replace(temperature=None).rsample_with_log_prob(torch.cat([scale * eps_c, eps_d], -1))[0]

    def log_prob(self, z: Tensor) -> Tensor:
        z_c, z_d = self._split(z)
        return log_normal(z_c, self.mu, self.logvar) + categorical_log_prob(self.logits, z_d, self.categories)

    @property
    def code(self) -> Tensor:
        """The Gaussian mean and the one-hot of each block's most likely class: (B, Z)."""
        return torch.cat([self.mu, block_one_hot(self.logits, self.categories)], dim=-1)

    @property
    def gaussian(self) -> None:
        return None  # not a Gaussian (its KL has its own closed form)

    @property
    def noise_like(self) -> Tensor:
        return self.logits.new_empty(self.logits.shape[0], self.mu.shape[-1] + self.logits.shape[-1])  # (B, Z)

    @property
    def params(self) -> tuple[Tensor, ...]:
        """([mu ; logits], [logvar ; 0]), each (B, Z) like every posterior's first two; the zeros stand in the
        categorical columns of the log-variance, which ``with_params`` ignores."""
        return (torch.cat([self.mu, self.logits], dim=-1),
                torch.cat([self.logvar, torch.zeros_like(self.logits)], dim=-1))

    def with_params(self, params: Sequence[Tensor]) -> GaussianCategorical:
        location, logvar = params
        zc = self.mu.shape[-1]
        return self._replace(mu=location[..., :zc], logvar=logvar[..., :zc], logits=location[..., zc:])

    def to(self, device: torch.device | str) -> GaussianCategorical:
        return self._replace(mu=self.mu.to(device), logvar=self.logvar.to(device), logits=self.logits.to(device))

    def rows(self, index: Tensor) -> GaussianCategorical:
        return self._replace(mu=self.mu[index], logvar=self.logvar[index], logits=self.logits[index])


LatentDistribution = DiagonalGaussian | FlowDistribution | GaussianMixture | GaussianCategorical
PosteriorDistribution = DiagonalGaussian | FlowDistribution | GaussianCategorical


class KL(NamedTuple):
    value: Tensor  # (B, Z) per dimension in closed form (B, Zc + n) with categorical blocks, or (B, 1) Monte Carlo
    closed_form: bool
    discrete: int = 0  # the last columns of value that are categorical blocks' KLs (one per block)


def closed_form_kl(q: PosteriorDistribution, p: LatentDistribution) -> bool:
    """Whether :func:`kl_divergence` computes KL(q || p) in closed form (it needs no sample then)."""
    return isinstance(q, GaussianCategorical) or (q.gaussian is not None and isinstance(p, DiagonalGaussian))


def discrete_kl_columns(q: PosteriorDistribution | None) -> int:
    """How many trailing columns of a closed-form KL(q || p) are categorical blocks' (0 without any)."""
    return len(q.categories) if isinstance(q, GaussianCategorical) else 0


def kl_divergence(q: PosteriorDistribution, p: LatentDistribution, z: Tensor | None, log_q: Tensor | None) -> KL:
    """KL(q || p) per row: closed form per dimension when both are diagonal Gaussians (the sample is not
    used); for two :class:`GaussianCategorical` the Gaussian KL per continuous dimension and
    KL(q(c_i) || p(c_i)) per categorical block (Dupont 2018), (B, Zc + n), the blocks last; else the
    Monte-Carlo estimate log q(z) - log p(z) at the sample z (..., B, Z) with its log_q (..., B), averaged
    over any leading sample dimensions: (B, 1)."""
    if isinstance(q, GaussianCategorical) or isinstance(p, GaussianCategorical):
        if not (isinstance(q, GaussianCategorical) and isinstance(p, GaussianCategorical)):
            raise ValueError("a categorical posterior needs a categorical prior and back: pair "
                             "textvae.posteriors.GumbelSoftmaxPosterior with textvae.priors.JointPrior")
        if q.categories != p.categories or q.mu.shape[-1] != p.mu.shape[-1]:
            raise ValueError(f"the posterior's categories {list(q.categories)} (and {q.mu.shape[-1]} continuous "
                             f"dimensions) differ from the prior's {list(p.categories)} ({p.mu.shape[-1]}): give "
                             "both the same categories")
        continuous = gaussian_kl_between(q.mu, q.logvar, p.mu, p.logvar).expand_as(q.mu)  # (B, Zc)
        categorical = categorical_kl(q.logits, p.logits.expand_as(q.logits), q.categories)  # (B, n)
        return KL(torch.cat([continuous, categorical], dim=-1), closed_form=True, discrete=len(q.categories))
    if isinstance(p, DiagonalGaussian) and q.gaussian is not None:
        return KL(gaussian_kl_between(q.mu, q.logvar, p.mu, p.logvar).expand_as(q.mu), closed_form=True)
    estimate = log_q - p.log_prob(z)  # (..., B)
    return KL(estimate.reshape(-1, estimate.shape[-1]).mean(0).unsqueeze(-1), closed_form=False)
