"""textvae.act_tagger, textvae-act-tagger, and the act scores of textvae-eval that use a tagger."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from textvae.act_tagger import (
    ActTagger,
    load_act_tagger,
    ngrams,
    save_act_tagger,
    tagged_turns,
    train_act_tagger,
)
from textvae.classifier import save_classifier, train_classifier
from textvae.data.datasets import DialogueDataset, Vocab, load_records
from textvae.data.records import DataError
from textvae.decoding import Decoding
from textvae.dialogue_eval import _TagTotals, evaluate_dialogues
from textvae.export import load_export
from tools import act_tagger as act_tagger_tool
from tools import eval as eval_tool

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = ["where is the bank ?", "what time is it ?", "can you help me ?", "is it far ?", "who is he ?"]
STATEMENTS = ["the bank is closed .", "it is late .", "i can help you .", "it is not far .", "he is my friend ."]


def _toy_tagger() -> ActTagger:
    texts = QUESTIONS * 4 + STATEMENTS * 4
    return train_act_tagger(texts, ["question"] * 20 + ["inform"] * 20, min_count=1)


def test_ngrams_have_sentence_boundaries():
    assert ngrams("Is it ?") == ["is", "it", "?", "<s> is", "is it", "it ?", "? </s>"]


def test_tagger_learns_acts_and_falls_back_to_its_bias():
    tagger = _toy_tagger()
    assert tagger.acts == ["inform", "question"]
    held_out = ["why is the bank closed ?", "the help is late ."]
    assert [tagger.acts[t] for t in tagger.tag(held_out)] == ["question", "inform"]
    assert tagger.accuracy(held_out, ["question", "inform"]) == 1.0
    x = tagger.features(["zebra xylophone", "is it ?"])
    assert x.to_dense().sum(1).tolist() == [0.0, 7.0]  # is, it, ?, <s> is, is it, it ?, ? </s>
    logits = tagger(x)
    assert torch.equal(logits[0], tagger.bias.detach())  # no known n-gram: the bias alone


def test_tagger_round_trips_without_pickle(tmp_path):
    tagger = _toy_tagger()
    save_act_tagger(tmp_path / "tagger", tagger, {"note": "toy"})
    assert sorted(p.name for p in (tmp_path / "tagger").iterdir()) == ["classifier.json", "classifier.safetensors"]
    loaded = load_act_tagger(tmp_path / "tagger")
    texts = QUESTIONS + STATEMENTS + ["who is late ?"]
    assert loaded.tag(texts) == tagger.tag(texts) and loaded.acts == tagger.acts


def test_tagger_load_errors_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="no classifier.json.*save one with textvae-act-tagger"):
        load_act_tagger(tmp_path)
    (tmp_path / "act_tagger.json").write_text("{not json", encoding="utf-8")  # the first tagger's name
    with pytest.raises(DataError, match="act_tagger.json: corrupt"):
        load_act_tagger(tmp_path)
    (tmp_path / "act_tagger.json").write_text(json.dumps({"format": "textvae-export"}), encoding="utf-8")
    with pytest.raises(DataError, match="not a textvae classifier"):
        load_act_tagger(tmp_path)
    save_act_tagger(tmp_path, _toy_tagger())
    (tmp_path / "classifier.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot load the classifier"):
        load_act_tagger(tmp_path)
    save_classifier(tmp_path, train_classifier(torch.randn(4, 2), ["a", "b", "a", "b"]))
    with pytest.raises(DataError, match="a classifier of vectors, not of text"):
        load_act_tagger(tmp_path)


def test_a_tagger_saved_before_the_shared_classifier_still_loads_and_tags(tmp_path):
    """The first tagger's folder, as its save_act_tagger wrote it: act_tagger.json (format textvae-act-tagger,
    version 1, acts, features, info) + act_tagger.safetensors (EmbeddingBag(mode="mean") weight.weight, bias)."""
    features = ["?", "? </s>", "is", "the"]  # sorted, as it sorted them
    config = {"format": "textvae-act-tagger", "version": 1, "acts": ["inform", "question"], "features": features,
              "info": {"turns": 40, "epochs": 10}}
    (tmp_path / "act_tagger.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    weight = torch.tensor([[0.0, 2.0], [0.0, 2.0], [0.0, 1.0], [1.0, 0.0]])  # (F, A)
    save_file({"weight.weight": weight, "bias": torch.tensor([0.25, 0.0])}, str(tmp_path / "act_tagger.safetensors"))
    tagger = load_act_tagger(tmp_path)
    assert isinstance(tagger, ActTagger) and tagger.acts == ["inform", "question"]
    # "is the ?": known is, the, ?, ? </s> -> mean (0.25, 1.25) + bias (0.25, 0): question
    # "the the": known the, the -> mean (1, 0) + bias: inform; "hello": the bias alone: inform
    assert tagger.tag(["is the ?", "the the", "hello"]) == [1, 0, 0]
    torch.testing.assert_close(tagger.probabilities(["is the ?"]), torch.softmax(torch.tensor([[0.5, 1.25]]), -1))


def test_training_needs_acts():
    with pytest.raises(DataError, match="no turn has a dialog act"):
        train_act_tagger([], [])
    dialogues = [{"turns": [{"text": "hi", "act": None}, {"text": "hello", "act": "greet"}]}]
    assert tagged_turns(dialogues) == (["hello"], ["greet"])


def test_tag_totals_on_a_hand_computed_case():
    tagger = _toy_tagger()
    totals = _TagTotals(tagger, "toy", ["inform", "question"], control=True)
    # gold act question: 1 of 2 samples is a question -> recall 1, precision 0.5; the reference is tagged right
    totals.add(["is it far ?", "it is late ."], "where is the bank ?", 1)
    # gold act inform: no sample is -> recall 0, precision 0; the reference is tagged right
    totals.add(["who is he ?", "what time is it ?"], "he is my friend .", 0)
    totals.add(["who is he ?"], "he is my friend .", None)  # no gold act: not scored
    # requested question: 2 of 2 conditioned, 1 of 2 unconditioned (no gold act: not scored for act match)
    totals.add(["it is late .", "can you help me ?"], "he is my friend .", None, requested=1,
               conditioned=["is it far ?", "who is he ?"])
    result = totals.result()
    assert result.scored == 2 and result.tagger_accuracy == 1.0
    assert result.match_recall == 0.5 and result.match_precision == 0.25
    assert result.control.conditioned == 1.0 and result.control.unconditioned == 0.5
    assert result.control.per_act == {"question": {"conditioned": 1.0, "unconditioned": 0.5, "responses": 2}}
    with pytest.raises(ValueError, match="does not know the act"):
        _TagTotals(tagger, "toy", ["inform", "directive"], control=False)


def test_cli_trains_scores_and_saves(dialogue_exports, tmp_path, capsys):
    out = tmp_path / "tagger"
    assert act_tagger_tool.main(["--data", str(dialogue_exports.data), "--test", str(dialogue_exports.data),
                                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and f"saved {out}" in printed
    info = json.loads((out / "classifier.json").read_text(encoding="utf-8"))["info"]
    assert 0.0 <= info["test_accuracy"] <= 1.0 and info["examples"] > 0 and info["label_key"] == "act"
    assert set(load_act_tagger(out).acts) <= set(dialogue_exports.acts)


def test_cli_refuses_sentences_in_one_line(tmp_path, capsys):
    data = tmp_path / "sentences.jsonl"
    data.write_text('{"text": "a sentence"}\n', encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        act_tagger_tool.main(["--data", str(data), "--out", str(tmp_path / "t"), "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and "holds sentences" in err


def _dataset(dialogue_exports, export, tmp_path, n=8):
    records = load_records(dialogue_exports.data, cache_dir=tmp_path / ".cache", kind="dialogues")
    return DialogueDataset(records.select(range(n)), export.tokenizer, acts=Vocab(export.categories["acts"]))


def test_eval_scores_generated_acts_and_kgcvae_act_control(dialogue_exports, tmp_path):
    records = load_records(dialogue_exports.data, cache_dir=tmp_path / ".cache", kind="dialogues")
    tagger = train_act_tagger(*tagged_turns(records), min_count=1)
    export = load_export(dialogue_exports.kgcvae)
    dataset = _dataset(dialogue_exports, export, tmp_path)
    kwargs = {"responses": 3, "batch_size": 4, "seed": 0, "decoding": Decoding("greedy", max_len=12)}
    plain = evaluate_dialogues(export.model, dataset, export.tokenizer, **kwargs)
    tagged = evaluate_dialogues(export.model, dataset, export.tokenizer, act_tagger=tagger, act_tagger_source="t",
                                **kwargs)
    # act control draws from its own generator: every other number is unchanged
    assert tagged.bleu_f1 == plain.bleu_f1 and tagged.distinct_2 == plain.distinct_2
    assert tagged.act_accuracy == plain.act_accuracy and plain.tagged is None
    t = tagged.tagged
    assert t.scored == tagged.contexts and 0.0 <= t.match_precision <= t.match_recall <= 1.0
    control = t.control
    num_acts = len(export.categories["acts"])
    # requests cycle over the acts by example index: balanced, N responses per context
    counts = [0] * num_acts
    for i in range(len(dataset)):
        counts[i % num_acts] += 3
    assert {a: int(v["responses"]) for a, v in control.per_act.items()} == {
        export.categories["acts"][a]: c for a, c in enumerate(counts) if c}
    assert 0.0 <= control.conditioned <= 1.0 and 0.0 <= control.unconditioned <= 1.0
    assert "act control (tagger)" in tagged.table()
    hred = load_export(dialogue_exports.hred)
    result = evaluate_dialogues(hred.model, _dataset(dialogue_exports, hred, tmp_path), hred.tokenizer,
                                act_tagger=tagger, **kwargs)
    assert result.tagged.control is None and "act match (tagger)" in result.table()


def test_eval_cli_with_an_act_tagger(dialogue_exports, tmp_path, capsys):
    records = load_records(dialogue_exports.data, cache_dir=tmp_path / ".cache", kind="dialogues")
    save_act_tagger(tmp_path / "tagger", train_act_tagger(*tagged_turns(records), min_count=1))
    common = ["--data", str(dialogue_exports.data), "--max-sentences", "6", "--responses", "2",
              "--cache-dir", str(tmp_path / "cache"), "--json", str(tmp_path / "r.json")]
    assert eval_tool.main(["--model", str(dialogue_exports.kgcvae), "--act-tagger", str(tmp_path / "tagger"),
                           *common]) == 0
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert result["tagged"]["control"]["per_act"] and "act control" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        eval_tool.main(["--model", str(dialogue_exports.kgcvae), "--act-tagger", str(tmp_path / "nothing"), *common])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and "classifier.json" in err
    toy = tmp_path / "toy"
    save_act_tagger(toy, _toy_tagger())  # knows two acts the data does not have
    with pytest.raises(SystemExit):
        eval_tool.main(["--model", str(dialogue_exports.kgcvae), "--act-tagger", str(toy), *common])
    assert "does not know the act" in capsys.readouterr().err
