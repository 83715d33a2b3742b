"""The inference families over any latent model, written once on the :class:`~textvae.models.LatentModel`
contract (``infer``, ``log_px_given_z``): whatever its posterior and prior components are.

* :func:`importance_samples`: the three (K, B) terms of the importance-weighted bound (Burda et al. 2016),
  for the IWAE objective in training and for IW-NLL in evaluation;
* :func:`elbo`: the ELBO of a given q, with a closed-form KL where one exists;
* :func:`refine`: semi-amortised variational inference (Kim et al. 2018): gradient steps on each
  example's posterior parameters starting from the encoder's output, differentiable (SA-VAE training)
  or not (evaluation: the amortisation gap of Cremer et al. 2018);
* :func:`mutual_information`: I(x; z) under q with the aggregate posterior of a set of examples, from
  log q(z_i | x_j) at other examples' samples, so it holds for flow posteriors too.

Notation: B batch, Z latent, K samples, N examples.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from textvae.distributions import KL, PosteriorDistribution, closed_form_kl, kl_divergence, standard_noise
from textvae.models.modules import ImportanceSamples, Inference


def importance_samples(model: Any, batch: Any, k: int, *, inference: Inference | None = None,
                       noise: Tensor | None = None, generator: torch.Generator | None = None,
                       chunk: int | None = None) -> ImportanceSamples:
    """K samples z_k ~ q(z | x) per example and log p(x | z_k), log p(z_k), log q(z_k | x), each (K, B).

    ``noise``: the standard-normal draws (K, B, Z) to use (evaluation seeds them per example); else drawn
    with ``generator``. ``inference``: ``model.infer(batch)`` if already computed. Gradients flow (IWAE
    training); wrap in ``torch.no_grad()`` to evaluate."""
    inference = inference if inference is not None else model.infer(batch)
    q = inference.q
    eps = noise if noise is not None else standard_noise(q.noise_like, k, generator)  # (K, B, Z)
    z, log_q = q.rsample_with_log_prob(eps)  # (K, B, Z), (K, B)
    log_px = model.log_px_given_z(batch, z, chunk=chunk, condition=inference.condition)  # (K, B)
    return ImportanceSamples(log_px_given_z=log_px, log_pz=inference.p.log_prob(z), log_qz=log_q)


def sampled_kl(inference: Inference, terms: ImportanceSamples) -> KL:
    """KL(q || p) per example, (B,): closed form where one exists (two diagonal Gaussians; a Gaussian-categorical
    pair), else the Monte-Carlo estimate over the K importance samples of ``terms`` (their log q - log p)."""
    q, p = inference.q, inference.p
    if closed_form_kl(q, p):
        return KL(kl_divergence(q, p, None, None).value.sum(-1), closed_form=True)
    return KL((terms.log_qz - terms.log_pz).mean(0), closed_form=False)


def elbo(model: Any, batch: Any, inference: Inference, noise: Tensor, *, chunk: int | None = None) -> Tensor:
    """log p(x | z) - KL(q || p) per example (B,), averaged over the samples of ``noise`` (K, B, Z); the KL
    in closed form where both are diagonal Gaussians, else log q(z) - log p(z) at the same samples."""
    z, log_q = inference.q.rsample_with_log_prob(noise)  # (K, B, Z), (K, B)
    log_px = model.log_px_given_z(batch, z, chunk=chunk, condition=inference.condition)  # (K, B)
    kl = kl_divergence(inference.q, inference.p, z, log_q)
    return log_px.mean(0) - kl.value.sum(-1)


def refine(model: Any, batch: Any, inference: Inference, *, steps: int, lr: float = 1.0,
           max_grad_norm: float | None = 5.0, generator: torch.Generator | None = None,
           differentiable: bool = False, samples: int = 1, keep_best: bool = False) -> Inference:
    """Semi-amortised VI (Kim et al. 2018): ``steps`` gradient-ascent steps of size ``lr`` on each example's
    posterior parameters (mu, logvar; a flow's amortised context too) to raise its ELBO for the fixed
    decoder and prior, starting from the encoder's output. Each step draws ``samples`` fresh noise draws
    (with ``generator``); each example's gradient is clipped to ``max_grad_norm`` (Kim et al. clip at 5).

    ``differentiable=False``: the refined parameters are detached from the encoder (evaluation; the
    decoder gets no gradient from the steps). ``True``: the steps stay in the graph, so a loss on the
    refined posterior trains the encoder through them (SA-VAE, second-order gradients).
    ``keep_best`` (not differentiable): each example keeps the parameters of its best ELBO estimate along
    the way, the start included, which guards against steps that overshoot. The choice is made on the
    ``samples``-draw estimates, so with a Monte-Carlo ELBO (a flow, a mixture prior) it can still be worse in
    truth than the start: measure the result with fresh samples, not with these estimates.
    A categorical posterior in eval mode draws one-hot samples, which have no gradient: there its logits move
    by the closed-form KL's gradient alone (the Gaussian part by both terms); in training mode (SA-VAE) its
    relaxed samples carry the reconstruction's gradient too."""
    if steps < 0 or lr <= 0:
        raise ValueError(f"refine needs steps >= 0 and lr > 0, got {steps}, {lr}")
    if keep_best and differentiable:
        raise ValueError("keep_best picks parameters by value, which has no gradient: use it without differentiable")
    params = [p if differentiable else p.detach().requires_grad_() for p in inference.q.params]
    best = best_value = None
    # second derivatives through attention exist only for its plain (math) kernel, not the fused ones
    kernels = sdpa_kernel(SDPBackend.MATH) if differentiable else contextlib.nullcontext()
    with torch.enable_grad(), kernels:
        for step in range(steps + 1):
            if step == steps and not keep_best:  # the last parameters need no scoring
                break
            current = inference._replace(q=inference.q.with_params(params))
            noise = standard_noise(current.q.noise_like, samples, generator)  # (S, B, Z)
            value = elbo(model, batch, current, noise)  # (B,)
            if keep_best:
                better = value.detach() if best is None else value.detach() > best_value  # (B,)
                best_value = value.detach() if best is None else torch.where(better, value.detach(), best_value)
                best = [p.detach() if b is None else torch.where(better.view(-1, *[1] * (p.dim() - 1)), p.detach(), b)
                        for p, b in zip(params, best or [None] * len(params), strict=True)]
            if step == steps:  # the last parameters only needed scoring
                break
            grads = torch.autograd.grad(value.sum(), params, create_graph=differentiable)
            if max_grad_norm is not None:  # per example: row b of every parameter tensor
                norm = torch.sqrt(sum(g.pow(2).flatten(1).sum(-1) for g in grads))  # (B,)
                factor = (max_grad_norm / norm.clamp_min(1e-12)).clamp(max=1.0).unsqueeze(-1)  # (B, 1)
                grads = [g * factor for g in grads]
            params = [p + lr * g for p, g in zip(params, grads, strict=True)]
            if not differentiable:
                params = [p.detach().requires_grad_() for p in params]
    if keep_best:
        params = best
    elif not differentiable:
        params = [p.detach() for p in params]
    return inference._replace(q=inference.q.with_params(params))


def concatenate(distributions: list[PosteriorDistribution]) -> PosteriorDistribution:
    """One distribution whose rows are those of the given ones (the same kind, the same flows), in order."""
    first = distributions[0]
    params = [torch.cat(parts) for parts in zip(*(d.params for d in distributions), strict=True)]
    return first.with_params(params)


@torch.no_grad()
def mutual_information(q: PosteriorDistribution, *, group_size: int = 1000,
                       generator: torch.Generator | None = None, chunk: int = 64) -> float:
    """I(x; z) = E_x E_q(z|x)[log q(z | x) - log q(z)] over the N rows of ``q`` (one per example), with
    the aggregate posterior of each group of ``group_size`` examples, q(z) ~ 1/G sum_j q(z | x_j), one
    sample z_i ~ q(z | x_i) per example (He et al. 2019's estimator, with the analytic entropy replaced by
    the sample's log q so it holds for any posterior). Examples are grouped at random (``generator``); a
    group of G bounds the estimate by log G, so compare models at the same G. In nats."""
    n = q.noise_like.shape[0]
    if n < 2:
        raise ValueError(f"mutual information needs at least 2 examples, got {n}")
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2, got {group_size}")
    order = torch.randperm(n, generator=generator)
    groups = list(order.split(group_size))
    if len(groups) > 1 and len(groups[-1]) < group_size:  # fold a short last group into the one before
        groups[-2:] = [torch.cat(groups[-2:])]
    total = 0.0
    for rows in groups:
        group = q.rows(rows.to(q.noise_like.device))
        eps = torch.randn(group.noise_like.shape, generator=generator).to(group.noise_like)  # (G, Z)
        z, log_q = group.rsample_with_log_prob(eps)  # (G, Z), (G,)
        g = z.shape[0]
        log_aggregate = torch.cat([
            torch.logsumexp(group.log_prob(z_i.unsqueeze(1).expand(-1, g, -1)), dim=1)  # (c, G) -> (c,)
            for z_i in z.split(chunk)]) - math.log(g)
        total += float((log_q - log_aggregate).sum())
    return total / n
