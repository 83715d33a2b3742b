"""Training objectives: what the training system optimises from a latent model's terms, chosen in a recipe
by ``class_path`` (``model.objective``). The math is :mod:`textvae.objectives`; the sampling
:mod:`textvae.inference`.

* :class:`ELBO`: ``reconstruction + aux + beta * KL term`` (Bowman et al. 2016), the KL term with free
  bits per dimension (Kingma et al. 2016) or per sentence (Li et al. 2019) and a capacity
  (Burgess et al. 2018), one for the continuous and one for the categorical part of a joint z (Dupont 2018);
  optionally at a posterior refined by semi-amortised steps (Kim et al. 2018).
* :class:`IWAE`: the importance-weighted bound with k samples (Burda et al. 2016), the prior-to-posterior
  ratio of every sample weighted by the same annealed beta (beta = 1 is the IWAE bound); the encoder's
  gradient reparameterised or doubly reparameterised (DReG, Tucker et al. 2018).

Both report the same metrics, the *true* ones (never the weighted or clamped loss): reconstruction,
KL (closed form where one exists, else the Monte-Carlo estimate; ``kl_closed_form`` says which), ELBO,
kgCVAE's act NLL, aux; the ELBO adds ``kl_discrete`` (the categorical blocks' share of the KL) for a joint z,
IWAE adds ``iw_bound``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from textvae.distributions import DiagonalGaussian, discrete_kl_columns, kl_divergence, standard_noise
from textvae.inference import importance_samples, refine, sampled_kl
from textvae.models.modules import ImportanceSamples
from textvae.objectives import free_bits_kl, kl_term


class SVI(NamedTuple):
    """Semi-amortised training: ``steps`` refinement steps of size ``lr`` on each example's posterior."""

    steps: int
    lr: float


class LossTerms(NamedTuple):
    loss: Tensor  # () what is optimised
    metrics: dict[str, Tensor]  # () each: reconstruction, kl, elbo, ... (true values, batch means)
    code: Tensor | None  # (B, Z) posterior codes (means), for active units
    posterior: Any  # q(z | x) of the batch (detached by the caller), for the mutual information; None without z
    kl_closed_form: bool | None = None  # the logged KL is the closed form (True), a Monte-Carlo estimate (False)


class Objective:
    """``objective(model, batch, beta=..., svi=...) -> LossTerms``."""

    def __call__(self, model: Any, batch: Any, *, beta: float, svi: SVI | None = None) -> LossTerms:
        raise NotImplementedError


class ELBO(Objective):
    """The negative ELBO with β (from the KL schedule), free bits and capacities (all in nats).

    Args:
        free_bits_per_dim: Kingma et al. (2016): each latent dimension's batch-mean KL is floored at this (a
            categorical block counts as one dimension).
        free_bits_per_sentence: Li et al. (2019): each sentence's KL is floored at this target.
        capacity: Burgess et al. (2018): optimise beta * |KL - C| instead of beta * KL. With categorical blocks
            in z (:class:`~textvae.posteriors.GumbelSoftmaxPosterior`) it is the continuous part's capacity.
        discrete_capacity: Dupont (2018): the categorical blocks' capacity, optimised as beta * |KL_discrete -
            C_discrete| beside beta * |KL_continuous - C| (each part plain beta * KL where its capacity is 0);
            no more than the blocks can hold, sum_i log K_i (as Dupont caps it).

    Both capacities are constant: an objective is not told the training step, so Dupont's linear increase of
    each C from 0 is not available here.
    """

    def __init__(self, *, free_bits_per_dim: float = 0.0, free_bits_per_sentence: float = 0.0, capacity: float = 0.0,
                 discrete_capacity: float = 0.0):
        if min(free_bits_per_dim, free_bits_per_sentence, capacity, discrete_capacity) < 0:
            raise ValueError(f"free bits and capacities must be >= 0 nats, got {free_bits_per_dim}, "
                             f"{free_bits_per_sentence}, {capacity}, {discrete_capacity}")
        if free_bits_per_dim > 0 and free_bits_per_sentence > 0:
            raise ValueError("give free_bits_per_dim (Kingma et al. 2016) or free_bits_per_sentence (Li et al. 2019), "
                             "not both")
        self.free_bits_per_dim, self.free_bits_per_sentence = free_bits_per_dim, free_bits_per_sentence
        self.capacity, self.discrete_capacity = capacity, discrete_capacity

    def __call__(self, model: Any, batch: Any, *, beta: float, svi: SVI | None = None) -> LossTerms:
        if svi is not None:
            return self._semi_amortised(model, batch, beta, svi)
        out = model(batch)
        reconstruction = out.reconstruction.mean()
        aux = out.aux_loss.mean()
        metrics = {"reconstruction": reconstruction}
        bound = reconstruction  # -ELBO: reconstruction (+ act NLL) (+ KL)
        if out.act_nll is not None:
            metrics["act_nll"] = out.act_nll.mean()
            bound = bound + metrics["act_nll"]
        if out.kl is None:
            metrics["elbo"] = -bound
            return LossTerms(reconstruction + aux, self._with_aux(metrics, out.aux_loss, aux), None, None)
        discrete = discrete_kl_columns(out.posterior) if out.kl_closed_form else 0
        loss = reconstruction + aux + self._kl_term(out.kl, out.kl_closed_form, beta, out.posterior)
        kl = out.kl.sum(-1).mean()  # the true KL, whatever is optimised
        metrics |= {"kl": kl, "elbo": -(bound + kl)} | self._discrete_metrics(out.kl, discrete)
        return LossTerms(loss, self._with_aux(metrics, out.aux_loss, aux), out.mu, out.posterior, out.kl_closed_form)

    def _kl_term(self, kl: Tensor, closed_form: bool, beta: float, posterior: Any) -> Tensor:
        if self.free_bits_per_dim > 0 and not closed_form:
            raise ValueError("free_bits_per_dim needs a KL per dimension (closed form: Gaussian posterior and "
                             "Gaussian prior); with a flow posterior or a mixture prior use free_bits_per_sentence")
        discrete = discrete_kl_columns(posterior) if closed_form else 0
        if self.discrete_capacity > 0 and discrete == 0:
            raise ValueError("discrete_capacity acts on the KL of categorical latents: use a posterior with "
                             "categorical blocks (textvae.posteriors.GumbelSoftmaxPosterior), or leave it 0")
        if discrete == 0 or self.capacity == self.discrete_capacity == 0:
            optimised = free_bits_kl(kl, per_dim=self.free_bits_per_dim, per_sentence=self.free_bits_per_sentence)
            return kl_term(optimised, beta, self.capacity)
        # Dupont (2018): beta |KL_continuous - C| + beta |KL_discrete - C_discrete|
        if self.free_bits_per_sentence > 0:
            raise ValueError("free_bits_per_sentence floors a sentence's whole KL, capacities act on each part's: "
                             "with capacities on a joint z use free_bits_per_dim or no free bits")
        continuous, categorical = kl[..., :-discrete], kl[..., -discrete:]  # (B, Zc), (B, n)
        if self.capacity > 0 and continuous.shape[-1] == 0:
            raise ValueError("capacity acts on the continuous part of z and this posterior has none (latent_dim = "
                             "the sum of its categories): give discrete_capacity alone")
        limit = sum(math.log(k) for k in posterior.categories)  # the most KL the blocks can hold
        term = kl_term(free_bits_kl(categorical, per_dim=self.free_bits_per_dim), beta,
                       min(self.discrete_capacity, limit))
        if continuous.shape[-1] > 0:
            term = term + kl_term(free_bits_kl(continuous, per_dim=self.free_bits_per_dim), beta, self.capacity)
        return term

    @staticmethod
    def _discrete_metrics(kl: Tensor, discrete: int) -> dict[str, Tensor]:
        return {"kl_discrete": kl[..., -discrete:].sum(-1).mean()} if discrete else {}

    @staticmethod
    def _with_aux(metrics: dict[str, Tensor], aux_loss: Tensor, aux: Tensor) -> dict[str, Tensor]:
        return metrics | {"aux": aux} if aux_loss.abs().sum() > 0 else metrics

    def _semi_amortised(self, model: Any, batch: Any, beta: float, svi: SVI) -> LossTerms:
        """SA-VAE (Kim et al. 2018): the ELBO at the posterior after ``svi.steps`` differentiable refinement
        steps from the encoder's output, so the decoder trains on the refined posterior and the encoder
        through the steps. The models' auxiliary losses are not added here."""
        inference = refine(model, batch, model.infer(batch), steps=svi.steps, lr=svi.lr, differentiable=True)
        q = inference.q
        z, log_q = q.rsample_with_log_prob(standard_noise(q.noise_like, 1))  # (1, B, Z), (1, B)
        reconstruction = -model.log_px_given_z(batch, z, condition=inference.condition)[0].mean()
        kl = kl_divergence(q, inference.p, z, log_q)
        loss = reconstruction + self._kl_term(kl.value, kl.closed_form, beta, q)
        true_kl = kl.value.sum(-1).mean()
        metrics = {"reconstruction": reconstruction, "kl": true_kl, "elbo": -(reconstruction + true_kl)}
        metrics |= self._discrete_metrics(kl.value, kl.discrete)
        return LossTerms(loss, metrics, q.code, q)


class IWAE(Objective):
    """The importance-weighted bound with ``k`` samples (Burda et al. 2016):
    ``-E[log 1/k sum_i p(x | z_i) (p(z_i) / q(z_i | x))^beta]``, beta from the same KL schedule (1: the bound).
    k = 1 is the one-sample ELBO. The models' auxiliary losses (bag-of-words, kgCVAE's act) are not added.

    ``estimator``: how the encoder's gradient is estimated; the decoder's and the prior's are the same either
    way, and so is the loss's value.

    * ``"reparam"``: the reparameterised gradient of the bound (Burda et al.), whose signal-to-noise ratio for
      the encoder falls as k grows (Rainforth et al. 2018);
    * ``"dreg"``: the doubly reparameterised estimator (Tucker et al. 2018), unbiased for the same gradient:
      log q(z_i) is taken with the posterior's parameters held fixed and each sample's path gradient through
      z_i is weighted by ``(1 - beta) w_i + beta w_i^2`` (w_i the normalised weights) instead of w_i. At the
      exact posterior its encoder gradient is zero for every draw. It needs a posterior whose parameters are
      all in ``q.params`` (the diagonal Gaussians, BN-Gaussian included), not a flow.
    """

    ESTIMATORS = ("reparam", "dreg")

    def __init__(self, *, k: int = 5, estimator: str = "reparam"):
        if k < 1:
            raise ValueError(f"IWAE needs k >= 1 samples, got {k}")
        if estimator not in self.ESTIMATORS:
            raise ValueError(f"IWAE estimator must be one of {', '.join(self.ESTIMATORS)}, got {estimator!r}")
        self.k, self.estimator = k, estimator

    def __call__(self, model: Any, batch: Any, *, beta: float, svi: SVI | None = None) -> LossTerms:
        if svi is not None:
            raise ValueError("semi-amortised steps (svi_steps) train with the ELBO objective, not IWAE")
        inference = model.infer(batch)
        q = inference.q
        if self.estimator == "dreg":
            terms, z = self._fixed_q_samples(model, batch, inference)
        else:
            terms, z = importance_samples(model, batch, self.k, inference=inference), None  # (K, B) x3
        log_ratio = terms.log_pz - terms.log_qz  # (K, B)
        log_w = terms.log_px_given_z + beta * log_ratio  # (K, B)
        annealed = torch.logsumexp(log_w, dim=0) - math.log(self.k)  # (B,)
        bound = torch.logsumexp(terms.log_px_given_z + log_ratio, dim=0) - math.log(self.k)  # (B,)
        if z is not None and z.requires_grad:  # DReG: the path gradient of sample i times (1 - beta) + beta w_i
            scale = ((1.0 - beta) + beta * torch.softmax(log_w.detach(), dim=0)).unsqueeze(-1)  # (K, B, 1)
            z.register_hook(lambda grad: grad * scale)
        reconstruction = -terms.log_px_given_z.mean()
        kl = sampled_kl(inference, terms)  # (B,) closed form, or over the k samples
        closed_form, kl = kl.closed_form, kl.value.mean()
        metrics = {"reconstruction": reconstruction, "kl": kl, "elbo": -(reconstruction + kl),
                   "iw_bound": bound.mean()}
        return LossTerms(-annealed.mean(), metrics, q.code, q, closed_form)

    def _fixed_q_samples(self, model: Any, batch: Any, inference: Any) -> tuple[ImportanceSamples, Tensor]:
        """The k samples with log q(z) at the posterior's parameters detached (its score term dropped), and z."""
        q = inference.q
        if not isinstance(q, DiagonalGaussian):
            raise ValueError(f"IWAE estimator 'dreg' needs a diagonal-Gaussian posterior (its density at fixed "
                             f"parameters), got {type(q).__name__}: use estimator 'reparam'")
        z = q.rsample(standard_noise(q.noise_like, self.k))  # (K, B, Z)
        log_q = q.with_params([p.detach() for p in q.params]).log_prob(z)  # (K, B)
        log_px = model.log_px_given_z(batch, z, condition=inference.condition)  # (K, B)
        return ImportanceSamples(log_px_given_z=log_px, log_pz=inference.p.log_prob(z), log_qz=log_q), z
