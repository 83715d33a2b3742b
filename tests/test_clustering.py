"""Clustering accuracy and NMI on hand-worked cases, and VaDE's clustering report of textvae-eval."""

from __future__ import annotations

import json
import math
from functools import partial

import pytest
import torch
from torch.distributions import Independent, Normal

from textvae.data.batching import SentenceExample, collate_sentences
from textvae.data.records import Sentence, write_jsonl
from textvae.data.synthetic import generate_sentences
from textvae.data.tokenizers import WordTokenizer
from textvae.evaluation import cluster_assignments, clustering_metrics
from textvae.export import save_export
from textvae.metrics import clustering_accuracy, normalized_mutual_information
from textvae.models import SentenceVAE
from textvae.priors import MixturePrior
from tools import eval as eval_tool

pytestmark = pytest.mark.usefixtures("one_thread")


def _entropy(*probabilities: float) -> float:
    return -sum(p * math.log(p) for p in probabilities)


def test_a_permutation_of_the_labels_is_a_perfect_clustering():
    predicted, gold = [2, 2, 0, 0, 1, 1], ["a", "a", "b", "b", "c", "c"]
    assert clustering_accuracy(predicted, gold) == 1.0
    assert normalized_mutual_information(predicted, gold) == pytest.approx(1.0)


def test_a_two_by_three_contingency_table_by_hand():
    """Cluster 0 holds 3 a and 1 b; cluster 1 holds 2 b and 2 c (N = 8)."""
    predicted = [0, 0, 0, 0, 1, 1, 1, 1]
    gold = ["a", "a", "a", "b", "b", "b", "c", "c"]
    # best one-to-one map: 0 -> a (3 right), 1 -> b or c (2 right); class c or b gets no cluster
    assert clustering_accuracy(predicted, gold) == pytest.approx(5 / 8)
    # p(k) = (1/2, 1/2), p(y) = (3/8, 3/8, 1/4); I = sum p(k, y) log(p(k, y) / (p(k) p(y)))
    mi = (3 / 8 * math.log((3 / 8) / (1 / 2 * 3 / 8)) + 1 / 8 * math.log((1 / 8) / (1 / 2 * 3 / 8))
          + 2 / 8 * math.log((2 / 8) / (1 / 2 * 3 / 8)) + 2 / 8 * math.log((2 / 8) / (1 / 2 * 2 / 8)))
    expected = mi / ((_entropy(1 / 2, 1 / 2) + _entropy(3 / 8, 3 / 8, 1 / 4)) / 2)
    assert normalized_mutual_information(predicted, gold) == pytest.approx(expected, rel=1e-12)
    # = (5/8 log 2 + 1/8 log 2/3 + 1/4 log 4/3) / ((log 2 + 1.0822) / 2) = 0.4545 / 0.8877
    assert expected == pytest.approx(0.5120, abs=1e-4)


def test_more_clusters_than_classes_fewer_and_independence():
    # four clusters, two classes: two clusters map to a class, the other two count as wrong
    assert clustering_accuracy([0, 1, 2, 3], ["a", "a", "b", "b"]) == 0.5
    # the class is a function of the cluster: I = H(Y) = log 2, NMI = log 2 / ((log 4 + log 2) / 2) = 2/3
    assert normalized_mutual_information([0, 1, 2, 3], ["a", "a", "b", "b"]) == pytest.approx(2 / 3)
    # one cluster for three classes: one class right; no information
    assert clustering_accuracy([7, 7, 7], ["a", "b", "c"]) == pytest.approx(1 / 3)
    assert normalized_mutual_information([7, 7, 7], ["a", "b", "c"]) == 0.0
    # clusters independent of the classes
    assert clustering_accuracy([0, 0, 1, 1], ["a", "b", "a", "b"]) == 0.5
    assert normalized_mutual_information([0, 0, 1, 1], ["a", "b", "a", "b"]) == pytest.approx(0.0, abs=1e-15)
    # one cluster, one class: identical partitions (scikit-learn's convention)
    assert normalized_mutual_information([1, 1], ["x", "x"]) == 1.0 and clustering_accuracy([1, 1], ["x", "x"]) == 1.0
    with pytest.raises(ValueError, match="2 cluster assignments but 3 gold labels"):
        clustering_accuracy([0, 1], ["a", "b", "c"])
    with pytest.raises(ValueError, match="at least one example"):
        normalized_mutual_information([], [])


# ------------------------------------------------------------------------------ VaDE's protocol, end to end

K = 3


def _mixture_vae(texts: list[str]) -> tuple[SentenceVAE, WordTokenizer]:
    """An untrained SentenceVAE with a 3-component mixture prior whose means sit at the codes of three of the
    texts, so that the sentences spread over the components."""
    tokenizer = WordTokenizer.train(texts)
    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=2,
                        prior=partial(MixturePrior, num_components=K)).eval()
    codes = _codes_one_by_one(model, tokenizer, texts[:K])
    with torch.no_grad():
        model.prior.mu.copy_(codes)
        model.prior.logvar.fill_(math.log(codes.var(0).mean().item()))
    return model, tokenizer


def _codes_one_by_one(model: SentenceVAE, tokenizer: WordTokenizer, texts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        batches = [collate_sentences([SentenceExample(tokenizer.encode(t), None, 0)]) for t in texts]
        return torch.cat([model.encode(b.tokens, b.lengths)[0] for b in batches])  # (N, Z)


def _responsibility_argmax(model: SentenceVAE, tokenizer: WordTokenizer, texts: list[str]) -> list[int]:
    """argmax_c pi_c N(z; mu_c, var_c) by torch.distributions, each text encoded alone."""
    prior = model.prior
    z = _codes_one_by_one(model, tokenizer, texts)
    components = Independent(Normal(prior.mu.detach(), torch.exp(0.5 * prior.logvar.detach())), 1)
    joint = torch.log_softmax(prior.logits.detach(), -1) + components.log_prob(z.unsqueeze(1))  # (N, K)
    return joint.argmax(-1).tolist()


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clustering")
    sentences = generate_sentences(40, seed=0)
    sentences += [Sentence("a sentence without attributes .")]  # no label under attributes.topic
    write_jsonl(directory / "data.jsonl", sentences)
    texts = [s.text for s in sentences]
    model, tokenizer = _mixture_vae(texts)
    save_export(directory / "vade", model, tokenizer, info={"kind": "sentences"})
    torch.manual_seed(0)
    plain = SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=2)
    save_export(directory / "vae", plain, tokenizer, info={"kind": "sentences"})
    labels = [s.attributes.get("topic") for s in sentences]
    return directory, model, tokenizer, texts, labels


def test_clusters_are_the_most_responsible_components_at_the_posterior_codes(clustered):
    _, model, tokenizer, texts, labels = clustered
    expected = _responsibility_argmax(model, tokenizer, texts)
    assert len(set(expected)) > 1  # the case is not trivial: several components hold sentences
    assert cluster_assignments(model, tokenizer, texts, batch_size=7).tolist() == expected
    metrics = clustering_metrics(model, tokenizer, texts, labels, label_key="attributes.topic")
    kept = [i for i, label in enumerate(labels) if label is not None]
    assert metrics.sentences == 40 and metrics.unlabelled == 1 and metrics.components == K
    assert metrics.accuracy == clustering_accuracy([expected[i] for i in kept], [labels[i] for i in kept])
    assert metrics.used == len({expected[i] for i in kept})


def test_eval_reports_clustering_and_refuses_a_model_without_a_mixture(clustered, tmp_path, capsys):
    directory, model, tokenizer, texts, labels = clustered
    common = ["--data", str(directory / "data.jsonl"), "--samples", "2", "--prior-samples", "0", "--no-bleu",
              "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    assert eval_tool.main(["--model", str(directory / "vade"), *common, "--label-key", "attributes.topic",
                           "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "clustering (attributes.topic)" in printed and "1 without a label left out" in printed
    reported = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["clustering"]
    expected = _responsibility_argmax(model, tokenizer, texts)
    kept = [i for i, label in enumerate(labels) if label is not None]
    assert reported["accuracy"] == pytest.approx(
        clustering_accuracy([expected[i] for i in kept], [labels[i] for i in kept]))
    assert reported["nmi"] == pytest.approx(
        normalized_mutual_information([expected[i] for i in kept], [labels[i] for i in kept]))
    for model_dir, key, message in [
        ("vae", "label", "--label-key: clustering needs a sentence model whose prior is a mixture"),
        ("vade", "attributes.colour", "no sentence of"),
        ("vade", "colour", "--label-key must be 'label' or 'attributes.NAME', got 'colour'"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            eval_tool.main(["--model", str(directory / model_dir), *common, "--label-key", key])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
