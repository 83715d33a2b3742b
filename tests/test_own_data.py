"""Your own data: `textvae-corpus prepare text` / `prepare dialogues` turn a user's file (or folder of split
files) into a prepared corpus that textvae-train trains on, with the same validation as the named corpora."""

import json
import random
from pathlib import Path

import pytest

from textvae.data.records import Dialogue, Sentence, Turn, write_jsonl
from tools import corpus as corpus_tool
from tools import train

WORDS = "we you they the a an old new red blue car house city road river sky cat dog saw liked found near".split()


def own_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(n)]


def run(tool, args: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = tool.main(args) or 0
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_plain_text_file_becomes_a_corpus_that_the_quickstart_trains_on(tmp_path, capsys):
    lines = own_sentences(1000)
    text = "".join(f"{line}\n" + ("\n" if i % 250 == 0 else "") for i, line in enumerate(lines))  # 4 empty lines
    (tmp_path / "mine.txt").write_text(text, encoding="utf-8")
    code, out, err = run(corpus_tool, ["prepare", "text", "--source", str(tmp_path / "mine.txt"),
                                       "--out", str(tmp_path / "corpus")], capsys)
    assert code == 0, err
    assert "skipped 4 empty lines" in err
    splits = {split: [r["text"] for r in read(tmp_path / "corpus" / f"{split}.jsonl")] for split in ("train", "valid", "test")}
    assert (len(splits["train"]), len(splits["valid"]), len(splits["test"])) == (800, 100, 100)
    assert sorted(splits["train"] + splits["valid"] + splits["test"]) == sorted(lines)  # nothing lost or repeated
    kept = set(splits["valid"]) | set(splits["test"])
    assert splits["train"] == [line for line in lines if line not in kept]  # train keeps the file's order
    summary = json.loads((tmp_path / "corpus" / "corpus.json").read_text(encoding="utf-8"))
    assert summary["splits"] == {"train": 800, "valid": 100, "test": 100} and summary["kind"] == "sentences"

    corpus = tmp_path / "corpus"
    code, _, err = run(train, ["fit", "--config", "recipes/quickstart.yaml", "--data.train", str(corpus / "train.jsonl"),
                               "--data.valid", str(corpus / "valid.jsonl"), "--data.test", str(corpus / "test.jsonl"),
                               "--trainer.max_steps", "3", "--trainer.logger", "false",
                               "--trainer.enable_progress_bar", "false", "--trainer.enable_checkpointing", "false",
                               "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", str(tmp_path / "run"),
                               "--export", str(tmp_path / "export")], capsys)
    assert code == 0, err[-3000:]
    assert (tmp_path / "export" / "tokenizer.json").is_file() and any((tmp_path / "export").glob("*.safetensors"))


def test_a_folder_of_labelled_jsonl_splits_and_a_drawn_test_split(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [Sentence(t, label=i % 3) for i, t in enumerate(own_sentences(60))])
    write_jsonl(folder / "dev.jsonl", [Sentence(t, label="x") for t in own_sentences(7, seed=1)])
    code, _, err = run(corpus_tool, ["prepare", "text", "--source", str(folder), "--out", str(tmp_path / "c"),
                                     "--test-fraction", "0.25", "--seed", "3"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "c" / "corpus.json").read_text(encoding="utf-8"))
    assert summary["splits"] == {"train": 45, "valid": 7, "test": 15}
    assert summary["labels"] == [0, 1, 2, "x"]
    assert [r["label"] for r in read(tmp_path / "c" / "valid.jsonl")] == ["x"] * 7
    # the valid file is given: drawing a valid split from train as well is refused
    code, _, err = run(corpus_tool, ["prepare", "text", "--source", str(folder), "--out", str(tmp_path / "d"),
                                     "--valid-fraction", "0.2"], capsys)
    assert code == 2 and "gives a valid file" in err and "Traceback" not in err


def test_own_dialogues_are_validated_and_split(tmp_path, capsys):
    dialogues = [Dialogue(turns=(Turn("A", f"hello {i}", act="greet"), Turn("B", "hi there", act="greet")), topic="t")
                 for i in range(20)]
    write_jsonl(tmp_path / "d.jsonl", dialogues)
    code, _, err = run(corpus_tool, ["prepare", "dialogues", "--source", str(tmp_path / "d.jsonl"),
                                     "--out", str(tmp_path / "c")], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "c" / "corpus.json").read_text(encoding="utf-8"))
    assert summary["splits"] == {"train": 16, "valid": 2, "test": 2} and summary["acts"] == ["greet"]
    (tmp_path / "d.jsonl").write_text((tmp_path / "d.jsonl").read_text(encoding="utf-8") + '{"turns": [{"text": "x"}]}\n',
                                      encoding="utf-8")
    code, _, err = run(corpus_tool, ["prepare", "dialogues", "--source", str(tmp_path / "d.jsonl"),
                                     "--out", str(tmp_path / "c")], capsys)
    assert code == 2 and 'd.jsonl:21: turn 0 needs a non-empty string "speaker"' in err
    assert json.loads((tmp_path / "c" / "corpus.json").read_text(encoding="utf-8"))["splits"]["train"] == 16  # kept


@pytest.mark.parametrize("args, message", [
    (["prepare", "text", "--out", "OUT"], "give it with --source"),
    (["prepare", "text", "--source", "FEW", "--out", "OUT"], "cannot give"),
    (["prepare", "text", "--source", "FEW", "--out", "OUT", "--valid-fraction", "1.5"], "below 1"),
    (["prepare", "text", "--source", "MISSING", "--out", "OUT"], "no such file or folder"),
])
def test_own_data_mistakes_are_one_line(tmp_path, capsys, args, message):
    (tmp_path / "few.txt").write_text("one line\ntwo lines\n", encoding="utf-8")
    names = {"OUT": str(tmp_path / "out"), "FEW": str(tmp_path / "few.txt"), "MISSING": str(tmp_path / "missing")}
    code, _, err = run(corpus_tool, [names.get(a, a) for a in args], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("textvae-corpus: error:")]) == 1


def test_run_puts_logs_checkpoints_and_export_in_one_folder(tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "corpus"
    write_jsonl(corpus / "train.jsonl", [Sentence(t) for t in own_sentences(64)])
    recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml")
    monkeypatch.chdir(tmp_path)  # where the recipe's own runs/quickstart would be written
    code, out, err = run(train, ["fit", "--config", recipe, "--data.train", str(corpus / "train.jsonl"),
                                 "--data.valid", str(corpus / "train.jsonl"), "--data.test", str(corpus / "train.jsonl"),
                                 "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false",
                                 "--trainer.limit_val_batches", "1", "--run", str(tmp_path / "mine")], capsys)
    assert code == 0, err[-3000:]
    assert not (tmp_path / "runs").exists()  # nothing in the recipe's runs/quickstart
    assert list((tmp_path / "mine").glob("logs/version_*/metrics.csv"))  # the CSV logger
    assert list((tmp_path / "mine").glob("tensorboard/version_*/events.*"))  # the TensorBoard logger
    assert list((tmp_path / "mine").rglob("checkpoints/*.ckpt"))
    assert (tmp_path / "mine" / "export" / "tokenizer.json").is_file()


def test_a_long_preparation_shows_its_progress_on_a_terminal(tmp_path, capsys, monkeypatch):
    from tools import _cli

    monkeypatch.setattr(_cli, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(_cli.sys.stderr, "isatty", lambda: True, raising=False)
    (tmp_path / "mine.txt").write_text("".join(f"{line}\n" for line in own_sentences(25_000)), encoding="utf-8")
    code, _, err = run(corpus_tool, ["prepare", "text", "--source", str(tmp_path / "mine.txt"),
                                     "--out", str(tmp_path / "corpus")], capsys)
    assert code == 0, err
    assert "textvae-corpus: 10,000 of 25,000 records written (40%)" in err  # redrawn at most every 0.2 s
    assert err.endswith("\r\x1b[K")  # the line is erased when the work ends
