"""Word vectors in the word2vec/GloVe text format: both layouts, a kept vocabulary, and one-line errors."""

import pytest
import torch

from textvae.data.records import DataError
from textvae.data.word_vectors import load_word_vectors


def test_glove_and_word2vec_layouts(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("the 1 0\ncat 0 1.5\n. . . 2 2\n", encoding="utf-8")
    vectors = load_word_vectors(glove)
    assert vectors.dim == 2 and set(vectors.index) == {"the", "cat", ". . ."}
    torch.testing.assert_close(vectors.lookup(["cat", "zebra", "the"]), torch.tensor([[0.0, 1.5], [1.0, 0.0]]))
    word2vec = tmp_path / "w2v.txt"
    word2vec.write_text("3 2\nthe 1 0\ncat 0 1.5\ndog 1 1\n", encoding="utf-8")
    kept = load_word_vectors(word2vec, words={"cat", "bird"})
    assert list(kept.index) == ["cat"] and kept.vectors.shape == (1, 2)


@pytest.mark.filterwarnings("ignore::textvae.data.records.DataWarning")  # the empty line, counted
@pytest.mark.parametrize("content, message", [
    (b"the 1 0\ncat 0\n", "glove.txt:2: 1 numbers where the file has 2 dimensions"),
    (b"the 1 x\n", "glove.txt:1: the vector of 'the' is not all numbers"),
    (b"\x80\x81binary\n", "glove.txt:1: not valid UTF-8"),
    (b"\n", "glove.txt: no word vectors in the file"),
])
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "glove.txt"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        load_word_vectors(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_word_vectors(tmp_path / "nope.txt")
