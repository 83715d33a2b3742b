"""Distributions over z as the latent models use them: drawn from explicit noise, scored at any z.

A posterior component (:mod:`textvae.posteriors`) returns a :class:`DiagonalGaussian` or a
:class:`FlowDistribution` (a Gaussian pushed through a normalizing flow); a prior component
(:mod:`textvae.priors`) a :class:`DiagonalGaussian` (N(0, I) or a prior network's) or a
:class:`GaussianMixture`. What every one offers:

* ``rsample_with_log_prob(eps)``: z from standard-normal noise ``eps`` (..., B, Z) by reparameterisation,
  and log q(z) at it, (..., B). The noise is an argument so evaluation can draw it from seeded generators.
* ``log_prob(z)``: the log density at any z (..., B, Z) -> (..., B) (a flow is inverted for it), which
  the mutual-information estimate needs at other sentences' samples.
* ``code``: one deterministic point per row, (B, Z): the mean of a Gaussian, the base mean pushed
  through the flow; what reconstruction, homotopies and active units read.
* ``params`` / ``with_params``: the per-example tensors that define it, for semi-amortised refinement.

:func:`kl_divergence` is closed-form per dimension between two diagonal Gaussians and a Monte-Carlo
estimate log q(z) - log p(z) at the sample otherwise.

Notation: B batch, Z latent, K samples, C mixture components, P flow context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from textvae.objectives import gaussian_kl_between, log_normal


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
    """p(z) = sum_c pi_c N(z; mu_c, diag(exp(logvar_c))), the same for every row of a batch of
    ``batch_size``: logits (C,), mu and logvar (C, Z)."""

    logits: Tensor
    mu: Tensor
    logvar: Tensor
    batch_size: int

    def component_log_probs(self, z: Tensor) -> Tensor:
        """log pi_c + log N(z; mu_c, var_c): (..., Z) -> (..., C)."""
        return torch.log_softmax(self.logits, -1) + log_normal(z.unsqueeze(-2), self.mu, self.logvar)

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.logsumexp(self.component_log_probs(z), dim=-1)  # (...)

    def responsibilities(self, z: Tensor) -> Tensor:
        """p(c | z): (..., Z) -> (..., C)."""
        return torch.softmax(self.component_log_probs(z), dim=-1)

    def sample(self, k: int | None = None, generator: torch.Generator | None = None, scale: float = 1.0) -> Tensor:
        """c ~ Categorical(pi), then z ~ N(mu_c, (scale sd_c)^2): (B, Z), or (K, B, Z) with ``k``."""
        shape = (self.batch_size,) if k is None else (k, self.batch_size)
        probs = torch.softmax(self.logits.float(), -1)
        component = torch.multinomial(probs, math.prod(shape), replacement=True, generator=generator).view(shape)
        eps = torch.randn((*shape, self.mu.shape[-1]), generator=generator, device=self.mu.device,
                          dtype=self.mu.dtype)
        return self.mu[component] + scale * torch.exp(0.5 * self.logvar[component]) * eps

    def to(self, device: torch.device | str) -> GaussianMixture:
        return GaussianMixture(self.logits.to(device), self.mu.to(device), self.logvar.to(device), self.batch_size)


LatentDistribution = DiagonalGaussian | FlowDistribution | GaussianMixture


class KL(NamedTuple):
    value: Tensor  # (B, Z) per dimension in closed form, or (B, 1) a Monte-Carlo estimate
    closed_form: bool


def kl_divergence(q: DiagonalGaussian | FlowDistribution, p: LatentDistribution, z: Tensor, log_q: Tensor) -> KL:
    """KL(q || p) per row: closed form per dimension when both are diagonal Gaussians (the sample is not
    used), else the Monte-Carlo estimate log q(z) - log p(z) at the sample z (..., B, Z) with its log_q
    (..., B), averaged over any leading sample dimensions: (B, 1)."""
    if isinstance(p, DiagonalGaussian) and q.gaussian is not None:
        return KL(gaussian_kl_between(q.mu, q.logvar, p.mu, p.logvar).expand_as(q.mu), closed_form=True)
    estimate = log_q - p.log_prob(z)  # (..., B)
    return KL(estimate.reshape(-1, estimate.shape[-1]).mean(0).unsqueeze(-1), closed_form=False)
