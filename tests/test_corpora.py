"""Corpus preparation: the shared real corpora convert with their stated counts, the lite entries, the
textvae-corpus CLI, and one-line errors for bad input."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest

import corpora
from corpora import dailydialog, lite, switchboard
from textvae.data.records import DataError, DataWarning, read_jsonl
from tools.corpus import main

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora"


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared corpora not found at {SHARED}")
    return SHARED.resolve()


def _read(folder: Path, split: str, kind: str) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # a prepared corpus reads back without skipping anything
        return list(read_jsonl(folder / f"{split}.jsonl", kind))


def _corpus_json(folder: Path) -> dict:
    return json.loads((folder / "corpus.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------- shared corpora


def test_ptb_counts_and_text(shared, tmp_path):
    summary = corpora.prepare("ptb", tmp_path, source=shared / "ptb")
    assert summary["splits"] == {"valid": 3_370, "test": 3_761}
    assert summary == _corpus_json(tmp_path)
    valid = _read(tmp_path, "valid", "sentences")
    assert valid[0].text == "consumers may want to move their telephones a little closer to the tv set"
    assert all(s.label is None for s in valid)


def test_short_yelp_counts_and_labels(shared, tmp_path):
    summary = corpora.prepare("short_yelp", tmp_path, source=shared / "short_yelp")
    assert summary["splits"] == {"valid": 10_000, "test": 10_000}
    assert summary["labels"] == [0, 1]
    first = _read(tmp_path, "valid", "sentences")[0]
    assert (first.label, first.text) == (1, "if you are a beer person , they have a great beer !")


def test_yahoo_counts_plain_text(shared, tmp_path):
    summary = corpora.prepare("yahoo", tmp_path, source=shared / "yahoo")
    assert summary["splits"] == {"valid": 10_000, "test": 10_000}
    assert "labels" not in summary
    assert _read(tmp_path, "valid", "sentences")[0].text.startswith("what do you think of _UNK organization ?")


def test_dailydialog_counts_acts_and_speakers(shared, tmp_path):
    summary = corpora.prepare("dailydialog", tmp_path, source=shared / "dailydialog")
    assert summary["splits"] == {"valid": 1_000, "test": 1_000}
    assert summary["turns"] == {"valid": 8_069, "test": 7_740}
    assert summary["acts"] == ["inform", "question", "directive", "commissive"]
    assert summary["emotions"][0] == "none" and len(summary["emotions"]) == 7
    dialogues = _read(tmp_path, "valid", "dialogues")
    turns = [t for d in dialogues for t in d.turns]
    assert len(turns) == 8_069
    assert all(t.act in summary["acts"] and t.emotion in summary["emotions"] for t in turns)
    assert all(t.speaker == "AB"[i % 2] for d in dialogues for i, t in enumerate(d.turns))
    first = dialogues[0].turns[0]
    assert (first.text, first.act, first.emotion) == ("Good morning , sir . Is there a bank near here ?",
                                                      "question", "none")


def test_switchboard_counts_acts_and_cleaned_meta(shared, tmp_path):
    summary = corpora.prepare("switchboard", tmp_path, source=shared / "swda")
    assert summary["splits"] == {"valid": 60}
    assert summary["turns"] == {"valid": 5_225}
    assert len(summary["acts"]) == 37
    dialogues = _read(tmp_path, "valid", "dialogues")
    first = dialogues[0]
    assert first.topic == "MUSIC"
    assert first.meta["callers"]["A"] == {"dialect": "SOUTH MIDLAND", "age": 47, "education": 2, "sex": "MALE"}
    assert first.meta["callers"]["B"]["sex"] == "FEMALE"
    assert first.meta["prompt"].startswith("PLEASE DISCUSS MUSIC.")
    assert first.meta["turn_sentiment"][0] == [0.0, 0.7, 0.3, 0.4588]
    assert (first.turns[0].speaker, first.turns[0].act) == ("A", "open-question")
    for d in dialogues:
        assert len(d.meta["turn_sentiment"]) == len(d.turns)
        assert {t.speaker for t in d.turns} <= {"A", "B"}


# ---------------------------------------------------------------------------------------- lite protocol

LITE = {
    "yelp10k": ("sentences", {"train": 10_000, "valid": 10_000, "test": 10_000, "train.100": 100, "train.500": 500,
                            "train.1000": 1_000, "train.2000": 2_000}, None),
    "ptb-lite": ("sentences", {"train": 3_370, "valid": 3_761, "test": 3_761}, None),
    "yahoo-lite": ("sentences", {"train": 10_000, "valid": 10_000, "test": 10_000}, None),
    "dailydialog-lite": ("dialogues", {"train": 1_000, "valid": 1_000, "test": 1_000},
                         {"train": 8_069, "valid": 7_740, "test": 7_740}),
    "swda-valid": ("dialogues", {"train": 48, "valid": 6, "test": 6}, None),
}


@pytest.mark.parametrize("name", list(LITE))
def test_lite_entries(shared, tmp_path, name):
    kind, counts, turns = LITE[name]
    summary = corpora.prepare(name, tmp_path, source=shared)  # the parent of the corpus folders works too
    assert (summary["kind"], summary["splits"]) == (kind, counts)
    if turns:
        assert summary["turns"] == turns
    for split, count in counts.items():
        assert len(_read(tmp_path, split, kind)) == count
    assert corpora.CORPORA[name].kind == kind


def test_lite_valid_and_test_are_the_same_file(shared, tmp_path):
    corpora.prepare("ptb-lite", tmp_path, source=shared / "ptb")
    assert (tmp_path / "valid.jsonl").read_bytes() == (tmp_path / "test.jsonl").read_bytes()
    assert (tmp_path / "train.jsonl").read_bytes() != (tmp_path / "valid.jsonl").read_bytes()


def test_swda_valid_split_is_deterministic_and_disjoint(shared, tmp_path):
    summary = corpora.prepare("swda-valid", tmp_path / "a", source=shared / "swda")
    corpora.prepare("swda-valid", tmp_path / "b", source=shared / "swda")
    ids = {s: [d.id for d in _read(tmp_path / "a", s, "dialogues")] for s in ("train", "valid", "test")}
    assert sum(summary["turns"].values()) == 5_225
    assert len({i for v in ids.values() for i in v}) == 60
    assert ids["valid"][0] == "valid.jsonl:9" and ids["test"][0] == "valid.jsonl:10"
    for split in ("train", "valid", "test"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()


def test_pinned_checksums_are_those_of_the_shared_copies(shared):
    pinned = {s.filename: s.sha256 for c in corpora.CORPORA.values() for s in c.sources if s.sha256}
    assert len(pinned) == 10
    local = {"short_yelp.train.10000.txt": "short_yelp/train.10000.txt", "short_yelp.valid.txt": "short_yelp/valid.txt",
             "short_yelp.test.txt": "short_yelp/test.txt", "val.txt": "yahoo/val.txt", "test.txt": "yahoo/test.txt",
             "valid.jsonl": "swda/valid.jsonl"}
    local |= {f"short_yelp.train.{n}.txt": f"short_yelp/train.{n}.txt" for n in (100, 500, 1000, 2000)}
    for filename, sha256 in pinned.items():
        assert hashlib.sha256((shared / local[filename]).read_bytes()).hexdigest() == sha256, filename


def test_every_corpus_has_the_uniform_interface():
    assert {"ptb", "yahoo", "yelp", "short_yelp", "snli", "dailydialog", "switchboard", "synthetic-sentences",
            "synthetic-dialogues", "yelp10k", "ptb-lite", "yahoo-lite", "dailydialog-lite",
            "swda-valid", "text", "dialogues"} == set(corpora.CORPORA)
    for name, corpus in corpora.CORPORA.items():
        assert corpus.name == name and corpus.kind in ("sentences", "dialogues") and corpus.description
        assert "\n" not in corpus.description
        for source in corpus.sources:
            assert source.url.startswith("https://")
            assert source.sha256 is None or len(source.sha256) == 64
        assert len({s.filename for s in corpus.sources}) == len(corpus.sources)


# ---------------------------------------------------------------------------------------- formats


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def test_documents_with_labels_are_detected_per_file(tmp_path):
    _write(tmp_path / "src" / "yahoo.train.txt", "3\tfirst document .\n10\tsecond\tdocument with a tab .\n")
    _write(tmp_path / "src" / "yahoo.valid.txt", "no label here\n4\tlooks labelled but the file is not\n")
    with pytest.warns(DataWarning, match="1 of 2 lines look like"):
        summary = corpora.prepare("yahoo", tmp_path / "out", source=tmp_path / "src")
    train = _read(tmp_path / "out", "train", "sentences")
    assert [(s.label, s.text) for s in train] == [(3, "first document ."), (10, "second\tdocument with a tab .")]
    valid = _read(tmp_path / "out", "valid", "sentences")
    assert [(s.label, s.text) for s in valid] == [(None, "no label here"),
                                                  (None, "4\tlooks labelled but the file is not")]
    assert summary["labels"] == [3, 10]


def test_text_with_a_tab_is_never_split(tmp_path):
    _write(tmp_path / "src" / "yelp.test.txt", "great\tfood !\nthe food was good\n")
    corpora.prepare("yelp", tmp_path / "out", source=tmp_path / "src")
    assert [s.text for s in _read(tmp_path / "out", "test", "sentences")] == ["great\tfood !", "the food was good"]


def test_yahoo_and_yelp_from_the_archive(tmp_path):
    archive = tmp_path / "datasets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for member, text in [("datasets/yahoo_data/yahoo.valid.txt", "a question ?\n"),
                             ("datasets/yelp_data/yelp.valid.txt", "4\tgreat place\n0\tawful\n")]:
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert corpora.prepare("yahoo", tmp_path / "yahoo", source=archive)["splits"] == {"valid": 1}
    summary = corpora.prepare("yelp", tmp_path / "yelp", source=archive)
    assert (summary["splits"], summary["labels"]) == ({"valid": 2}, [0, 4])


def test_snli_unique_sentences_from_zip_and_folder(tmp_path):
    def pair(premise, hypothesis):
        return json.dumps({"gold_label": "neutral", "sentence1": premise, "sentence2": hypothesis}) + "\n"

    dev = pair("A man sleeps.", "A person rests.") + pair("A man sleeps.", "Nobody sleeps.")
    train = pair("Two dogs run.", "Animals move.") + pair("Animals move.", "Two dogs run.")
    archive = tmp_path / "snli_1.0.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("snli_1.0/snli_1.0_dev.jsonl", dev)
        z.writestr("snli_1.0/snli_1.0_train.jsonl", train)
        z.writestr("__MACOSX/snli_1.0/._snli_1.0_dev.jsonl", b"\x00\x05\x16\x07")  # macOS junk, ignored
    summary = corpora.prepare("snli", tmp_path / "out", source=archive)
    assert summary["splits"] == {"train": 2, "valid": 3}
    assert [s.text for s in _read(tmp_path / "out", "valid", "sentences")] == [
        "A man sleeps.", "A person rests.", "Nobody sleeps."]
    _write(tmp_path / "folder" / "snli_1.0" / "snli_1.0_test.jsonl", dev)
    assert corpora.prepare("snli", tmp_path / "f", source=tmp_path / "folder")["splits"] == {"test": 3}


def test_snli_malformed_line_in_zip_names_member_and_line(tmp_path):
    archive = tmp_path / "snli_1.0.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("snli_1.0/snli_1.0_dev.jsonl", '{"sentence1": "ok", "sentence2": "fine"}\n{"sentence1": 3}\n')
    with pytest.raises(DataError, match=r"snli_1\.0_dev\.jsonl:2: missing string field \"sentence1\""):
        corpora.prepare("snli", tmp_path / "out", source=archive)


def test_dailydialog_official_layout(tmp_path):
    root = tmp_path / "ijcnlp_dailydialog"
    _write(root / "train" / "dialogues_train.txt", "Hi . __eou__ Hello ! __eou__ How are you ? __eou__\n")
    _write(root / "train" / "dialogues_act_train.txt", "1 1 2 \n")
    _write(root / "train" / "dialogues_emotion_train.txt", "0 4 0 \n")
    _write(root / "validation" / "dialogues_text.txt", "Bye . __eou__ See you . __eou__\n")
    _write(root / "validation" / "dialogues_act.txt", "3 4 \n")
    _write(root / "validation" / "dialogues_emotion.txt", "5 6 \n")
    summary = corpora.prepare("dailydialog", tmp_path / "out", source=root)
    assert (summary["splits"], summary["turns"]) == ({"train": 1, "valid": 1}, {"train": 3, "valid": 2})
    (d,) = _read(tmp_path / "out", "train", "dialogues")
    assert [(t.speaker, t.text, t.act, t.emotion) for t in d.turns] == [
        ("A", "Hi .", "inform", "none"), ("B", "Hello !", "inform", "happiness"),
        ("A", "How are you ?", "question", "none")]
    (v,) = _read(tmp_path / "out", "valid", "dialogues")
    assert [(t.act, t.emotion) for t in v.turns] == [("directive", "sadness"), ("commissive", "surprise")]


def test_stale_splits_of_an_earlier_preparation_are_removed(shared, tmp_path):
    corpora.prepare("ptb-lite", tmp_path, source=shared / "ptb")
    corpora.prepare("ptb", tmp_path, source=shared / "ptb")
    assert not (tmp_path / "train.jsonl").exists()
    assert set(_corpus_json(tmp_path)["splits"]) == {"valid", "test"}


# ---------------------------------------------------------------------------------------- bad input


def _dailydialog(folder: Path, utts: str, acts: str, emotions: str) -> Path:
    _write(folder / "valid.utts.txt", utts)
    _write(folder / "valid.act.txt", acts)
    _write(folder / "valid.emotion.txt", emotions)
    return folder


def test_dailydialog_act_turn_mismatch_names_file_line_and_counts(tmp_path):
    src = _dailydialog(tmp_path / "dd", "Hi . __eou__ Hello . __eou__\nA . __eou__ B . __eou__ C . __eou__\n",
                       "1 1 \n1 2 \n", "0 0 \n0 0 0 \n")
    with pytest.raises(DataError) as err:
        corpora.prepare("dailydialog", tmp_path / "out", source=src)
    message = str(err.value)
    assert "valid.act.txt:2:" in message and "2 acts for 3 turns" in message and "\n" not in message


def test_dailydialog_emotion_mismatch_and_unknown_act(tmp_path):
    src = _dailydialog(tmp_path / "a", "Hi . __eou__ Hello . __eou__\n", "1 2 \n", "0 \n")
    with pytest.raises(DataError, match=r"valid\.emotion\.txt:1: 1 emotions for 2 turns"):
        corpora.prepare("dailydialog", tmp_path / "out", source=src)
    src = _dailydialog(tmp_path / "b", "Hi . __eou__ Hello . __eou__\n", "1 7 \n", "0 0 \n")
    with pytest.raises(DataError, match=r"valid\.act\.txt:1: unknown act '7'"):
        corpora.prepare("dailydialog", tmp_path / "out", source=src)


def test_dailydialog_missing_act_line(tmp_path):
    src = _dailydialog(tmp_path / "dd", "Hi . __eou__\nBye . __eou__\n", "1 \n", "0 \n0 \n")
    with pytest.raises(DataError, match=r"valid\.act\.txt: no acts for the dialogue on line 2"):
        corpora.prepare("dailydialog", tmp_path / "out", source=src)


def test_invalid_utf8_names_file_and_line(tmp_path):
    _write(tmp_path / "ptb" / "valid.txt", b"a fine line\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"valid\.txt:2: not valid UTF-8"):
        corpora.prepare("ptb", tmp_path / "out", source=tmp_path / "ptb")


def test_malformed_swda_jsonl_names_file_and_line(shared, tmp_path):
    good = (shared / "swda" / "valid.jsonl").read_text(encoding="utf-8").splitlines()[0]
    _write(tmp_path / "swda" / "valid.jsonl", good + "\n" + good[:-40] + "\n")
    with pytest.raises(DataError, match=r"valid\.jsonl:2: malformed JSON"):
        corpora.prepare("switchboard", tmp_path / "out", source=tmp_path / "swda")


def test_swda_wrong_shape_is_an_error(tmp_path):
    _write(tmp_path / "swda" / "valid.jsonl", json.dumps({"utts": [["A", "hello", "statement"]]}) + "\n")
    with pytest.raises(DataError, match=r"valid\.jsonl:1: utterance 0: features must be"):
        corpora.prepare("switchboard", tmp_path / "out", source=tmp_path / "swda")


def test_swda_keeps_unknown_fields_and_drops_empty_turns_with_their_sentiment(tmp_path):
    line = {"A": {"age": 30}, "B": {"age": " 40"}, "topic": " \"PETS\"", "prompt": "p", "conversation_no": 7,
            "utts": [["A", "hi", ["greeting", [0, 1, 0, 0]]], ["B", "  ", ["other", [1, 0, 0, 0]]],
                     ["B", "yes", ["yes_answers", [0, 0, 1, 0.5]]]]}
    _write(tmp_path / "swda" / "test.jsonl", json.dumps(line) + "\n")
    with pytest.warns(DataWarning, match="skipped 1 empty utterance"):
        corpora.prepare("switchboard", tmp_path / "out", source=tmp_path / "swda")
    (d,) = _read(tmp_path / "out", "test", "dialogues")
    assert [t.text for t in d.turns] == ["hi", "yes"]
    assert d.meta["turn_sentiment"] == [[0, 1, 0, 0], [0, 0, 1, 0.5]]
    assert d.meta["conversation_no"] == 7 and d.meta["callers"]["B"]["age"] == 40 and d.topic == "PETS"
    assert switchboard.clean(' "SOUTH MIDLAND"') == "SOUTH MIDLAND" and switchboard.clean(" 2") == 2


def test_short_yelp_line_without_label_is_an_error(tmp_path):
    _write(tmp_path / "sy" / "valid.txt", "1\tgood .\nno label here\n")
    with pytest.raises(DataError, match=r"valid\.txt:2: expected 'LABEL<TAB>sentence'"):
        corpora.prepare("short_yelp", tmp_path / "out", source=tmp_path / "sy")


def test_missing_source_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        corpora.prepare("ptb", tmp_path / "out", source=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"none of the ptb files found \(expected e\.g\. ptb\.train\.txt"):
        corpora.prepare("ptb", tmp_path / "out", source=tmp_path / "empty")
    _write(tmp_path / "half" / "valid.txt", "only the valid file\n")
    with pytest.raises(DataError, match=r"missing the valid file of ptb-lite \(looked for test\.txt"):
        corpora.prepare("ptb-lite", tmp_path / "out", source=tmp_path / "half")


def test_unknown_name_lists_every_corpus():
    with pytest.raises(DataError) as err:
        corpora.prepare("penn", "unused")
    assert all(name in str(err.value) for name in corpora.CORPORA)


def test_options_a_corpus_does_not_use_are_errors(tmp_path):
    with pytest.raises(DataError, match="ptb-lite takes no --size"):
        corpora.prepare("ptb-lite", tmp_path, size=10)
    with pytest.raises(DataError, match="synthetic-sentences takes no --cache-dir"):
        corpora.prepare("synthetic-sentences", tmp_path, cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------- CLI


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("textvae-corpus: warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("textvae-corpus: error: ")
    return lines[0]


def _fails(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return _error_line(capsys)


def test_cli_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, corpus in corpora.CORPORA.items():
        assert any(line.startswith(name + " ") and corpus.kind in line for line in out.splitlines())


def test_cli_prepare_prints_a_summary(shared, tmp_path, capsys):
    assert main(["prepare", "dailydialog-lite", "--out", str(tmp_path), "--source", str(shared / "dailydialog")]) == 0
    out = capsys.readouterr().out
    assert "train.jsonl  1,000 dialogues, 8,069 turns" in out and "corpus.json" in out
    assert _corpus_json(tmp_path)["name"] == "dailydialog-lite"


def test_cli_help(capsys):
    for argv in (["--help"], ["prepare", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--source" in out and "--cache-dir" in out and "ptb-lite" in out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert "unknown corpus 'penn'; available: ptb," in _fails(capsys, ["prepare", "penn", "--out", str(tmp_path)])
    line = _fails(capsys, ["prepare", "ptb", "--out", str(tmp_path / "o"), "--source", str(tmp_path / "nowhere")])
    assert "no such file or folder" in line

    src = _dailydialog(tmp_path / "dd", "Hi . __eou__ Hello . __eou__\n", "1 \n", "0 0 \n")
    line = _fails(capsys, ["prepare", "dailydialog", "--out", str(tmp_path / "o"), "--source", str(src)])
    assert "valid.act.txt:1: 1 acts for 2 turns" in line

    _write(tmp_path / "bad" / "valid.txt", b"\xfe\n")
    line = _fails(capsys, ["prepare", "ptb", "--out", str(tmp_path / "o"), "--source", str(tmp_path / "bad")])
    assert "valid.txt:1: not valid UTF-8" in line

    _write(tmp_path / "swda" / "valid.jsonl", "{not json\n")
    line = _fails(capsys, ["prepare", "switchboard", "--out", str(tmp_path / "o"), "--source", str(tmp_path / "swda")])
    assert "valid.jsonl:1: malformed JSON" in line

    _write(tmp_path / "file", "x")
    for split in ("valid", "test"):  # a well-formed source, so the error is about --out
        _write(tmp_path / "ptb" / f"{split}.txt", "a b c\n")
    line = _fails(capsys, ["prepare", "ptb-lite", "--out", str(tmp_path / "file"), "--source", str(tmp_path / "ptb")])
    assert "is not a folder" in line

    with pytest.raises(SystemExit) as exit_:  # argparse's own errors end the same way
        main(["prepare", "ptb"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("textvae-corpus: error: ")


def test_cli_warnings_are_one_line_each(tmp_path, capsys):
    _write(tmp_path / "ptb" / "valid.txt", "one\n\n  \ntwo\n")
    assert main(["prepare", "ptb", "--out", str(tmp_path / "o"), "--source", str(tmp_path / "ptb")]) == 0
    err = capsys.readouterr().err
    assert err.strip().startswith("textvae-corpus: warning: ") and "skipped 2 empty lines" in err
    assert len(err.strip().splitlines()) == 1


def test_console_script(shared, tmp_path):
    script = shutil.which("textvae-corpus", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("textvae-corpus is not installed in this environment (pip install -e .)")
    done = subprocess.run([script, "prepare", "ptb-lite", "--out", str(tmp_path / "p"), "--source", str(shared)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "train.jsonl  3,370 sentences" in done.stdout
    failed = subprocess.run([script, "prepare", "nope", "--out", str(tmp_path / "n")], capture_output=True,
                            text=True, timeout=60)
    assert failed.returncode == 2
    assert failed.stderr.strip().startswith("textvae-corpus: error: unknown corpus 'nope'")
    assert len(failed.stderr.strip().splitlines()) == 1 and "Traceback" not in failed.stderr


# ---------------------------------------------------------------------------------------- synthetic


def _has(function: str) -> bool:
    try:
        from textvae.data import synthetic
    except ImportError:
        return False
    return hasattr(synthetic, function)


@pytest.mark.skipif(not _has("generate_sentences"), reason="textvae.data.synthetic.generate_sentences not there yet")
def test_synthetic_sentences(tmp_path):
    summary = corpora.prepare("synthetic-sentences", tmp_path / "a", size=50, seed=1)
    assert (summary["kind"], summary["splits"]) == ("sentences", {"train": 50, "valid": 5, "test": 5})
    assert len(set(summary["seeds"].values())) == 3
    corpora.prepare("synthetic-sentences", tmp_path / "b", size=50, seed=1)
    corpora.prepare("synthetic-sentences", tmp_path / "c", size=50, seed=2)
    train = (tmp_path / "a" / "train.jsonl").read_bytes()
    assert train == (tmp_path / "b" / "train.jsonl").read_bytes()  # same arguments, same corpus
    assert train != (tmp_path / "c" / "train.jsonl").read_bytes()
    assert len(_read(tmp_path / "a", "valid", "sentences")) == 5


@pytest.mark.skipif(not _has("generate_dialogues"), reason="textvae.data.synthetic.generate_dialogues not there yet")
def test_synthetic_dialogues(tmp_path, capsys):
    assert main(["prepare", "synthetic-dialogues", "--out", str(tmp_path / "a"), "--size", "20", "--seed", "3"]) == 0
    summary = _corpus_json(tmp_path / "a")
    assert (summary["kind"], summary["splits"]) == ("dialogues", {"train": 20, "valid": 2, "test": 2})
    assert len(_read(tmp_path / "a", "train", "dialogues")) == 20
    corpora.prepare("synthetic-dialogues", tmp_path / "b", size=20, seed=3)
    assert (tmp_path / "a" / "test.jsonl").read_bytes() == (tmp_path / "b" / "test.jsonl").read_bytes()


def test_synthetic_rejects_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="--size must be at least 10"):
        corpora.prepare("synthetic-sentences", tmp_path, size=5)
    with pytest.raises(DataError, match="reads no --source"):
        corpora.prepare("synthetic-dialogues", tmp_path, source=tmp_path)


def test_lite_sources_are_the_corpus_files():
    """The lite entries download exactly the files their shared copies came from."""
    assert [s.filename for s in lite.DAILYDIALOG_LITE_SOURCES] == [
        f"{split}.{part}.txt" for split in ("valid", "test") for part in ("utts", "act", "emotion")]
    assert all(s.url.startswith("https://raw.githubusercontent.com/") for c in corpora.CORPORA.values()
               if c.name.endswith("-lite") or c.name in ("yelp10k", "swda-valid") for s in c.sources)
    assert dailydialog.split_turns("a __eou__ b __eou__ ") == ["a", "b"]
