"""textvae.classifier and textvae-classifier: features, the fit's optimum, tuning, save/load, labelled text."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from textvae.classifier import (
    Classifier,
    labelled_texts,
    load_classifier,
    ngram_vocabulary,
    save_classifier,
    train_classifier,
    tune_classifier,
)
from textvae.data.datasets import load_records
from textvae.data.records import DataError
from tools import classifier as classifier_tool

pytestmark = pytest.mark.usefixtures("one_thread")

POSITIVE = ["the food is great .", "great service !", "i love this place .", "friendly staff , great food ."]
NEGATIVE = ["the food is cold .", "terrible service !", "i hate this place .", "rude staff , awful food ."]


def _objective(classifier: Classifier, x: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    """The module doc's objective, by autograd on a dense phi(x): independent of the written-out gradient."""
    logits = x.to_dense() @ classifier.weight + classifier.bias
    return torch.nn.functional.cross_entropy(logits, y) + l2 / 2 * classifier.weight.pow(2).sum()


def test_text_features_are_the_presence_of_known_ngrams():
    classifier = Classifier(["x"], ngrams=["?", "? </s>", "<s> is", "is", "is it", "it"])
    x = classifier.features(["Is it ? it", "zebra ?", "zebra"]).to_dense()
    # is it ? it -> is, it, ?, it (twice: still 1), <s> is, is it, it ?, ? it, it </s>
    assert x.tolist() == [[1, 0, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
    assert ngram_vocabulary(["a b", "a c", "a"], min_count=2) == ["<s> a", "a"]


def test_fit_reaches_the_optimum_of_the_penalised_objective():
    texts, labels = POSITIVE + NEGATIVE + ["the place ."], ["pos"] * 4 + ["neg"] * 4 + ["mixed"]
    l2 = 0.05
    classifier = train_classifier(texts, labels, l2=l2, min_count=1)
    assert classifier.labels == ["mixed", "neg", "pos"]
    x = classifier.features(texts)
    y = torch.tensor([classifier.labels.index(label) for label in labels])
    loss = _objective(classifier, x, y, l2)
    weight_grad, bias_grad = torch.autograd.grad(loss, [classifier.weight, classifier.bias])
    assert weight_grad.abs().max() < 1e-4 and bias_grad.abs().max() < 1e-4  # a stationary point: the optimum
    assert classifier.accuracy(["great food !", "awful service !"], ["pos", "neg"]) == 1.0


def test_without_features_the_fit_is_the_label_frequencies():
    """No n-gram kept: p(y | x) = softmax(b), and the optimum of the cross-entropy is the training frequencies."""
    classifier = train_classifier(["a", "b", "c", "d"], ["u", "u", "u", "v"], min_count=5)
    assert classifier.dim == 0
    torch.testing.assert_close(classifier.probabilities(["anything"]), torch.tensor([[0.75, 0.25]]), atol=1e-4,
                               rtol=0)
    assert classifier.classify(["x", "y"]).labels == ["u", "u"]


def test_dense_inputs_are_standardised_with_the_training_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g) * torch.tensor([100.0, 1.0, 0.01]) + 5.0
    labels = ["a" if v > 5.0 else "b" for v in x[:, 2].tolist()]  # the tiny third feature decides
    classifier = train_classifier(x, labels, l2=1e-3)
    torch.testing.assert_close(classifier.features(x).mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(classifier.features(x).std(0), torch.ones(3), atol=1e-4, rtol=0)
    assert classifier.accuracy(x, labels) > 0.97
    with pytest.raises(ValueError, match=r"vectors of shape \(B, 3\)"):
        classifier.features(["a text"])


def test_accuracy_against_requested_labels_and_unknown_labels():
    classifier = train_classifier(POSITIVE + NEGATIVE, ["pos"] * 4 + ["neg"] * 4, min_count=1, l2=1e-2)
    generated = ["great food .", "great staff !", "awful food ."]
    # generated for pos, pos, pos: the classifier assigns pos to 2 of 3
    assert classifier.accuracy(generated, ["pos", "pos", "pos"]) == pytest.approx(2 / 3)
    result = classifier.classify(generated)
    assert result.labels == ["pos", "pos", "neg"] and result.probabilities.shape == (3, 2)
    torch.testing.assert_close(result.probabilities.sum(-1), torch.ones(3))
    with pytest.raises(ValueError, match="does not know the label"):
        classifier.accuracy(generated, ["pos", "pos", "neutral"])


def test_tuning_keeps_the_best_validation_l2_and_matches_a_fit_from_scratch():
    texts, labels = POSITIVE * 2 + NEGATIVE, ["pos"] * 8 + ["neg"] * 4
    valid, valid_labels = ["great place .", "awful place ."], ["pos", "neg"]
    # 1e3 leaves W at ~0: the bias alone, pos for both (accuracy 0.5); 1e-2 tells them apart
    tuned = tune_classifier(texts, labels, valid, valid_labels, grid=(1e3, 1e-2), min_count=1)
    assert tuned.accuracies == {1e3: 0.5, 1e-2: 1.0} and tuned.l2 == 1e-2
    cold = train_classifier(texts, labels, l2=1e-2, min_count=1)
    torch.testing.assert_close(tuned.classifier.probabilities(valid), cold.probabilities(valid), atol=1e-4, rtol=0)
    tie = tune_classifier(texts, labels, texts, labels, grid=(1e-2, 1e-3), min_count=1)
    assert tie.accuracies == {1e-2: 1.0, 1e-3: 1.0} and tie.l2 == 1e-2  # a tie: the stronger penalty
    with pytest.raises(DataError, match="never occur in the training data"):
        tune_classifier(texts, labels, valid, ["pos", "meh"], min_count=1)


@pytest.mark.parametrize("dense", [False, True], ids=["texts", "vectors"])
def test_save_and_load_without_pickle(tmp_path, dense):
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(30, 4, generator=g) if dense else POSITIVE + NEGATIVE
    labels = [str(i % 3) for i in range(30)] if dense else ["pos"] * 4 + ["neg"] * 4
    classifier = train_classifier(inputs, labels, min_count=1)
    save_classifier(tmp_path / "c", classifier, {"note": "toy"})
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["classifier.json", "classifier.safetensors"]
    config = json.loads((tmp_path / "c" / "classifier.json").read_text(encoding="utf-8"))
    assert config["format"] == "textvae-classifier" and config["version"] == 1 and config["info"] == {"note": "toy"}
    loaded = load_classifier(tmp_path / "c")
    probe = torch.randn(5, 4, generator=g) if dense else ["great staff", "cold food", "unseen words"]
    assert loaded.labels == classifier.labels
    torch.testing.assert_close(loaded.probabilities(probe), classifier.probabilities(probe), atol=0, rtol=0)


def test_a_folder_of_the_first_act_tagger_loads_with_its_mean_features(tmp_path):
    """The layout the act tagger wrote before the shared classifier: act_tagger.json + act_tagger.safetensors,
    an EmbeddingBag(mode="mean") weight.weight (F, A) and a bias (A,)."""
    features = ["?", "is", "is it"]
    config = {"format": "textvae-act-tagger", "version": 1, "acts": ["inform", "question"], "features": features,
              "info": {"turns": 3}}
    (tmp_path / "act_tagger.json").write_text(json.dumps(config), encoding="utf-8")
    weight = torch.tensor([[0.0, 3.0], [1.0, 0.0], [0.0, 0.6]])
    bias = torch.tensor([0.5, -0.5])
    save_file({"weight.weight": weight, "bias": bias}, str(tmp_path / "act_tagger.safetensors"))
    tagger = load_classifier(tmp_path)
    # "is it ? is": known n-grams ?, is, is, is it -> mean of rows (? + 2 is + is it) / 4 = (0.5, 0.9)
    # "hello": none known -> the bias alone
    expected = torch.softmax(torch.tensor([[0.5 + 0.5, 0.9 - 0.5], [0.5, -0.5]]), -1)
    torch.testing.assert_close(tagger.probabilities(["is it ? is", "hello"]), expected)
    assert tagger.labels == ["inform", "question"] and tagger.weighting == "mean"


def test_load_errors_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="no classifier.json"):
        load_classifier(tmp_path)
    (tmp_path / "classifier.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="corrupt"):
        load_classifier(tmp_path)
    (tmp_path / "classifier.json").write_text(json.dumps({"format": "textvae-export"}), encoding="utf-8")
    with pytest.raises(DataError, match="not a textvae classifier"):
        load_classifier(tmp_path)
    save_classifier(tmp_path, train_classifier(POSITIVE + NEGATIVE, ["p"] * 4 + ["n"] * 4, min_count=1))
    config = json.loads((tmp_path / "classifier.json").read_text(encoding="utf-8"))
    (tmp_path / "classifier.json").write_text(json.dumps(config | {"version": 2}), encoding="utf-8")
    with pytest.raises(DataError, match="version 2, this textvae reads 1 to 1; upgrade"):
        load_classifier(tmp_path)
    (tmp_path / "classifier.json").write_text(json.dumps(config), encoding="utf-8")
    dim = len(config["ngrams"])
    save_file({"weight": torch.full((dim, 2), math.nan), "bias": torch.zeros(2)},
              str(tmp_path / "classifier.safetensors"))
    with pytest.raises(DataError, match="not finite"):
        load_classifier(tmp_path)
    (tmp_path / "classifier.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot load the classifier"):
        load_classifier(tmp_path)


def _write(path, lines: list[dict]):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_labelled_texts_count_what_has_no_label(tmp_path):
    sentences = _write(tmp_path / "s.jsonl", [
        {"text": "a", "label": 1, "attributes": {"topic": "x"}},
        {"text": "b", "attributes": {"mood": "y"}},
        {"text": "c", "label": "z"}])
    records = load_records(sentences, cache_dir=tmp_path / "cache")
    assert labelled_texts(records, "label", "sentences") == (["a", "c"], ["1", "z"], 1)
    assert labelled_texts(records, "attributes.topic", "sentences") == (["a"], ["x"], 2)
    with pytest.raises(DataError, match="a dialogue turn's"):
        labelled_texts(records, "act", "sentences")
    dialogues = [{"turns": [{"text": "hi", "act": "greet", "emotion": "joy"}, {"text": "yes", "act": None}]}]
    assert labelled_texts(dialogues, "act", "dialogues") == (["hi"], ["greet"], 1)
    assert labelled_texts(dialogues, "emotion", "dialogues") == (["hi"], ["joy"], 1)
    with pytest.raises(DataError, match="dialogue turns have 'act', 'emotion' or 'topic'"):
        labelled_texts(dialogues, "label", "dialogues")


# --------------------------------------------------------------------------------------------- the tool


def _corpus(tmp_path):
    train = [{"text": t, "label": "pos", "attributes": {"n": i % 2}} for i, t in enumerate(POSITIVE * 3)]
    train += [{"text": t, "label": "neg", "attributes": {"n": i % 2}} for i, t in enumerate(NEGATIVE * 3)]
    train += [{"text": "no label here ."}]
    test = [{"text": "great food .", "label": "pos"}, {"text": "awful staff .", "label": "neg"},
            {"text": "cold food .", "label": "neg"}, {"text": "unlabelled ."}]
    return _write(tmp_path / "train.jsonl", train), _write(tmp_path / "test.jsonl", test)


def test_cli_trains_reports_unlabelled_and_saves(tmp_path, capsys):
    train, test = _corpus(tmp_path)
    out = tmp_path / "clf"
    assert classifier_tool.main(["--data", str(train), "--valid", str(test), "--test", str(test), "--min-count", "1",
                                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "trained on 24 sentences" in printed and "2 labels under 'label' (neg, pos)" in printed
    assert f"left out 1 sentences of {train} without a label under 'label'" in printed
    assert f"left out 1 sentences of {test}" in printed
    assert "(always 'neg': 0.667)" in printed  # a tie in training, 12 and 12: the first name; 2 of 3 test are neg
    info = json.loads((out / "classifier.json").read_text(encoding="utf-8"))["info"]
    assert info["unlabelled"] == 1 and info["examples"] == 24 and info["test_chance"] == pytest.approx(2 / 3)
    assert info["test_accuracy"] == 1.0 and set(info["valid_accuracy_by_l2"]) == {"0.01", "0.003", "0.001", "0.0003",
                                                                                 "0.0001", "3e-05", "1e-05", "3e-06",
                                                                                 "1e-06"}
    assert load_classifier(out).classify(["great food .", "cold food ."]).labels == ["pos", "neg"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--label-key", "act"], "label key 'act' is a dialogue turn's"),
    (["--label-key", "topic"], "use 'label' or 'attributes.NAME'"),
    (["--label-key", "attributes.colour"], "no sentence has a label under 'attributes.colour'"),
    (["--l2", "1e-3", "--valid", "{test}"], "give --l2 or --valid"),
    (["--l2", "0"], "argument --l2: must be in (0, 1000]"),
    (["--test", "{unknown}"], "label(s) meh never occur in"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, extra, message):
    train, test = _corpus(tmp_path)
    unknown = _write(tmp_path / "unknown.jsonl", [{"text": "so so .", "label": "meh"}])
    extra = [arg.format(test=test, unknown=unknown) for arg in extra]
    with pytest.raises(SystemExit) as exit_info:
        classifier_tool.main(["--data", str(train), "--out", str(tmp_path / "c"), "--cache-dir",
                              str(tmp_path / "cache"), *extra])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "c").exists()


def test_cli_help_states_every_range(capsys):
    with pytest.raises(SystemExit) as exit_info:
        classifier_tool.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0 and help_text.startswith("usage: textvae-classifier")
    for stated in ("in (0, 1000]", "1 to 1,000,000,000", "1 to 10,000"):
        assert stated in help_text
