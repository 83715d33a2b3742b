"""The sentence CVAE on labels (Sohn et al. 2015) and the semi-supervised M2 model (Kingma et al. 2014):
SentenceVAE with ``num_labels``, against hand computations of their bounds."""

import json
import math
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from textvae.classifier import train_classifier
from textvae.data.batching import SentenceExample, collate_sentences
from textvae.data.records import DataError, write_jsonl
from textvae.data.synthetic import generate_sentences
from textvae.data.tokenizers import PAD_ID, train_tokenizer
from textvae.decoding import Decoding, greedy
from textvae.export import save_export
from textvae.inference import importance_samples
from textvae.latent import decode_texts, encode_texts
from textvae.lightning import TextDataModule, TextVAESystem
from textvae.models import SentenceVAE
from textvae.priors import ConditionalGaussianPrior

VOCAB = 12


def tiny(seed=0, **kwargs) -> SentenceVAE:
    torch.manual_seed(seed)
    args = dict(vocab_size=VOCAB, embed_dim=8, hidden_dim=16, latent_dim=3, num_labels=2, label_dim=4,
                classifier_weight=0.5, mlp_dim=8)
    return SentenceVAE(**(args | kwargs))


def batch_of(sentences, labels):
    return collate_sentences([SentenceExample(s, y, i) for i, (s, y) in enumerate(zip(sentences, labels, strict=True))])


def nearly_deterministic(model: SentenceVAE) -> None:
    """q(z | x, y) with variance e^-40: a sample is the mean, so one draw is the expectation."""
    with torch.no_grad():
        model.posterior.to_logvar.weight.zero_()
        model.posterior.to_logvar.bias.fill_(-40.0)


def hand_nll(model, batch, row, z, label):
    """-log p(x | z, y) of one sentence from the decoder's logits and a hand cross entropy."""
    code = torch.cat([z, model.label_embedding.weight[label]]).unsqueeze(0)
    logits = model.decoder(batch.inputs[row:row + 1], code)[0]  # (T, V)
    targets = batch.targets[row]
    mask = targets != PAD_ID
    return -logits.log_softmax(-1)[mask].gather(1, targets[mask].unsqueeze(1)).sum()


@pytest.mark.parametrize("prior", ["standard", "conditional"])
def test_m2_bound_on_two_class_toy_equals_hand_computation(prior):
    kwargs = {"prior": ConditionalGaussianPrior} if prior == "conditional" else {}
    model = tiny(**kwargs).eval()
    nearly_deterministic(model)
    batch = batch_of([[4, 5, 6], [7, 8], [9, 10, 11, 4]], [1, None, 0])
    out = model(batch)

    features = model.encoder(batch.tokens, batch.lengths)
    q_y = F.softmax(model.classifier(features), -1)  # (B, 2)
    expected_bound, expected_aux = [], []
    for row, label in enumerate([1, None, 0]):
        def terms(y, row=row):
            e = model.label_embedding.weight[y]
            h = torch.cat([features[row], e])
            mu = model.posterior.to_mu(h)
            q = Normal(mu, math.exp(-20.0))
            if prior == "conditional":
                p_net = model.prior
                hidden = p_net.hidden(e)
                p = Normal(p_net.to_mu(hidden), (0.5 * p_net.to_logvar(hidden)).exp())
            else:
                p = Normal(torch.zeros(3), torch.ones(3))
            return hand_nll(model, batch, row, mu, y) + kl_divergence(q, p).sum()

        if label is not None:
            expected_bound.append(terms(label))
            expected_aux.append(-0.5 * torch.log(q_y[row, label]))
        else:  # sum_y q(y|x) (bound at y) + KL(q(y|x) || uniform)
            label_kl = (q_y[row] * torch.log(q_y[row] * 2)).sum()
            expected_bound.append(sum(q_y[row, y] * terms(y) for y in range(2)) + label_kl)
            expected_aux.append(torch.tensor(0.0))
    bound = out.reconstruction + out.kl.sum(-1)
    torch.testing.assert_close(bound, torch.stack(expected_bound), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.aux_loss, torch.stack(expected_aux), rtol=1e-5, atol=1e-5)
    assert out.kl[0, -1] == 0 and out.kl[2, -1] == 0 and out.kl[1, -1] >= 0  # the label KL: unlabelled rows only
    # the code of a labelled sentence is q(z | x, y)'s mean at its label; of an unlabelled one, at the first label
    for row, label in enumerate([1, 0, 0]):
        h = torch.cat([features[row], model.label_embedding.weight[label]])
        torch.testing.assert_close(out.mu[row], model.posterior.to_mu(h), rtol=1e-5, atol=1e-5)


def test_unlabelled_batch_and_missing_labels_marginalise():
    model = tiny().eval()
    nearly_deterministic(model)
    sentences = [[4, 5, 6], [7, 8]]
    none = model(collate_sentences([SentenceExample(s, None, i) for i, s in enumerate(sentences)]))  # labels None
    minus_one = model(batch_of(sentences, [None, None]))
    torch.testing.assert_close(none.reconstruction, minus_one.reconstruction)
    assert (none.kl[:, -1] > 0).all()


def test_importance_sampling_conditions_on_the_label():
    """log p(x | z, y) from log_px_given_z at the gold label equals the hand decoder NLL at that label."""
    model = tiny().eval()
    batch = batch_of([[4, 5, 6], [7, 8]], [0, 1])
    with torch.no_grad():
        inference = model.infer(batch)
        torch.testing.assert_close(inference.condition, model.label_embedding.weight[torch.tensor([0, 1])])
        z = inference.q.mu.unsqueeze(0)  # (1, B, Z)
        log_px = model.log_px_given_z(batch, z, condition=inference.condition)
        for row, label in enumerate([0, 1]):
            torch.testing.assert_close(-log_px[0, row], hand_nll(model, batch, row, z[0, row], label),
                                       rtol=1e-5, atol=1e-5)
        assert torch.isfinite(importance_samples(model, batch, 4).log_px_given_z).all()


def test_label_count_and_weights_are_checked():
    with pytest.raises(ValueError, match="classifier_weight needs num_labels >= 2"):
        SentenceVAE(vocab_size=VOCAB, latent_dim=2, classifier_weight=1.0)
    with pytest.raises(ValueError, match="bow_weight"):
        SentenceVAE(vocab_size=VOCAB, latent_dim=2, bow_weight=-1.0)
    model = tiny()
    with pytest.raises(ValueError, match="generates for a label"):
        model.decoder_start(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="generates for a label"):
        model.decoder_code(torch.zeros(2, 3))


def test_bag_of_words_loss_by_hand():
    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=VOCAB, embed_dim=8, hidden_dim=16, latent_dim=3, bow_weight=2.0, mlp_dim=8).eval()
    nearly_deterministic(model)
    batch = batch_of([[4, 5, 5], [7]], [None, None])
    out = model(batch)
    mu = model.posterior(model.encoder(batch.tokens, batch.lengths)).mu
    log_probs = model.bow_network(mu).log_softmax(-1)  # (B, V)
    for row in range(2):
        targets = batch.targets[row][batch.targets[row] != PAD_ID]  # words and EOS
        torch.testing.assert_close(out.aux_loss[row], -2.0 * log_probs[row, targets].sum(), rtol=1e-5, atol=1e-5)


def test_forced_label_changes_what_is_generated():
    """A CVAE trained on a toy corpus where the label decides the words: decoding one z with each label
    gives sentences of that label (the verdict of a rule that reads the words)."""
    a = [[4, 4, 5], [4, 5, 4], [5, 4, 4], [4, 4, 4, 5]]
    b = [[8, 9, 9], [9, 8, 9], [9, 9, 8], [8, 9, 9, 9]]
    batch = batch_of(a + b, [0] * 4 + [1] * 4)
    model = tiny(seed=1, classifier_weight=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(150):
        out = model(batch)
        loss = (out.reconstruction + out.kl.sum(-1) + out.aux_loss).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    z = model.sample_prior(6, generator=torch.Generator().manual_seed(0), labels=torch.zeros(6, dtype=torch.long))

    # the judge: textvae's text classifier trained on the toy corpus' gold labels (ids written as words)
    def text(ids):
        return " ".join(f"w{i}" for i in ids)

    judge = train_classifier([text(s) for s in a + b], ["0"] * 4 + ["1"] * 4, min_count=1)
    for label in (0, 1):
        decoded = greedy(model, model.decoder_code(z, torch.full((6,), label)), max_len=8)
        assert judge.classify([text(ids) for ids in decoded]).labels == [str(label)] * 6
    # and the classifier q(y | x) learned the labels
    assert model.classify(batch.tokens, batch.lengths).argmax(-1).tolist() == [0] * 4 + [1] * 4


# ---------------------------------------------------------------------------------------------------
# Data: labels under any key, an unlabelled file, repeats; training and the tools on a labelled model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled")
    sentences = generate_sentences(40, seed=3)
    write_jsonl(folder / "labelled.jsonl", sentences[:8])
    write_jsonl(folder / "all.jsonl", sentences)
    return folder, sentences


def test_label_key_unlabelled_file_and_repeats(corpus):
    folder, sentences = corpus
    data = TextDataModule(train=str(folder / "labelled.jsonl"), valid=str(folder / "all.jsonl"),
                          unlabelled=str(folder / "all.jsonl"), label_key="attributes.sentiment", train_repeats=3,
                          batch_size=8, cache_dir=str(folder / "cache"))
    assert data.labels.names == sorted({s.attributes["sentiment"] for s in sentences})
    train = data.dataset("train")
    assert len(train) == 3 * 8 + 40
    expected = [data.labels.index[s.attributes["sentiment"]] for s in sentences[:8]] * 3 + [None] * 40
    assert train.label_ids == expected
    assert train.texts[-40:] == [s.text for s in sentences]  # the unlabelled file, after the labelled repeats
    valid = data.dataset("valid")
    assert valid.label_ids == [data.labels.index[s.attributes["sentiment"]] for s in sentences]
    with pytest.raises(DataError, match="use 'label' or 'attributes.NAME'"):
        TextDataModule(train=str(folder / "labelled.jsonl"), label_key="sentiment", cache_dir=str(folder / "cache"))


def test_training_a_labelled_model_checks_the_label_count(corpus, tmp_path):
    folder, _ = corpus
    data = TextDataModule(train=str(folder / "labelled.jsonl"), valid=str(folder / "all.jsonl"),
                          unlabelled=str(folder / "all.jsonl"), label_key="attributes.topic",
                          batch_size=8, cache_dir=str(folder / "cache"))
    torch.manual_seed(0)
    wrong = SentenceVAE(vocab_size=data.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=3, num_labels=3,
                        classifier_weight=1.0)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, max_epochs=1,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         limit_val_batches=1)
    with pytest.raises(DataError, match=f"conditioned on 3 labels but the data has {data.num_labels}"):
        trainer.fit(TextVAESystem(wrong), datamodule=data)
    model = SentenceVAE(vocab_size=data.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=3,
                        num_labels=data.num_labels, classifier_weight=1.0)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, max_epochs=1,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         limit_val_batches=1)
    trainer.fit(TextVAESystem(model), datamodule=data)
    assert 0.0 <= float(trainer.callback_metrics["val/label_accuracy"]) <= 1.0
    assert torch.isfinite(trainer.callback_metrics["train/loss_epoch"])


def run_tool(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300)


def test_sample_tool_generates_for_a_label_and_transfers(corpus, tmp_path):
    folder, sentences = corpus
    tokenizer = train_tokenizer([s.text for s in sentences], kind="word")
    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=3, num_labels=2,
                        classifier_weight=1.0, prior=ConditionalGaussianPrior)
    save_export(tmp_path / "export", model, tokenizer, kind="sentences", labels=["negative", "positive"])
    out = run_tool("tools.sample", "--model", str(tmp_path / "export"), "-n", "3", "--label", "positive",
                   "--max-len", "6")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 3
    out = run_tool("tools.sample", "--model", str(tmp_path / "export"), "-n", "2", "--label", "neutral")
    assert out.returncode == 2 and out.stderr.strip().endswith("is not one of the model's labels (negative, positive)")
    assert "Traceback" not in out.stderr
    sentence_file = tmp_path / "in.txt"
    sentence_file.write_text("\n".join(s.text for s in sentences[:3]) + "\n")
    out = run_tool("tools.sample", "--model", str(tmp_path / "export"), "--reconstruct", str(sentence_file),
                   "--label", "negative", "--max-len", "6")
    assert out.returncode == 0, out.stderr
    assert [line.split("\t")[0] for line in out.stdout.splitlines()] == [s.text for s in sentences[:3]]
    # the transfer decodes each sentence's own z (at its classifier label) with the label asked for
    model.eval()
    encoded = encode_texts(model, tokenizer, [s.text for s in sentences[:3]])
    expected = decode_texts(model, tokenizer, encoded.mu, Decoding("greedy", max_len=6, allow_unk=True),
                            labels=torch.zeros(3, dtype=torch.long))
    assert [line.split("\t")[1] for line in out.stdout.splitlines()] == expected
    # an unlabelled model refuses --label in one line
    plain = SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=3)
    save_export(tmp_path / "plain", plain, tokenizer, kind="sentences")
    out = run_tool("tools.sample", "--model", str(tmp_path / "plain"), "-n", "2", "--label", "x")
    assert out.returncode == 2 and "needs a model conditioned on labels" in out.stderr
    assert json.loads((tmp_path / "export" / "config.json").read_text())["categories"]["labels"] == ["negative", "positive"]


def test_evaluation_of_a_labelled_model(corpus):
    """textvae.evaluation on a labelled model: the bound is on log p(x | y) at the gold labels, and the
    greedy reconstruction decodes [code; e(y)]."""
    from textvae.evaluation import evaluate, prior_sample_metrics

    folder, sentences = corpus
    data = TextDataModule(train=str(folder / "all.jsonl"), label_key="attributes.sentiment", batch_size=8,
                          cache_dir=str(folder / "cache"))
    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=data.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=3, num_labels=2,
                        classifier_weight=1.0, prior=ConditionalGaussianPrior)
    dataset = data.dataset("train")
    result = evaluate(model, dataset, samples=3, tokenizer=data.tokenizer, batch_size=64)
    assert math.isfinite(result.iw_nll) and result.recon_bleu is not None
    metrics = prior_sample_metrics(model, data.tokenizer, 4, generator=torch.Generator().manual_seed(0))
    assert len(metrics.samples) == 4


def test_bag_of_words_skips_the_most_frequent_ids():
    """bow_skip=3 asks z for neither the specials (EOS included) nor ids 4, 5, 6 (a word tokenizer's three most
    frequent words)."""
    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=VOCAB, embed_dim=8, hidden_dim=16, latent_dim=3, bow_weight=1.0, bow_skip=3,
                        mlp_dim=8).eval()
    nearly_deterministic(model)
    batch = batch_of([[4, 9, 6, 9, 11]], [None])
    out = model(batch)
    mu = model.posterior(model.encoder(batch.tokens, batch.lengths)).mu
    log_probs = model.bow_network(mu).log_softmax(-1)[0]
    torch.testing.assert_close(out.aux_loss[0], -(2 * log_probs[9] + log_probs[11]), rtol=1e-5, atol=1e-5)
