"""textvae.evaluation and textvae.latent on a tiny trained VAE and LM (exported, as the tools see them)."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from textvae.data.batching import collate_sentences
from textvae.data.datasets import SentenceDataset, load_records
from textvae.data.records import write_jsonl
from textvae.data.synthetic import generate_sentences
from textvae.data.tokenizers import WordTokenizer
from textvae.evaluation import EvalResult, evaluate, importance_samples, prior_sample_metrics
from textvae.export import load_export, save_export
from textvae.latent import encode_texts, homotopy, interpolate, project_2d
from textvae.metrics import active_units
from textvae.models import LanguageModel, SentenceVAE
from textvae.objectives import importance_weighted_nll


class Exports(NamedTuple):
    data: Path  # prepared JSONL, 200 synthetic sentences with label and attributes
    vae: Path  # SentenceVAE export (latent 4)
    lm: Path  # LanguageModel export


def _train(model: torch.nn.Module, examples, *, beta: float, steps: int = 100) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        batch = collate_sentences([examples[i] for i in torch.randint(len(examples), (32,), generator=generator)])
        out = model(batch)
        loss = out.reconstruction.mean() + (beta * out.kl.sum(-1).mean() if out.kl is not None else 0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def build_exports(directory: Path) -> Exports:
    """200 synthetic sentences, a word tokenizer, a tiny VAE trained 100 steps with beta 0.05 (so that its
    latent is used) and a tiny LM trained 50 steps; both exported."""
    sentences = generate_sentences(200, seed=0)
    write_jsonl(directory / "data.jsonl", sentences)
    tokenizer = WordTokenizer.train(s.text for s in sentences)
    dataset = SentenceDataset({"text": [s.text for s in sentences], "label": [None] * len(sentences),
                               "attributes": [None] * len(sentences)}, tokenizer)
    examples = [dataset[i] for i in range(len(dataset))]
    categories = {"labels": sorted({s.label for s in sentences})}
    torch.manual_seed(0)
    vae = SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=16, hidden_dim=32, latent_dim=4)
    _train(vae, examples, beta=0.05)
    save_export(directory / "vae", vae, tokenizer, categories=categories, info={"kind": "sentences"})
    torch.manual_seed(0)
    lm = LanguageModel(vocab_size=tokenizer.vocab_size, embed_dim=16, hidden_dim=32)
    _train(lm, examples, beta=0.0, steps=50)
    save_export(directory / "lm", lm, tokenizer, categories=categories, info={"kind": "sentences"})
    return Exports(data=directory / "data.jsonl", vae=directory / "vae", lm=directory / "lm")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from a second thread, and OpenMP threads spinning on cores that other
    processes keep busy made these tests 15x slower (42 s instead of 2.6 s to build the exports)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Exports:
    return build_exports(tmp_path_factory.mktemp("evaluation"))


@pytest.fixture(scope="module")
def vae(exports):
    return load_export(exports.vae)


@pytest.fixture(scope="module")
def dataset(exports, vae):
    records = load_records(exports.data, cache_dir=exports.data.parent / "cache")
    return SentenceDataset(records.select(range(64)), vae.tokenizer)


def test_iw_nll_is_no_looser_than_the_elbo(vae, dataset):
    result = evaluate(vae.model, dataset, samples=50, tokenizer=vae.tokenizer)
    assert result.iw_nll <= -result.elbo
    assert result.elbo == pytest.approx(-(result.reconstruction + result.kl))
    assert result.kl > 0.5  # beta 0.05: the fixture's latent is in use
    assert result.ppl == pytest.approx(math.exp(result.iw_nll * result.sentences / result.tokens))
    words = result.tokens - result.sentences
    assert result.ppl_words == pytest.approx(math.exp(result.iw_nll * result.sentences / words))
    assert result.tokens == dataset.num_targets and result.sentences == len(dataset)


def test_more_samples_tighten_the_bound(vae, dataset):
    few = evaluate(vae.model, dataset, samples=2, bleu=False, seed=1)
    many = evaluate(vae.model, dataset, samples=200, bleu=False, seed=1)
    assert many.iw_nll <= few.iw_nll


def test_same_seed_same_numbers_different_seed_close(vae, dataset):
    a = evaluate(vae.model, dataset, samples=20, bleu=False, seed=3)
    b = evaluate(vae.model, dataset, samples=20, bleu=False, seed=3)
    c = evaluate(vae.model, dataset, samples=20, bleu=False, seed=4)
    assert a.iw_nll == b.iw_nll and a.mi == b.mi
    assert a.iw_nll != c.iw_nll and c.iw_nll == pytest.approx(a.iw_nll, rel=0.02)


def test_batched_iw_nll_equals_a_per_sentence_loop(vae, dataset):
    model, k = vae.model, 30
    examples = [dataset[i] for i in range(8)]  # different lengths: the batch is padded
    assert len({len(e.ids) for e in examples}) > 1
    with torch.inference_mode():
        terms, _ = importance_samples(model, collate_sentences(examples), k, seed=0)
        batched = importance_weighted_nll(*terms)  # (8,)
        one_by_one = torch.cat([importance_weighted_nll(*importance_samples(model, collate_sentences([e]), k, seed=0)[0])
                                for e in examples])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-4)
    # and end to end: the batch size changes the speed, not the numbers
    small = evaluate(model, dataset, samples=k, batch_size=1, bleu=False)
    large = evaluate(model, dataset, samples=k, batch_size=64, bleu=False)
    assert small.iw_nll == pytest.approx(large.iw_nll, rel=1e-5)
    assert small.reconstruction == pytest.approx(large.reconstruction, rel=1e-5)
    assert small.mi == pytest.approx(large.mi, rel=1e-5)


def test_latent_usage_in_range(vae, dataset):
    result = evaluate(vae.model, dataset, samples=10, batch_size=16, tokenizer=vae.tokenizer)
    assert 1 <= result.active_units <= 4
    mu = encode_texts(vae.model, vae.tokenizer, dataset.texts).mu
    assert result.active_units == active_units(mu, threshold=0.01)[0]
    # the estimate is at most log(group size) and about at most the KL, up to sampling noise (which can also
    # take it a little below 0)
    assert result.mi_group == len(dataset)
    assert -0.5 < result.mi <= min(math.log(result.mi_group), result.kl) + 0.5
    assert 0.0 <= result.recon_bleu <= 100.0
    assert result.sentences_per_second > 0


def test_language_model_nll_is_exact(exports, dataset):
    lm = load_export(exports.lm).model
    result = evaluate(lm, dataset, samples=7)
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(len(dataset)):  # by hand, one sentence at a time
            total += float(lm(collate_sentences([dataset[i]])).reconstruction.sum())
            tokens += len(dataset[i].ids) + 1  # words and EOS
    assert result.samples is None and result.elbo is None and result.mi is None and result.active_units is None
    assert result.iw_nll == pytest.approx(total / len(dataset), rel=1e-5)
    assert result.ppl == pytest.approx(math.exp(total / tokens), rel=1e-5)
    assert "NLL (exact)" in result.table() and "n/a" in result.table()


def test_table_and_json(vae, dataset):
    result = evaluate(vae.model, dataset, samples=5, tokenizer=vae.tokenizer)
    result.prior = prior_sample_metrics(vae.model, vae.tokenizer, 12, generator=torch.Generator().manual_seed(0))
    lines = result.table().splitlines()
    assert any(line.startswith("IW-NLL (K=5)") for line in lines)
    assert any(line.startswith("MI") and f"aggregate posterior of {result.mi_group} sentences" in line
               for line in lines)  # MI depends on it
    rows = [re.match(r"^( {0,2}\S(?:\S| (?! ))*) {2,}(\S.*)$", line) for line in lines]
    assert all(rows) and len({row.start(2) for row in rows}) == 1  # the values form one aligned column
    data = json.loads(result.to_json())
    assert data["iw_nll"] == pytest.approx(result.iw_nll) and data["samples"] == 5
    assert data["prior"]["n"] == 12 and len(data["prior"]["samples"]) == 12
    assert set(data) >= {f for f in EvalResult.__dataclass_fields__}


def test_prior_sample_metrics(exports, vae):
    for model in (vae.model, load_export(exports.lm).model):
        metrics = prior_sample_metrics(model, vae.tokenizer, 20, batch_size=7,
                                       generator=torch.Generator().manual_seed(0))
        assert len(metrics.samples) == 20
        assert 0.0 < metrics.distinct_1 <= 1.0 and 0.0 < metrics.distinct_2 <= 1.0
        assert 0.0 <= metrics.self_bleu <= 100.0
    with pytest.raises(ValueError, match="n must be >= 2"):
        prior_sample_metrics(vae.model, vae.tokenizer, 1)


def test_argument_errors(vae, dataset):
    with pytest.raises(ValueError, match="samples"):
        evaluate(vae.model, dataset, samples=0)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(vae.model, dataset, batch_size=0)


def test_encode_texts_counts_unknown_words_and_keeps_order(vae):
    texts = ["the zzqx i blorp .", "i", "regrettably , they did not approve their treatment angrily ."]
    encoded = encode_texts(vae.model, vae.tokenizer, texts, batch_size=2)
    assert encoded.mu.shape == (3, 4) and encoded.unknown == 2 and encoded.tokens == 16
    alone = encode_texts(vae.model, vae.tokenizer, texts[2:])
    torch.testing.assert_close(encoded.mu[2], alone.mu[0])


def test_homotopy_and_interpolation(exports, vae):
    z0, z1 = torch.randn(4), torch.randn(4)
    for method in ("lerp", "slerp"):
        path = interpolate(z0, z1, 5, method)
        torch.testing.assert_close(path[0], z0)
        torch.testing.assert_close(path[-1], z1)
    result = homotopy(vae.model, vae.tokenizer, "the food was great .", None, steps=3,
                      generator=torch.Generator().manual_seed(0))
    assert [p.t for p in result.points] == [0.0, 1 / 4, 2 / 4, 3 / 4, 1.0]
    assert result.points[0].given == "the food was great ." and result.points[-1].given is None
    with pytest.raises(ValueError, match="latent"):
        homotopy(load_export(exports.lm).model, vae.tokenizer, "a", "b", steps=2)


def test_project_2d():
    mu = torch.randn(50, 4) * torch.tensor([3.0, 1.0, 0.1, 0.1])
    projection = project_2d(mu)
    assert projection.points.shape == (50, 2)
    torch.testing.assert_close(projection.points.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    assert projection.explained[0] > projection.explained[1] > 0 and sum(projection.explained) <= 1.0
    torch.testing.assert_close(project_2d(mu).points, projection.points)  # deterministic signs
    assert project_2d(torch.randn(10, 1)).points[:, 1].abs().max() == 0  # Z = 1: a zero second axis


def test_svi_refinement_raises_the_elbo_and_the_gaps_add_up(vae, dataset):
    plain = evaluate(vae.model, dataset, samples=20, bleu=False)
    refined = evaluate(vae.model, dataset, samples=20, bleu=False, svi_steps=10, svi_lr=0.5)
    assert plain.elbo_svi is None and refined.iw_nll == plain.iw_nll and refined.elbo == plain.elbo
    # the steps climb each posterior's ELBO for the fixed decoder: a positive amortisation gap
    assert refined.elbo_svi > refined.elbo
    assert refined.amortization_gap == pytest.approx(refined.elbo_svi - refined.elbo)
    # log p(x) is estimated by the better of the two importance-weighted bounds (amortised, refined proposal)
    log_px = -min(refined.iw_nll, refined.iw_nll_svi)
    assert refined.approximation_gap == pytest.approx(log_px - refined.elbo_svi)
    # the two gaps partition log p(x) - ELBO, as Cremer et al. (2018) define them
    assert refined.amortization_gap + refined.approximation_gap == pytest.approx(log_px - refined.elbo)
    # importance weighting with the refined posterior is at least as tight as its ELBO (up to sampling noise)
    assert refined.iw_nll_svi <= -refined.elbo_svi + 0.1
    lines = refined.table().splitlines()
    assert any(line.startswith("ELBO after SVI (10 steps, lr 0.5)") for line in lines)


def test_refined_posteriors_show_how_much_of_the_latent_the_decoder_uses(vae, dataset):
    refined = evaluate(vae.model, dataset, samples=20, tokenizer=vae.tokenizer, svi_steps=10, svi_lr=0.5)
    assert refined.kl_svi >= 0 and 0 <= refined.mi_svi <= math.log(len(dataset)) and 0 <= refined.recon_bleu_svi <= 100
    lines = refined.table().splitlines()
    assert any(line.startswith("  KL, MI of the refined posteriors") for line in lines)
    # steps too small to move anything: the refined posteriors' figures are the amortised ones
    still = evaluate(vae.model, dataset, samples=20, tokenizer=vae.tokenizer, svi_steps=1, svi_lr=1e-9)
    assert still.kl_svi == pytest.approx(still.kl, rel=1e-5) and still.mi_svi == pytest.approx(still.mi, abs=1e-5)
    assert still.recon_bleu_svi == still.recon_bleu
    # a decoder that ignores z: the ELBO's optimum for every sentence is the prior (KL 0, so MI 0), and the
    # steps take each posterior there however informative the encoder made it
    blind = copy.deepcopy(vae.model)
    with torch.no_grad():
        blind.decoder.latent_to_hidden.weight.zero_()
    result = evaluate(blind, dataset, samples=20, bleu=False, svi_steps=40, svi_lr=0.5)
    assert result.kl > 0.5 and result.mi > 0.1
    assert result.kl_svi < 0.05 * result.kl and result.mi_svi < 0.05
    assert result.recon_bleu_svi is None  # bleu=False


@pytest.mark.parametrize("family", ["iaf", "mixture"])
def test_non_gaussian_families_get_a_monte_carlo_kl_and_an_mi(family, vae, dataset):
    """A flow posterior or a mixture prior has no closed-form KL: the evaluation says so, and its KL is the
    mean of log q(z) - log p(z) over the same K samples the IW-NLL uses (so -ELBO >= IW-NLL still holds)."""
    from textvae.posteriors import IAFPosterior
    from textvae.priors import MixturePrior

    torch.manual_seed(0)
    options = {"posterior": IAFPosterior} if family == "iaf" else {"prior": MixturePrior}
    model = SentenceVAE(vocab_size=vae.tokenizer.vocab_size, embed_dim=16, hidden_dim=32, latent_dim=4,
                        **options)
    _train(model, [dataset[i] for i in range(len(dataset))], beta=0.05, steps=30)
    result = evaluate(model, dataset, samples=30, bleu=False)
    assert result.kl_estimate == "Monte Carlo, 30 samples"
    assert result.iw_nll <= -result.elbo + 1e-4
    assert math.isfinite(result.mi) and -0.5 < result.mi <= math.log(result.mi_group) + 0.5
    assert 0 <= result.active_units <= 4
    terms, inference = importance_samples(model, collate_sentences([dataset[i] for i in range(4)]), 30, seed=0)
    per_sentence = (terms.log_qz - terms.log_pz).mean(0)  # (4,) the MC KL of each sentence
    assert torch.isfinite(per_sentence).all()
