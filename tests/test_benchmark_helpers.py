"""Helpers of the benchmark scripts that change what a row measures."""

import importlib.util
from pathlib import Path

import pytest
import torch
from test_dialogue_models import batch, build, data  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dailydialog_lite():
    spec = importlib.util.spec_from_file_location("dailydialog_lite", ROOT / "benchmarks" / "dailydialog_lite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["vhred", "kgcvae"])
def test_prior_scaled_widens_only_the_generation_prior(name, data, batch, dailydialog_lite):  # noqa: F811
    model = build(name, data).eval()

    def run():
        with torch.no_grad():
            torch.manual_seed(1)
            out = model(batch)
            rc = model.response_condition(batch, num_samples=2, generator=torch.Generator().manual_seed(2))
        return out, rc.z

    out, z = run()
    with dailydialog_lite.prior_scaled(model, 3.0):
        scaled_out, scaled_z = run()
    mu, _ = model.prior(model.encode_context(batch))
    mu = mu.detach().repeat(2, 1)  # sample-major rows
    assert torch.allclose(scaled_z - mu, 3 * (z - mu), atol=1e-5)  # the same noise, three times the spread
    assert torch.equal(scaled_out.kl, out.kl) and torch.equal(scaled_out.reconstruction, out.reconstruction)
    assert "prior" not in vars(model) and "response_condition" not in vars(model)  # restored
    assert torch.equal(run()[1], z)
