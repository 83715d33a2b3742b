"""The data layer at scale: files parsed in shards side by side, token ids cached as memory-mapped Arrow columns
(keyed on the file and the tokenizer), the tokenizer cached, per-rank shards of the batches, and the synthetic
corpus generated in blocks by worker processes."""

import hashlib
import json
import random

import numpy as np
import pytest

import corpora.synthetic_sentences as synthetic_corpus
import textvae.data.datasets as datasets_module
from textvae.data.batching import BucketBatchSampler
from textvae.data.datasets import (
    DialogueDataset,
    SentenceDataset,
    encode_records,
    load_records,
    texts_of,
)
from textvae.data.records import DataError, Dialogue, Sentence, Turn, line_shards, read_jsonl, write_jsonl
from textvae.data.synthetic import generate_sentences
from textvae.data.tokenizers import SentencePieceTokenizer, WordTokenizer
from textvae.lightning import TextDataModule

WORDS = "the a cat dog sat ran far away today and then slowly quickly home".split()


def random_sentences(n: int, seed: int = 0) -> list[Sentence]:
    rng = random.Random(seed)
    return [Sentence(" ".join(rng.choices(WORDS, k=rng.randint(1, 12))), label=rng.choice(["x", "y", None]))
            for _ in range(n)]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, random_sentences(400))
    return path


def test_line_shards_cut_at_line_starts_and_number_lines_as_the_file(tmp_path):
    path = tmp_path / "f.jsonl"
    lines = [f'{{"text": "{"w " * (i % 7)}x{i}"}}\n' for i in range(50)]
    path.write_text("".join(lines), encoding="utf-8")
    data = path.read_bytes()
    digest, shards = line_shards(path, 100)
    assert digest == hashlib.sha256(data).hexdigest()
    assert shards[0].start == 0 and shards[-1].end == len(data) and len(shards) > 5
    for shard, following in zip(shards, shards[1:], strict=False):
        assert shard.end == following.start and data[following.start - 1:following.start] == b"\n"
    for shard in shards:  # the first line number is the count of newlines before the shard, plus one
        assert shard.first_line == data[:shard.start].count(b"\n") + 1


def test_a_sharded_file_loads_in_order_with_errors_naming_the_files_line(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets_module, "SHARD_BYTES", 2000)  # several shards, read by two processes
    records = load_records(corpus, cache_dir=tmp_path / "cache", num_proc=2)
    expected = list(read_jsonl(corpus, "sentences"))
    assert records["text"] == [s.text for s in expected]
    assert records["label"] == [s.label for s in expected]
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[300] = "{oops\n"  # line 301, far past the first shard
    corpus.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.jsonl:301: malformed JSON"):
        load_records(corpus, cache_dir=tmp_path / "cache", num_proc=2)
    # the failed build left nothing behind: only the first file's records are cached
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1


@pytest.mark.parametrize("num_proc", [None, 2])
def test_token_ids_are_the_tokenizers_and_cached_by_file_and_tokenizer(corpus, tmp_path, num_proc, monkeypatch):
    records = load_records(corpus, cache_dir=tmp_path / "cache")
    tokenizer = WordTokenizer.train(texts_of(records, "sentences"), max_size=10)  # a few words: many <unk>
    dataset = SentenceDataset(records, tokenizer, max_len=8, num_proc=num_proc)
    texts = [s.text for s in read_jsonl(corpus, "sentences")]
    assert [dataset[i].ids for i in range(len(texts))] == [tokenizer.encode(t)[:8] for t in texts]
    assert dataset.lengths.tolist() == [min(len(t.split()), 8) + 2 for t in texts]
    rows = dataset._parts[0].ids
    assert rows._files  # read with pread from the cache files, not through the table
    assert rows[[5, 0, 399]] == [tokenizer.encode(texts[i]) for i in (5, 0, 399)]
    first = encode_records(records, tokenizer, "sentences", num_proc=num_proc)
    assert first.cache_files and all(f["filename"].startswith(str(tmp_path / "cache")) for f in first.cache_files)

    def refuse(*args, **kwargs):
        raise AssertionError("encoded again although the cache holds these ids")

    monkeypatch.setattr(datasets_module, "_encode_sentences", refuse)  # what map would run on a cache miss
    again = encode_records(records, tokenizer, "sentences", num_proc=num_proc)
    assert [f["filename"] for f in again.cache_files] == [f["filename"] for f in first.cache_files]
    other = WordTokenizer.train(texts_of(records, "sentences"))  # another tokenizer: another cache
    with pytest.raises(AssertionError, match="encoded again"):
        encode_records(records, other, "sentences", num_proc=num_proc)


def test_an_edited_file_is_encoded_anew(corpus, tmp_path):
    tokenizer = WordTokenizer(["<pad>", "<s>", "</s>", "<unk>", *WORDS])
    before = SentenceDataset(load_records(corpus, cache_dir=tmp_path / "cache"), tokenizer)
    write_jsonl(corpus, [Sentence("home cat")])
    after = SentenceDataset(load_records(corpus, cache_dir=tmp_path / "cache"), tokenizer)
    assert len(before) == 400 and len(after) == 1 and after[0].ids == tokenizer.encode("home cat")


def _monotone_to(calls: list[tuple[int, int]], total: int) -> None:
    """The calls of a progress(done, total) callback: done rising (never falling) to the one total, and last there."""
    assert calls and calls[-1] == (total, total), calls
    assert all(t == total for _, t in calls), calls
    done = [d for d, _ in calls]
    assert done == sorted(done), calls


@pytest.mark.parametrize("num_proc", [None, 2])
def test_a_first_cache_build_reports_its_progress_shard_by_shard(corpus, tmp_path, num_proc, monkeypatch):
    monkeypatch.setattr(datasets_module, "SHARD_BYTES", 2000)  # 400 sentences: about a dozen shards
    calls: list[tuple[int, int]] = []
    records = load_records(corpus, cache_dir=tmp_path / "cache", num_proc=num_proc,
                           progress=lambda done, total: calls.append((done, total)))
    size = corpus.stat().st_size
    _monotone_to(calls, size)
    assert len(calls) == len(line_shards(corpus, 2000)[1]) > 5  # one call a shard, in bytes of the file
    assert len(records) == 400
    again: list[tuple[int, int]] = []
    load_records(corpus, cache_dir=tmp_path / "cache", progress=lambda done, total: again.append((done, total)))
    assert again == [(size, size)]  # cached: nothing to wait for
    assert load_records(corpus, cache_dir=tmp_path / "cache2")["text"] == records["text"]  # silent by default


@pytest.mark.parametrize("num_proc", [None, 2])
def test_tokenising_reports_the_records_encoded(corpus, tmp_path, num_proc, monkeypatch):
    import time

    monkeypatch.setattr(datasets_module, "BATCH_ROWS", {"sentences": 50, "dialogues": 50})
    encode = datasets_module._encode_sentences

    def slow(texts, tokenizer):
        time.sleep(0.06)  # past datasets' 0.05 s between reports: each batch is told
        return encode(texts, tokenizer)

    monkeypatch.setattr(datasets_module, "_encode_sentences", slow)
    records = load_records(corpus, cache_dir=tmp_path / "cache")
    tokenizer = WordTokenizer.train(texts_of(records, "sentences"))
    calls: list[tuple[int, int]] = []
    encoded = encode_records(records, tokenizer, "sentences", num_proc=num_proc,
                             progress=lambda done, total: calls.append((done, total)))
    _monotone_to(calls, 400)
    assert len([done for done, _ in calls if 0 < done < 400]) >= 2, calls  # along the way, not only at the end
    assert encoded["ids"] == [tokenizer.encode(t) for t in records["text"]]
    again: list[tuple[int, int]] = []
    dataset = SentenceDataset(records, tokenizer, num_proc=num_proc,
                              progress=lambda done, total: again.append((done, total)))
    assert again == [(400, 400)] and len(dataset) == 400  # the ids were cached


def test_sentencepiece_ids_from_worker_processes_match(corpus, tmp_path):
    records = load_records(corpus, cache_dir=tmp_path / "cache")
    tokenizer = SentencePieceTokenizer.train(texts_of(records, "sentences"), vocab_size=30)
    encoded = encode_records(records, tokenizer, "sentences", num_proc=2)
    assert encoded["ids"] == [tokenizer.encode(t) for t in records["text"]]


def test_dialogue_examples_come_from_the_cached_turn_ids(tmp_path):
    rng = random.Random(1)
    dialogues = [Dialogue(turns=tuple(Turn("AB"[i % 2], " ".join(rng.choices(WORDS, k=rng.randint(1, 6))),
                                           act=rng.choice(["q", "a"])) for i in range(rng.randint(1, 6))),
                          topic=rng.choice(["t", "u"])) for _ in range(40)]
    path = tmp_path / "d.jsonl"
    write_jsonl(path, dialogues)
    records = load_records(path, cache_dir=tmp_path / "cache")
    tokenizer = WordTokenizer.train(texts_of(records, "dialogues"))
    dataset = DialogueDataset(records, tokenizer, max_context=2, num_proc=2)
    pairs = [(d, n) for d, dialogue in enumerate(dialogues) for n in range(1, len(dialogue.turns))]
    assert list(dataset.examples) == pairs and len(dataset) == len(pairs)
    for i, (d, n) in enumerate(pairs):  # against the dialogues as written
        example, turns = dataset[i], dialogues[d].turns
        assert example.response == tokenizer.encode(turns[n].text)
        assert example.context == [tokenizer.encode(t.text) for t in turns[max(0, n - 2):n]]
        assert example.context_floor == [int(t.speaker == turns[n].speaker) for t in turns[max(0, n - 2):n]]
        assert dataset.acts.names[example.act] == turns[n].act and dataset.topics.names[example.topic] == dialogues[d].topic
        assert dataset.lengths[i] == len(turns[n].text.split()) + 2 and dataset.speakers[d][n] == turns[n].speaker


def test_ranks_train_on_disjoint_shards_bucketed_within_each():
    lengths = np.random.default_rng(0).integers(1, 50, 960)
    ranks = [BucketBatchSampler(lengths, 8, seed=2, num_replicas=4, rank=r, pool_batches=5) for r in range(4)]
    seen = [[i for batch in rank for i in batch] for rank in ranks]
    assert all(len(s) == len(set(s)) == 240 for s in seen)  # 960 / 4: no repeats needed
    assert set().union(*map(set, seen)) == set(range(960))  # disjoint and together every example
    assert len({len(list(rank)) for rank in ranks}) == 1
    for rank in ranks:  # batches of similar lengths: a random batch of 8 of lengths 1..49 spans ~38
        assert np.median([max(lengths[batch]) - min(lengths[batch]) for batch in rank]) <= 12
    for r in range(4):  # unshuffled: rank r's shard is every 4th example, each pool of 40 sorted by length
        batches = list(BucketBatchSampler(lengths, 8, shuffle=False, num_replicas=4, rank=r, pool_batches=5))
        shard = list(range(r, 960, 4))
        expected = [i for p in range(0, 240, 40) for i in sorted(shard[p:p + 40], key=lambda i: lengths[i])]
        assert [i for batch in batches for i in batch] == expected


def test_the_data_module_caches_its_tokenizer(corpus, tmp_path, monkeypatch):
    first = TextDataModule(train=str(corpus), cache_dir=str(tmp_path / "cache"), min_count=2)
    import textvae.lightning as lightning

    def refuse(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(lightning, "train_tokenizer", refuse)
    again = TextDataModule(train=str(corpus), cache_dir=str(tmp_path / "cache"), min_count=2)
    assert again.tokenizer.tokens == first.tokenizer.tokens
    with pytest.raises(AssertionError, match="trained again"):  # other settings: another tokenizer
        TextDataModule(train=str(corpus), cache_dir=str(tmp_path / "cache"), min_count=1)
    write_jsonl(corpus, random_sentences(50, seed=9))
    with pytest.raises(AssertionError, match="trained again"):  # an edited file: another tokenizer
        TextDataModule(train=str(corpus), cache_dir=str(tmp_path / "cache"), min_count=2)


def test_the_synthetic_corpus_is_written_block_by_block_from_worker_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic_corpus, "BLOCK", 40)
    summary = synthetic_corpus.prepare(tmp_path / "out", size=100, seed=2, workers=2)
    train = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    expected = (generate_sentences(40, 6) + generate_sentences(40, "synthetic-sentences/6/1")
                + generate_sentences(20, "synthetic-sentences/6/2"))  # train's seed is 3 * seed
    assert train == [s.to_json() for s in expected]
    valid = (tmp_path / "out" / "valid.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in valid] == [s.to_json() for s in generate_sentences(10, 7)]
    assert summary["splits"] == {"train": 100, "valid": 10, "test": 10}
    assert summary["labels"] == sorted({s.label for s in expected} | {json.loads(v)["label"] for v in valid}
                                       | {json.loads(v)["label"] for v in (tmp_path / "out" / "test.jsonl")
                                          .read_text(encoding="utf-8").splitlines()})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["corpus.json", "test.jsonl", "train.jsonl",
                                                                    "valid.jsonl"]
