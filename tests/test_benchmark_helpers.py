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


def load_step_flops():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "step_flops.py"
    spec = importlib.util.spec_from_file_location("step_flops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_flops_counts_every_linear_map_by_hand():
    """vocab 10, embedding 2, hidden 3, z 1; 5 encoder tokens, 4 decoder positions, one sentence."""
    count = load_step_flops().rnn_vae_flops
    size = dict(encoder_tokens=5, decoder_tokens=4, sentences=1, vocab_size=10, embed_dim=2, hidden_dim=3, latent_dim=1)
    # LSTM: encoder gates 2*(2+3)*12 per token; mu and logvar 2*3*1 each; decoder gates 2*(2+1+3)*12 and the output
    # layer 2*3*10 per position; z to (h_0, c_0) 2*1*6
    encoder, heads, decoder, initial = 5 * 120, 2 * 6, 4 * (144 + 60), 12
    assert count(**size) == encoder + heads + decoder + initial == 1440
    assert count(**size, training=True) == 3 * 1440
    assert count(**size, samples=2) == encoder + heads + 2 * (decoder + initial)
    # GRU, z at the initial state only: gates 2*(2+3)*9 (encoder and decoder), z to h_0 2*1*3
    assert count(**size, cell="gru", z_to_every_input=False) == 5 * 90 + 12 + 4 * (90 + 60) + 6
