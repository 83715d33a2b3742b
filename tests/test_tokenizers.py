import pytest

from textvae.data.records import DataError
from textvae.data.tokenizers import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    SentencePieceTokenizer,
    WordTokenizer,
    load_tokenizer,
    train_tokenizer,
)

TEXTS = ["the cat sat on the mat .", "the dog sat on the log .", "a cat and a dog ."] * 20


def test_word_tokenizer_round_trip_and_special_ids(tmp_path):
    tok = WordTokenizer.train(TEXTS)
    assert tok.tokens[:4] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    for text in TEXTS[:3]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("the zebra") == [tok.index["the"], UNK_ID]
    tok.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.tokens == tok.tokens and loaded.encode("a dog") == tok.encode("a dog")


def test_word_vocabulary_cut_by_count_and_size():
    texts = ["a a a a b b b c c d"]
    assert WordTokenizer.train(texts, min_count=2).tokens[4:] == ["a", "b", "c"]
    assert WordTokenizer.train(texts, max_size=6).tokens[4:] == ["a", "b"]  # 4 specials + 2 words
    with pytest.raises(ValueError, match="max_size"):
        WordTokenizer.train(texts, max_size=3)


def test_corpus_unk_spellings_map_to_unk():
    tok = WordTokenizer.train(["<unk> stocks fell N points", "_UNK rose"])
    assert "<unk>" not in tok.tokens[4:] and "_UNK" not in tok.tokens
    assert tok.encode("<unk> rose")[0] == UNK_ID and tok.encode("_UNK")[0] == UNK_ID


def test_decode_strips_padding_and_stops_at_eos():
    tok = WordTokenizer.train(TEXTS)
    ids = [BOS_ID, *tok.encode("the cat"), EOS_ID, *tok.encode("dog"), PAD_ID]
    assert tok.decode(ids) == "the cat"


def test_word_tokenizer_does_not_resplit_pretokenised_text():
    tok = WordTokenizer.train(["do n't stop ."])
    assert len(tok.encode("do n't stop .")) == 4


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_round_trip(tmp_path, model_type):
    texts = [f"sentence number {i} about cats and dogs ." for i in range(200)]
    tok = SentencePieceTokenizer.train(texts, vocab_size=60, model_type=model_type)
    ids = tok.encode(texts[7])
    assert min(ids) > UNK_ID or UNK_ID not in ids
    assert tok.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == texts[7]
    tok.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.encode(texts[3]) == tok.encode(texts[3]) and loaded.vocab_size == tok.vocab_size


def test_train_tokenizer_dispatch_and_errors(tmp_path):
    assert isinstance(train_tokenizer(TEXTS, kind="word"), WordTokenizer)
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        train_tokenizer(TEXTS, kind="chars")
    with pytest.raises(DataError, match="empty"):
        WordTokenizer.train(["", "  "])
    with pytest.raises(DataError, match="no tokenizer here"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt tokenizer"):
        load_tokenizer(tmp_path)
