"""Prior components p(z | .): from the model's condition (B, C) (a dialogue context; nothing for a sentence
model, ``condition_dim=0``) to a distribution over z.

* :class:`StandardNormalPrior`: N(0, I) (Bowman et al. 2016), whatever the condition.
* :class:`ConditionalGaussianPrior`: a prior network N(mu(c), diag(exp(logvar(c)))) from a tanh MLP on
  the condition (VHRED, Serban et al. 2017; CVAE, Zhao et al. 2017).
* :class:`MixturePrior`: a mixture of C Gaussians with learned means, variances and (optionally) weights
  (Dilokthanakul et al. 2016; VaDE, Jiang et al. 2017): ``responsibilities`` give p(c | z) for clustering.
* :class:`ConditionalMixturePrior`: a prior network whose output is a mixture of K Gaussians given c, weights
  included (DialogWAE's Gaussian mixture prior, Gu et al. 2019, here in a CVAE's ELBO).
* :class:`JointPrior`: N(0, I) on the continuous dimensions times uniform categoricals on one-hot blocks
  (Jang et al. 2017; JointVAE, Dupont 2018), the prior of :class:`textvae.posteriors.GumbelSoftmaxPosterior`.

Against a Gaussian posterior the first two give a closed-form KL; the mixtures a Monte-Carlo one; the joint
prior against the Gumbel-softmax posterior a closed form per continuous dimension and per categorical block.

Notation: B batch, C condition, Z latent, K mixture components; Zc continuous dimensions, K_1..K_n the sizes
of categorical blocks (sum K their total).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from textvae.distributions import (
    DiagonalGaussian,
    GaussianCategorical,
    GaussianMixture,
    LatentDistribution,
    continuous_dim,
)


class Prior(nn.Module):
    """p(z | condition). Subclasses keep their own settings in ``init_args`` (the export)."""

    def __init__(self, condition_dim: int, latent_dim: int):
        super().__init__()
        if condition_dim < 0 or latent_dim < 1:
            raise ValueError(f"a prior needs condition_dim >= 0 and latent_dim >= 1, got {condition_dim}, {latent_dim}")
        self.condition_dim, self.latent_dim = condition_dim, latent_dim
        self.init_args: dict = {}
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # the device and dtype of z

    def forward(self, condition: Tensor | None, batch_size: int) -> LatentDistribution:
        raise NotImplementedError


class StandardNormalPrior(Prior):
    """p(z) = N(0, I)."""

    def forward(self, condition: Tensor | None, batch_size: int) -> DiagonalGaussian:
        zeros = self._anchor.new_zeros(batch_size, self.latent_dim)  # (B, Z)
        return DiagonalGaussian(zeros, zeros)


def tanh_network(who: str, instead: str, condition_dim: int, hidden_dim: int,
                 num_hidden: int) -> tuple[nn.Sequential, int]:
    """A prior network's body: ``num_hidden`` tanh layers of ``hidden_dim`` on the condition, and its output
    width. ValueError (naming ``who``, and the prior to use ``instead`` without a condition) on bad sizes."""
    if condition_dim < 1:
        raise ValueError(f"{who} needs a condition (a dialogue model's context); a sentence model has none: "
                         f"use {instead}")
    if num_hidden < 0 or (num_hidden > 0 and hidden_dim < 1):
        raise ValueError(f"need num_hidden >= 0 and hidden_dim >= 1 with hidden layers, got "
                         f"num_hidden={num_hidden}, hidden_dim={hidden_dim}")
    layers: list[nn.Module] = []
    for i in range(num_hidden):
        layers += [nn.Linear(condition_dim if i == 0 else hidden_dim, hidden_dim), nn.Tanh()]
    return nn.Sequential(*layers), hidden_dim if num_hidden else condition_dim


class ConditionalGaussianPrior(Prior):
    """p(z | c) = N(mu(c), diag(exp(logvar(c)))) from ``num_hidden`` tanh layers of ``hidden_dim`` on c."""

    def __init__(self, condition_dim: int, latent_dim: int, *, hidden_dim: int = 300, num_hidden: int = 1):
        super().__init__(condition_dim, latent_dim)
        self.init_args = {"hidden_dim": hidden_dim, "num_hidden": num_hidden}
        self.hidden, width = tanh_network("ConditionalGaussianPrior", "StandardNormalPrior or MixturePrior",
                                          condition_dim, hidden_dim, num_hidden)
        self.to_mu = nn.Linear(width, latent_dim)
        self.to_logvar = nn.Linear(width, latent_dim)

    def forward(self, condition: Tensor | None, batch_size: int) -> DiagonalGaussian:
        if condition is None:
            raise ValueError("ConditionalGaussianPrior needs the condition c (B, C)")
        h = self.hidden(condition)  # (B, H)
        return DiagonalGaussian(self.to_mu(h), self.to_logvar(h))  # (B, Z) x2


class MixturePrior(Prior):
    """p(z) = sum_k pi_k N(z; mu_k, diag(exp(logvar_k))), K = ``num_components``. Means start at N(0, I)
    draws, variances at ``init_std``^2; ``learn_weights=False`` keeps pi uniform (as VaDE's often is)."""

    def __init__(self, condition_dim: int, latent_dim: int, *, num_components: int = 10, learn_weights: bool = True,
                 init_std: float = 0.5):
        super().__init__(condition_dim, latent_dim)
        if num_components < 1 or init_std <= 0:
            raise ValueError(f"MixturePrior needs num_components >= 1 and init_std > 0, got {num_components}, {init_std}")
        self.init_args = {"num_components": num_components, "learn_weights": learn_weights, "init_std": init_std}
        self.mu = nn.Parameter(torch.randn(num_components, latent_dim))
        self.logvar = nn.Parameter(torch.full((num_components, latent_dim), 2 * float(torch.tensor(init_std).log())))
        self.logits = nn.Parameter(torch.zeros(num_components), requires_grad=learn_weights)

    def forward(self, condition: Tensor | None, batch_size: int) -> GaussianMixture:
        return GaussianMixture(self.logits, self.mu, self.logvar, batch_size)


class ConditionalMixturePrior(Prior):
    """p(z | c) = sum_k pi_k(c) N(z; mu_k(c), diag(exp(logvar_k(c)))), K = ``num_components``, every parameter
    from ``num_hidden`` tanh layers of ``hidden_dim`` on c: a multimodal prior network, so that responses to one
    context can come from distinct modes (DialogWAE, Gu et al. 2019). Its KL against a Gaussian posterior is a
    Monte-Carlo estimate; generation draws a component, then z from it (``scale`` widens each component)."""

    def __init__(self, condition_dim: int, latent_dim: int, *, num_components: int = 5, hidden_dim: int = 300,
                 num_hidden: int = 1):
        super().__init__(condition_dim, latent_dim)
        if num_components < 1:
            raise ValueError(f"ConditionalMixturePrior needs num_components >= 1, got {num_components}")
        self.init_args = {"num_components": num_components, "hidden_dim": hidden_dim, "num_hidden": num_hidden}
        self.num_components = num_components
        self.hidden, width = tanh_network("ConditionalMixturePrior", "MixturePrior", condition_dim, hidden_dim,
                                          num_hidden)
        self.to_logits = nn.Linear(width, num_components)
        self.to_mu = nn.Linear(width, num_components * latent_dim)
        self.to_logvar = nn.Linear(width, num_components * latent_dim)

    def forward(self, condition: Tensor | None, batch_size: int) -> GaussianMixture:
        if condition is None:
            raise ValueError("ConditionalMixturePrior needs the condition c (B, C)")
        h = self.hidden(condition)  # (B, H)
        shape = (h.shape[0], self.num_components, self.latent_dim)
        return GaussianMixture(self.to_logits(h), self.to_mu(h).view(shape), self.to_logvar(h).view(shape),
                               h.shape[0])  # (B, K), (B, K, Z) x2


class JointPrior(Prior):
    """p(z) = N(0, I) on the first Zc = latent_dim - sum(categories) dimensions times a uniform categorical on each
    one-hot block of sizes ``categories`` (Jang et al. 2017; Dupont 2018), whatever the condition: the prior of
    :class:`textvae.posteriors.GumbelSoftmaxPosterior`, with the same ``categories``. Its samples are one-hot."""

    def __init__(self, condition_dim: int, latent_dim: int, *, categories: Sequence[int] = (10,)):
        super().__init__(condition_dim, latent_dim)
        self.categories = tuple(int(k) for k in categories)
        self.continuous_dim = continuous_dim(latent_dim, self.categories, "JointPrior")
        self.init_args = {"categories": list(self.categories)}

    def forward(self, condition: Tensor | None, batch_size: int) -> GaussianCategorical:
        zeros = self._anchor.new_zeros(batch_size, self.continuous_dim)  # (B, Zc)
        uniform = self._anchor.new_zeros(batch_size, sum(self.categories))  # (B, sum K) equal logits
        return GaussianCategorical(zeros, zeros, uniform, self.categories)
