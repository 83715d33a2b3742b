"""VaDE's initialisation: EM for a diagonal Gaussian mixture (textvae.clustering), and the training option that
fits a MixturePrior to the codes after AE pretraining."""

import math

import pytest
import pytorch_lightning as pl
import torch

from textvae.clustering import fit_gaussian_mixture, kmeans_plus_plus
from textvae.data.batching import collate_sentences
from textvae.data.records import write_jsonl
from textvae.data.synthetic import generate_sentences
from textvae.lightning import TextDataModule, TextVAESystem
from textvae.models import SentenceVAE
from textvae.priors import MixturePrior


def three_clusters(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [0.0, 6.0]])
    stds = torch.tensor([[0.5, 1.0], [1.0, 0.3], [0.7, 0.7]])
    labels = torch.arange(3).repeat_interleave(n // 3)
    x = means[labels] + stds[labels] * torch.randn(n, 2, generator=g)
    return x, labels, means, stds


def test_em_recovers_separated_clusters():
    x, labels, means, stds = three_clusters()
    fit = fit_gaussian_mixture(x, 3, generator=torch.Generator().manual_seed(1))
    order = torch.cdist(means, fit.mu).argmin(1)  # the fitted component nearest each true mean
    assert sorted(order.tolist()) == [0, 1, 2]
    # the sample moments of each true cluster (what EM converges to when the clusters do not overlap)
    for c in range(3):
        points = x[labels == c]
        torch.testing.assert_close(fit.mu[order[c]], points.mean(0), atol=1e-3, rtol=0)
        torch.testing.assert_close(fit.logvar[order[c]].exp(), points.var(0, unbiased=False), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(fit.logits.exp(), torch.full((3,), 1 / 3), atol=1e-4, rtol=0)
    # EM never lowers the likelihood
    assert all(b >= a - 1e-9 for a, b in zip(fit.log_likelihood, fit.log_likelihood[1:], strict=False))


def test_em_log_likelihood_matches_torch_distributions():
    x, *_ = three_clusters(seed=2)
    fit = fit_gaussian_mixture(x, 3, iterations=200, tolerance=0.0, generator=torch.Generator().manual_seed(0))
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=fit.logits.double()),
        torch.distributions.Independent(torch.distributions.Normal(fit.mu.double(), (0.5 * fit.logvar.double()).exp()), 1))
    # the last recorded value is the likelihood before the last M step; after 200 iterations they agree
    assert math.isclose(float(mixture.log_prob(x.double()).mean()), fit.log_likelihood[-1], abs_tol=1e-4)


def test_restarts_keep_the_most_likely_fit():
    x, *_ = three_clusters(seed=5)
    generator = torch.Generator().manual_seed(3)
    singles = [fit_gaussian_mixture(x, 4, generator=generator) for _ in range(5)]  # the same five seedings
    best = fit_gaussian_mixture(x, 4, restarts=5, generator=torch.Generator().manual_seed(3))
    assert best.log_likelihood[-1] == max(fit.log_likelihood[-1] for fit in singles)


def test_kmeans_plus_plus_picks_distinct_points_and_checks_sizes():
    x, *_ = three_clusters()
    seeds = kmeans_plus_plus(x, 3, torch.Generator().manual_seed(0))
    assert len({tuple(s.tolist()) for s in seeds}) == 3
    with pytest.raises(ValueError, match="at least k points"):
        fit_gaussian_mixture(x[:2], 3)


def test_fit_mixture_after_pretraining(tmp_path):
    write_jsonl(tmp_path / "s.jsonl", generate_sentences(48, seed=4))
    data = TextDataModule(train=str(tmp_path / "s.jsonl"), batch_size=16, cache_dir=str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=data.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=2,
                        prior=lambda c, z: MixturePrior(c, z, num_components=3))
    with pytest.raises(ValueError, match="fit_mixture needs a model with a mixture prior"):
        TextVAESystem(SentenceVAE(vocab_size=data.vocab_size, latent_dim=2), ae_pretrain_epochs=1,
                      after_pretraining="fit_mixture")
    system = TextVAESystem(model, ae_pretrain_epochs=1, after_pretraining="fit_mixture")
    decoder_before = [p.detach().clone() for p in model.decoder.parameters()]
    seen = {}

    class Spy(pl.Callback):  # the prior as fitted, before the first step after pretraining changes it
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 0:
                seen["mu"] = module.model.prior.mu.detach().clone()
                seen["decoder"] = [p.detach().clone() for p in module.model.decoder.parameters()]
                module.model.eval()
                with torch.no_grad():
                    dataset = trainer.datamodule.dataset("train")
                    seen["codes"] = module.model.infer(collate_sentences([dataset[i] for i in range(len(dataset))])).q.code
                module.model.train()

    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, max_epochs=2,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Spy()])
    trainer.fit(system, datamodule=data)
    expected = fit_gaussian_mixture(seen["codes"], 3, restarts=10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen["mu"], expected.mu, atol=1e-4, rtol=1e-4)
    # the decoder was trained in pretraining and kept (not re-initialised)
    assert not all(torch.equal(a, b) for a, b in zip(decoder_before, seen["decoder"], strict=True))
