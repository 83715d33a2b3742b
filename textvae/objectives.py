"""The VAE objective as small pure functions, written once and shared by every model.

Notation: B batch, T tokens, Z latent, K importance samples; K_1..K_n the sizes of n categorical blocks
(sum K their total). A diagonal Gaussian is ``(mu, logvar)``.

A model's training loss is assembled from these pieces (Bowman et al. 2016, "Generating Sentences from
a Continuous Space"; Higgins et al. 2017; Burgess et al. 2018; Kingma et al. 2016)::

    kl = gaussian_kl(mu, logvar)                      # (B, Z) true KL, per dimension: report this
    kl_opt = free_bits_kl(kl, per_dim=lambda_)        # scalar, batch mean: optimise this
    loss = rec.mean() + kl_term(kl_opt, beta, capacity)

Nothing here samples implicitly from the global RNG when a ``generator`` is given, so evaluation
can be made deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------------
# Sampling and densities


def reparameterize(
    mu: Tensor, logvar: Tensor, k: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) (Kingma & Welling 2014).

    ``mu``, ``logvar``: (B, Z). Returns (B, Z) when ``k`` is None, else (K, B, Z) with K = ``k``
    independent samples per example (the layout :func:`importance_weighted_nll` expects).
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be a positive number of samples, got {k}")
    shape = mu.shape if k is None else (k, *mu.shape)
    eps = torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)  # (B, Z) or (K, B, Z)
    return mu + torch.exp(0.5 * logvar) * eps


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last (Z) dimension.

    Broadcasts: z (K, B, Z) against mu, logvar (B, Z) gives (K, B); z (B, Z) gives (B,).
    """
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def log_standard_normal(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over Z: (..., Z) -> (...)."""
    zero = z.new_zeros(())
    return log_normal(z, zero, zero)


# ---------------------------------------------------------------------------------------------------
# KL divergences and the KL term that is optimised


def gaussian_kl_between(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) per dimension, e.g. (B, Z) -> (B, Z).

    For a learned prior network p(z | context) as in CVAE (Zhao et al. 2017) and VHRED (Serban et al. 2017).
    Sum over the last dimension for the KL of the full diagonal Gaussians.
    """
    return 0.5 * (
        logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p).pow(2)) * torch.exp(-logvar_p) - 1.0
    )


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, var) || N(0, I)) per dimension: (B, Z) -> (B, Z) = 0.5 (mu^2 + var - logvar - 1)."""
    zero = mu.new_zeros(())
    return gaussian_kl_between(mu, logvar, zero, zero)


def free_bits_kl(kl_per_dim: Tensor, *, per_dim: float = 0.0, per_sentence: float = 0.0) -> Tensor:
    """The KL term to *optimise* under free bits, as a scalar: the mean over the batch.

    ``kl_per_dim``: (B, Z), the true per-example, per-dimension KL. Rows are examples (sentences); any
    leading dims are flattened into examples, so a per-turn (B, U, Z) KL treats each turn as one.
    Returns a 0-dim tensor to add (times beta) to the batch-mean reconstruction loss. With both
    thresholds 0 it is exactly ``kl_per_dim.sum(-1).mean()``.

    * ``per_dim = lambda`` (Kingma et al. 2016, "Improved Variational Inference with Inverse
      Autoregressive Flow", eq. 15): ``sum_j max(lambda, mean_b KL[b, j])``: each latent dimension
      gets ``lambda`` nats free, measured on the batch-mean KL of that dimension.
    * ``per_sentence = lambda`` (Li et al. 2019, "A Surprisingly Effective Fix for Deep Latent
      Variable Modeling of Text"): ``mean_b max(lambda, sum_j KL[b, j])``: each sentence gets a KL
      target of ``lambda`` nats. Li et al. (their ``fb=1``) write it as a mask that drops the KL of
      sentences below the target; ``max`` has the same gradient and differs only by a constant.
      (Their dimension-wise ``fb=2`` thresholds each example's dimensions, unlike Kingma's batch mean.)

    The two are alternatives (one floors batch-mean dimensions, the other per-example sums), so giving
    both raises ValueError. Values are in nats. Below the threshold the gradient of the KL is zero,
    so report the true KL (``kl_per_dim.sum(-1).mean()``), never this value.
    """
    if kl_per_dim.dim() < 2:
        raise ValueError(f"kl_per_dim must be (B, Z) or (..., Z), got shape {tuple(kl_per_dim.shape)}")
    kl_per_dim = kl_per_dim.reshape(-1, kl_per_dim.shape[-1])  # (B, Z)
    if per_dim < 0 or per_sentence < 0:
        raise ValueError(
            f"free-bits thresholds must be >= 0, got per_dim={per_dim}, per_sentence={per_sentence}"
        )
    if per_dim > 0 and per_sentence > 0:
        raise ValueError(
            "free_bits_kl: give per_dim (Kingma et al. 2016) or per_sentence (Li et al. 2019), not both"
        )
    if per_dim > 0:
        return kl_per_dim.mean(0).clamp_min(per_dim).sum()  # (Z,) -> ()
    if per_sentence > 0:
        return kl_per_dim.sum(-1).clamp_min(per_sentence).mean()  # (B,) -> ()
    return kl_per_dim.sum(-1).mean()


def kl_term(kl: Tensor, beta: float, capacity: float = 0.0) -> Tensor:
    """beta * KL, or beta * |KL - C| with a capacity C > 0 (Burgess et al. 2018, "Understanding
    disentangling in beta-VAE"). Elementwise: pass the scalar batch-mean KL (e.g. from
    :func:`free_bits_kl`) or a per-example (B,) KL. ``capacity`` is in nats and is usually itself
    annealed by the caller from 0 upwards."""
    if capacity < 0:
        raise ValueError(f"capacity must be >= 0 nats, got {capacity}")
    if capacity == 0:
        return beta * kl
    return beta * (kl - capacity).abs()


def importance_weighted_nll(log_px_given_z: Tensor, log_pz: Tensor, log_qz: Tensor) -> Tensor:
    """-log p(x) estimated with K importance samples z_k ~ q(z|x) (Burda et al. 2016): (K, B) x3 -> (B,).

    ``-(logsumexp_k[log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K)``. An upper bound on -log p(x)
    that tightens as K grows; with K = 1 it is the single-sample negative ELBO.
    """
    if not (log_px_given_z.shape == log_pz.shape == log_qz.shape) or log_pz.dim() != 2:
        raise ValueError(
            "importance_weighted_nll expects three (K, B) tensors, got "
            f"{tuple(log_px_given_z.shape)}, {tuple(log_pz.shape)}, {tuple(log_qz.shape)}"
        )
    log_weights = log_px_given_z + log_pz - log_qz  # (K, B)
    k = log_weights.shape[0]
    return -(torch.logsumexp(log_weights, dim=0) - math.log(k))  # (B,)


# ---------------------------------------------------------------------------------------------------
# Categorical latents: Gumbel-softmax (Jang et al. 2017) / Concrete (Maddison et al. 2017)
#
# A block layout: the last dimension holds n categorical blocks of sizes ``categories`` = (K_1, .., K_n)
# side by side, (..., sum K); each function works block by block.


def gumbel_from_normal(eps: Tensor) -> Tensor:
    """Standard Gumbel noise from standard-normal noise, elementwise: g = -log(-log u) with u = Phi(eps),
    which is uniform on (0, 1). log u = log Phi(eps) is computed directly (``log_ndtr``), so u never rounds
    to 0 or 1: -log u is floored at the smallest normal float only where it underflows (eps > ~9 in float32,
    where g would be ~87 or more)."""
    x = eps if eps.dtype in (torch.float32, torch.float64) else eps.float()
    neg_log_u = -torch.special.log_ndtr(x)  # (...) > 0
    return -torch.log(neg_log_u.clamp_min(torch.finfo(x.dtype).tiny)).to(eps.dtype)


def block_log_softmax(logits: Tensor, categories: Sequence[int]) -> Tensor:
    """log softmax within each block: (..., sum K) -> (..., sum K)."""
    return torch.cat([block.log_softmax(-1) for block in logits.split(list(categories), dim=-1)], dim=-1)


def block_one_hot(scores: Tensor, categories: Sequence[int]) -> Tensor:
    """The one-hot of each block's argmax: (..., sum K) -> (..., sum K), in the dtype of ``scores``."""
    return torch.cat([F.one_hot(block.argmax(-1), block.shape[-1]).to(scores.dtype)
                      for block in scores.split(list(categories), dim=-1)], dim=-1)


def gumbel_softmax(logits: Tensor, gumbel: Tensor, categories: Sequence[int], *, temperature: float | None,
                   straight_through: bool = False) -> Tensor:
    """One sample per row of each block from its logits (..., sum K) and Gumbel noise (..., sum K).

    * ``temperature`` tau: the relaxed sample softmax((logits + g) / tau) (Jang et al. 2017, eq. 1; the
      Concrete distribution of Maddison et al. 2017), a point of the simplex, differentiable in the logits;
      ``straight_through``: its one-hot argmax in the forward pass with the relaxed sample's gradient
      (Jang et al. 2017, section 2.2).
    * ``temperature=None``: the one-hot of argmax(logits + g), an exact categorical sample with
      probabilities softmax(logits) (the Gumbel-max trick), without a gradient.
    """
    scores = logits + gumbel  # (..., sum K)
    if temperature is None:
        return block_one_hot(scores, categories)
    if temperature <= 0:
        raise ValueError(f"the Gumbel-softmax temperature must be > 0, got {temperature}")
    relaxed = torch.cat([block.div(temperature).softmax(-1) for block in scores.split(list(categories), dim=-1)],
                        dim=-1)
    if not straight_through:
        return relaxed
    return block_one_hot(scores, categories) + (relaxed - relaxed.detach())  # exactly one-hot: x - x is 0


def categorical_log_prob(logits: Tensor, z: Tensor, categories: Sequence[int]) -> Tensor:
    """sum over blocks of log softmax(logits)[c], c the argmax of z's block: the log probability of the classes
    a (one-hot, or relaxed) sample picks. logits (B, sum K) broadcast against z (..., B, sum K) -> (..., B)."""
    log_p = block_log_softmax(logits, categories).expand_as(z)  # (..., B, sum K)
    picked = [lp.gather(-1, block.argmax(-1, keepdim=True))  # (..., B, 1)
              for lp, block in zip(log_p.split(list(categories), -1), z.split(list(categories), -1), strict=True)]
    return torch.cat(picked, dim=-1).sum(-1)


def categorical_kl(logits_q: Tensor, logits_p: Tensor, categories: Sequence[int]) -> Tensor:
    """KL(Cat(softmax(logits_q)) || Cat(softmax(logits_p))) per block: (B, sum K) x2 -> (B, n),
    sum_c q_c (log q_c - log p_c). Against uniform logits it is sum_c q_c log q_c + log K = log K - H(q)."""
    log_q = block_log_softmax(logits_q, categories)  # (B, sum K)
    log_p = block_log_softmax(logits_p, categories)
    terms = torch.exp(log_q) * (log_q - log_p)  # (B, sum K)
    return torch.stack([block.sum(-1) for block in terms.split(list(categories), dim=-1)], dim=-1)  # (B, n)


# ---------------------------------------------------------------------------------------------------
# Bag-of-words loss (Zhao et al. 2017, section 3.2)


def bag_of_words_nll(logits: Tensor, targets: Tensor, *, pad_id: int) -> Tensor:
    """-sum_t log softmax(logits)[x_t] over the real targets of each row: (B, V), (B, T) -> (B,).

    Zhao et al. (2017)'s auxiliary loss: one distribution over the vocabulary, predicted from (c, z)
    without word order, must explain every word of the response (and EOS, as in their code), which
    forces z to carry the response's content. ``targets`` equal to ``pad_id`` are ignored.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B, V)
    picked = log_probs.gather(1, targets)  # (B, T)
    return -(picked * (targets != pad_id)).sum(-1)  # (B,)


# ---------------------------------------------------------------------------------------------------
# Word dropout (Bowman et al. 2016, section 3.3)


def word_dropout(
    tokens: Tensor,
    p: float,
    *,
    unk_id: int,
    protected: Tensor | Iterable[int],
    generator: torch.Generator | None = None,
) -> Tensor:
    """Replace each decoder-input token by ``unk_id`` with probability ``p``, except protected ids.

    ``tokens``: (B, T) integer ids (any shape works). ``protected``: ids never replaced; pass at least
    ``{pad_id, bos_id}`` and usually ``eos_id`` too (BOS and PAD must never be touched; the function
    cannot know them otherwise). Returns a new tensor; ``p = 0`` returns an unchanged copy. Apply it
    to the decoder input only, and only in training: that is the caller's job.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"word dropout probability must be in [0, 1], got {p}")
    if p == 0.0:
        return tokens.clone()
    ids = protected if isinstance(protected, Tensor) else list(protected)
    protected_ids = torch.as_tensor(ids, dtype=tokens.dtype, device=tokens.device)
    keep = torch.isin(tokens, protected_ids)  # (B, T) bool
    drop = torch.rand(tokens.shape, generator=generator, device=tokens.device) < p  # (B, T) bool
    return torch.where(drop & ~keep, torch.full_like(tokens, unk_id), tokens)


# ---------------------------------------------------------------------------------------------------
# Latent-space interpolation (homotopies, Bowman et al. 2016 section 5; White 2016 for slerp)


def _interpolation_weights(z0: Tensor, steps: int) -> Tensor:
    if steps < 2:
        raise ValueError(f"an interpolation path needs steps >= 2 to include both ends, got {steps}")
    t = torch.linspace(0.0, 1.0, steps, device=z0.device, dtype=z0.dtype)  # (steps,)
    return t.view(steps, *([1] * z0.dim()))  # (steps, 1, ...) to broadcast over z0's shape


def lerp(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """Straight line from z0 to z1: (Z,) x2 -> (steps, Z), both ends included exactly."""
    t = _interpolation_weights(z0, steps)
    return (1.0 - t) * z0 + t * z1


def slerp(z0: Tensor, z1: Tensor, steps: int, eps: float = 1e-6) -> Tensor:
    """Spherical interpolation (White 2016, "Sampling Generative Networks"): (Z,) x2 -> (steps, Z).

    Follows the great circle between the directions of z0 and z1 (it keeps the norm when both norms are
    equal), so the path stays where a Gaussian prior puts its mass instead of cutting through the origin.
    Where the angle's sine is below ``eps`` (parallel or anti-parallel vectors, or a zero vector) the
    great circle is undefined or degenerate and it falls back to :func:`lerp`.
    Also works on batches of pairs: (..., Z) -> (steps, ..., Z).
    """
    t = _interpolation_weights(z0, steps)  # (steps, 1, ...)
    n0 = z0.norm(dim=-1, keepdim=True)  # (..., 1)
    n1 = z1.norm(dim=-1, keepdim=True)
    cos = ((z0 * z1).sum(-1, keepdim=True) / (n0 * n1).clamp_min(torch.finfo(z0.dtype).tiny)).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)  # (..., 1)
    sin = torch.sin(omega)
    degenerate = (sin < eps) | (n0 == 0) | (n1 == 0)  # (..., 1)
    safe_sin = torch.where(degenerate, torch.ones_like(sin), sin)
    spherical = (torch.sin((1.0 - t) * omega) * z0 + torch.sin(t * omega) * z1) / safe_sin
    path = torch.where(degenerate, lerp(z0, z1, steps), spherical)  # (steps, ..., Z)
    # sin(omega * t) / sin(omega) is exactly 0 or 1 only up to rounding: pin both ends.
    path[0] = z0
    path[-1] = z1
    return path
