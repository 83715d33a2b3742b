"""What the benchmark rows rely on: a wider prior at generation (dailydialog-lite's --prior-scales) is a
decoding option, Decoding.prior_scale, that generate_responses passes to the model."""

import pytest
import torch
from test_dialogue_models import batch, build, data  # noqa: F401 (fixtures)

from textvae.decoding import Decoding
from textvae.dialogue import generate_responses


@pytest.mark.parametrize("name", ["vhred", "kgcvae"])
def test_prior_scale_widens_the_prior_that_z_is_drawn_from(name, data, batch, monkeypatch):  # noqa: F811
    model = build(name, data).eval()
    drawn = []
    response_condition = model.response_condition

    def recording(*args, **kwargs):
        condition = response_condition(*args, **kwargs)
        drawn.append(condition.z)
        return condition

    monkeypatch.setattr(model, "response_condition", recording)
    scale, n = 3.0, 2
    generate_responses(model, batch, num_samples=n, decoding=Decoding("greedy", max_len=4, prior_scale=scale),
                       generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        c = model.encode_context(batch)  # (B, C)
        prior = model.prior(c, c.shape[0])  # p(z | c)
        mu_p, logvar_p = prior.mu, prior.logvar  # (B, Z) x2
        eps = torch.randn((n, *mu_p.shape), generator=torch.Generator().manual_seed(2))  # (N, B, Z): the same noise
        z = (mu_p + scale * torch.exp(0.5 * logvar_p) * eps).flatten(0, 1)  # (N * B, Z), sample-major
    torch.testing.assert_close(drawn[0], z)
