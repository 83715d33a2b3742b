import json

import pytest

from textvae.data.datasets import (
    DialogueDataset,
    SentenceDataset,
    Vocab,
    load_records,
    texts_of,
)
from textvae.data.records import DataError, DataWarning, Dialogue, Sentence, Turn, write_jsonl
from textvae.data.tokenizers import WordTokenizer


@pytest.fixture
def sentences_file(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [Sentence("the cat sat", label=1, attributes={"topic": "pets"}),
                       Sentence("a dog ran far away today", label=0), Sentence("no label here")])
    return path


def dialogue(n_turns, act=True):
    return Dialogue(turns=tuple(Turn("AB"[i % 2], f"turn {i} words", act=f"act{i % 3}" if act else None,
                                     emotion="none") for i in range(n_turns)), topic="t")


def test_load_records_through_datasets_with_cache(sentences_file, tmp_path):
    ds = load_records(sentences_file, cache_dir=tmp_path / "cache")
    assert ds.num_rows == 3 and ds["text"][0] == "the cat sat"
    assert ds["label"] == ["1", "0", None]
    assert json.loads(ds["attributes"][0]) == {"topic": "pets"}
    assert any((tmp_path / "cache").rglob("*.arrow"))


def test_edited_file_is_not_answered_from_a_stale_cache(sentences_file, tmp_path):
    load_records(sentences_file, cache_dir=tmp_path / "cache")
    write_jsonl(sentences_file, [Sentence("changed text")])
    ds = load_records(sentences_file, cache_dir=tmp_path / "cache")
    assert ds["text"] == ["changed text"]


def test_load_records_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):
        load_records(bad, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="no such file.*textvae-corpus prepare"):
        load_records(tmp_path / "missing.jsonl", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="is a folder"):
        load_records(tmp_path, cache_dir=tmp_path / "cache")


def test_sentence_dataset_encodes_and_counts_truncation(sentences_file, tmp_path):
    records = load_records(sentences_file, cache_dir=tmp_path / "cache")
    tok = WordTokenizer.train(texts_of(records, "sentences"))
    with pytest.warns(DataWarning, match="truncated 1 of 3 sentences longer than max_len=4"):
        ds = SentenceDataset(records, tok, max_len=4)
    assert ds[1].ids == tok.encode("a dog ran far")
    assert ds.labels.names == ["0", "1"] and [ds[i].label for i in range(3)] == [1, 0, None]
    assert ds.lengths.tolist() == [5, 6, 5]
    assert ds.num_targets == 4 + 5 + 4
    assert ds.texts == list(records["text"])


def test_unknown_label_against_a_given_vocab_is_an_error(sentences_file, tmp_path):
    records = load_records(sentences_file, cache_dir=tmp_path / "cache")
    tok = WordTokenizer.train(texts_of(records, "sentences"))
    with pytest.raises(DataError, match=r"label '0' is not among the model's labels \(1\)"):
        SentenceDataset(records, tok, labels=Vocab(["1"]))


def test_dialogue_examples_window_the_context(tmp_path):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [dialogue(5), dialogue(2)])
    records = load_records(path, cache_dir=tmp_path / "cache")
    tok = WordTokenizer.train(texts_of(records, "dialogues"))
    ds = DialogueDataset(records, tok, max_context=2)
    assert len(ds) == 4 + 1  # every turn after the first is a response
    last = ds[3]  # dialogue 0, response turn 4: context turns 2 and 3
    assert last.context == [tok.encode("turn 2 words"), tok.encode("turn 3 words")]
    assert last.context_floor == [1, 0]  # turn 2 is A like the responder, turn 3 is B
    assert last.response == tok.encode("turn 4 words")
    assert ds.acts.names == ["act0", "act1", "act2"] and last.act == ds.acts.index["act1"]
    assert ds.emotions.names == ["none"] and ds.topics.names == ["t"]
    assert ds[4].context == [tok.encode("turn 0 words")]
    assert ds.num_targets == sum(len(ds[i].response) + 1 for i in range(len(ds)))


def test_dialogue_unknown_act_lists_known(tmp_path):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [dialogue(3)])
    records = load_records(path, cache_dir=tmp_path / "cache")
    tok = WordTokenizer.train(texts_of(records, "dialogues"))
    with pytest.raises(DataError, match=r"act 'act2' is not among the model's acts \(act0, act1\)"):
        DialogueDataset(records, tok, acts=Vocab(["act0", "act1"]))


def test_vocab_orders_numbers_naturally():
    assert Vocab.build(["10", "2", None, "1"]).names == ["1", "2", "10"]
