import json

import pytest

from textvae.data.records import (
    DataError,
    DataWarning,
    Dialogue,
    Sentence,
    Turn,
    detect_kind,
    iter_text_lines,
    read_jsonl,
    write_jsonl,
)


def test_sentences_and_dialogues_round_trip(tmp_path):
    sentences = [Sentence("a b c", label=1), Sentence("d é f", attributes={"topic": "food"})]
    dialogues = [Dialogue(turns=(Turn("A", "hi", act="greet"), Turn("B", "hello", emotion="happiness")),
                          topic="greeting", meta={"goal": {"x": 1}}, id="d1")]
    assert write_jsonl(tmp_path / "s.jsonl", sentences) == 2
    assert write_jsonl(tmp_path / "d.jsonl", dialogues) == 1
    assert list(read_jsonl(tmp_path / "s.jsonl", "sentences")) == sentences
    assert list(read_jsonl(tmp_path / "d.jsonl", "dialogues")) == dialogues
    assert detect_kind(tmp_path / "s.jsonl") == "sentences"
    assert detect_kind(tmp_path / "d.jsonl") == "dialogues"
    assert "é" in (tmp_path / "s.jsonl").read_text(encoding="utf-8")  # not ASCII-escaped


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "broken"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):
        list(read_jsonl(path, "sentences"))


def test_wrong_fields_are_errors(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"sentence": "no text field"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r':1: missing string field "text"'):
        list(read_jsonl(path, "sentences"))
    path.write_text(json.dumps({"turns": [{"text": "no speaker"}]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r'turn 0 needs a non-empty string "speaker"'):
        list(read_jsonl(path, "dialogues"))
    path.write_text(json.dumps({"text": "x", "label": [1]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match='"label" must be a string or an integer'):
        list(read_jsonl(path, "sentences"))


def test_invalid_utf8_is_an_error_with_line(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin\.txt:2: not valid UTF-8.*iconv"):
        list(iter_text_lines(path))


def test_empty_lines_are_skipped_and_counted_once(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "a"}\n\n   \n{"text": ""}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.warns(DataWarning) as record:
        sentences = list(read_jsonl(path, "sentences"))
    assert [s.text for s in sentences] == ["a", "b"]
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert "skipped 2 empty lines" in messages[1] and "skipped 1 empty sentence" in messages[0]


def test_empty_turns_are_counted_not_silent(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"turns": [{"speaker": "A", "text": "hi"}, {"speaker": "B", "text": " "}]},
            {"turns": [{"speaker": "A", "text": ""}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.warns(DataWarning, match="skipped 2 empty turns"):
        dialogues = list(read_jsonl(path, "dialogues"))
    assert len(dialogues) == 1 and len(dialogues[0].turns) == 1


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        list(iter_text_lines(tmp_path / "nope.txt"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="file is empty"):
        detect_kind(tmp_path / "empty.jsonl")
