"""A mixture of diagonal Gaussians fitted by EM: VaDE's initialisation of its mixture prior (Jiang et al. 2017,
section 3.3: pretrain an autoencoder, fit a GMM to its codes, start the prior there).

k-means++ seeding (Arthur & Vassilvitskii 2007) picks the first means, then EM (Dempster et al. 1977) with
diagonal covariances, a variance floor and the mixing weights learned. Deterministic given ``generator``.

Notation: N points, D dimensions, C components.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from textvae.objectives import log_normal


class GaussianMixtureFit(NamedTuple):
    logits: Tensor  # (C,) log mixing weights (normalised)
    mu: Tensor  # (C, D)
    logvar: Tensor  # (C, D)
    log_likelihood: list[float]  # mean log-likelihood per point after each EM iteration


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """k seeds among the rows of ``x`` (N, D): the first uniformly, each next one with probability proportional
    to its squared distance to the nearest seed so far. -> (k, D)."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    seeds = [x[first]]
    nearest = (x - x[first]).pow(2).sum(-1)  # (N,)
    for _ in range(1, k):
        weights = nearest / nearest.sum() if nearest.sum() > 0 else torch.full_like(nearest, 1 / n)
        chosen = int(torch.multinomial(weights, 1, generator=generator))
        seeds.append(x[chosen])
        nearest = torch.minimum(nearest, (x - x[chosen]).pow(2).sum(-1))
    return torch.stack(seeds)


def fit_gaussian_mixture(x: Tensor, k: int, *, iterations: int = 100, min_variance: float = 1e-3,
                         tolerance: float = 1e-5, restarts: int = 1,
                         generator: torch.Generator | None = None) -> GaussianMixtureFit:
    """EM for a k-component diagonal Gaussian mixture on ``x`` (N, D), in float64; stops when the mean
    log-likelihood gains less than ``tolerance`` in an iteration. Variances are floored at ``min_variance``.
    ``restarts``: EM from that many k-means++ seedings, keeping the fit of the highest likelihood."""
    if x.dim() != 2 or x.shape[0] < k or k < 1:
        raise ValueError(f"a {k}-component mixture needs k >= 1 and at least k points of shape (N, D), got "
                         f"{tuple(x.shape)}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    fits = [_em(x.detach().double().cpu(), k, iterations, min_variance, tolerance, generator) for _ in range(restarts)]
    return max(fits, key=lambda fit: fit.log_likelihood[-1])


def _em(x: Tensor, k: int, iterations: int, min_variance: float, tolerance: float,
        generator: torch.Generator | None) -> GaussianMixtureFit:
    mu = kmeans_plus_plus(x, k, generator)  # (C, D)
    var = x.var(0, unbiased=False).clamp_min(min_variance).expand(k, -1).clone()  # (C, D)
    log_pi = torch.full((k,), -math.log(k), dtype=x.dtype)
    history: list[float] = []
    for _ in range(iterations):
        joint = log_pi + log_normal(x.unsqueeze(1), mu, var.log())  # (N, C): log pi_c + log N(x | c)
        log_px = torch.logsumexp(joint, dim=1, keepdim=True)  # (N, 1)
        history.append(float(log_px.mean()))
        resp = (joint - log_px).exp()  # (N, C) responsibilities
        weight = resp.sum(0).clamp_min(1e-10)  # (C,)
        mu = resp.T @ x / weight[:, None]
        var = (resp.T @ x.pow(2) / weight[:, None] - mu.pow(2)).clamp_min(min_variance)
        log_pi = (weight / weight.sum()).log()
        if len(history) > 1 and history[-1] - history[-2] < tolerance:
            break
    return GaussianMixtureFit(logits=log_pi.float(), mu=mu.float(), logvar=var.log().float(), log_likelihood=history)
