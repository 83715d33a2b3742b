"""Latent arithmetic (textvae.latent's attribute vectors, analogies and nearest codes) and textvae-latent: the
numbers against hand computations on a tiny exported VAE, the printed tables, and every user mistake ending in
one line "textvae-latent: error: ..." with exit code 2."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from test_evaluation import Exports, build_exports

from textvae.data.tokenizers import train_tokenizer
from textvae.decoding import Decoding
from textvae.export import load_export, save_export
from textvae.latent import (
    add_attribute,
    analogy,
    attribute_vector,
    decode_texts,
    encode_texts,
    nearest,
    shift_codes,
)
from textvae.models import SentenceVAE
from textvae.priors import ConditionalGaussianPrior
from tools import latent as latent_tool

A, B, C = "they did not approve their treatment .", "will she upgrade a reliable phone ?", "we will enter a superb semifinal ."


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Tiny tensors gain nothing from a second thread (conftest's one_thread, for every test here)."""


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Exports:
    return build_exports(tmp_path_factory.mktemp("latent"))


@pytest.fixture(scope="module")
def vae(exports):
    return load_export(exports.vae)


@pytest.fixture(scope="module")
def records(exports) -> list[dict]:
    return [json.loads(line) for line in exports.data.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def files(exports, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("latent-inputs")
    out = {}
    out["text"] = root / "sentences.txt"
    out["text"].write_text(f"{A}\n{B}\nthe zzqx was blorp .\n", encoding="utf-8")
    out["latin1"] = root / "latin1.jsonl"
    out["latin1"].write_bytes(json.dumps({"text": "caf\xe9 .", "label": "x"}, ensure_ascii=False).encode("latin-1"))
    out["empty"] = root / "empty.txt"
    out["empty"].write_text("\n\n", encoding="utf-8")
    out["unlabelled"] = root / "unlabelled.txt"
    out["unlabelled"].write_text(f"{A}\n{B}\n", encoding="utf-8")
    out["only_abc"] = root / "only_abc.txt"
    out["only_abc"].write_text(f"{A}\n{B}\n{C}\n", encoding="utf-8")
    out["dialogue_export"] = root / "dialogue_export"
    shutil.copytree(exports.vae, out["dialogue_export"])
    config = json.loads((out["dialogue_export"] / "config.json").read_text(encoding="utf-8"))
    config["kind"] = "dialogues"
    (out["dialogue_export"] / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


# -------------------------------------------------------------------------------------------- library


def test_attribute_vector_is_the_difference_of_the_label_means(vae, records):
    texts = [r["text"] for r in records]
    forms = [r["attributes"]["form"] for r in records]
    built = attribute_vector(vae.model, vae.tokenizer, texts, forms, "statement", "question")
    codes = encode_texts(vae.model, vae.tokenizer, texts).mu.tolist()  # every text, read by the test itself
    questions = [code for code, form in zip(codes, forms, strict=True) if form == "question"]
    statements = [code for code, form in zip(codes, forms, strict=True) if form == "statement"]
    by_hand = [sum(q[k] for q in questions) / len(questions) - sum(s[k] for s in statements) / len(statements)
               for k in range(len(codes[0]))]
    assert built.vector.tolist() == pytest.approx(by_hand, abs=1e-5)
    assert (built.target, built.source) == (forms.count("question"), forms.count("statement"))
    norms = [math.sqrt(sum(x * x for x in code)) for code in questions + statements]
    assert built.code_norm == pytest.approx(sum(norms) / len(norms), abs=1e-5)
    assert float(built.vector.norm()) > 0.01  # the fixture's latent tells questions from statements


def test_attribute_vector_refuses_an_absent_or_repeated_label(vae):
    with pytest.raises(ValueError, match=r"no text is labelled 'poem'; labels present: a \(2\), b \(1\)"):
        attribute_vector(vae.model, vae.tokenizer, [A, B, C], ["a", "b", "a"], "a", "poem")
    with pytest.raises(ValueError, match="two different labels"):
        attribute_vector(vae.model, vae.tokenizer, [A, B], ["a", "b"], "a", "a")


def test_shift_codes_by_hand():
    z = torch.tensor([[1.0, 2.0], [0.0, -1.0]])  # (N=2, Z=2)
    v = torch.tensor([0.5, -1.0])
    shifted = shift_codes(z, v, [0.0, 2.0, -1.0])
    assert shifted.shape == (2, 3, 2)
    assert shifted.tolist() == [[[1.0, 2.0], [2.0, 0.0], [0.5, 3.0]],
                                [[0.0, -1.0], [1.0, -3.0], [-0.5, 0.0]]]


def test_scale_zero_decodes_the_sentence_own_code(vae):
    texts = [A, B, C]
    v = torch.linspace(-1.0, 1.0, vae.model.latent_dim)  # (Z,)
    edit = add_attribute(vae.model, vae.tokenizer, texts, v, [0.0, 3.0])
    mu = encode_texts(vae.model, vae.tokenizer, texts).mu  # (3, Z)
    assert [row[0] for row in edit.decoded] == decode_texts(vae.model, vae.tokenizer, mu)
    assert [row[1] for row in edit.decoded] == decode_texts(vae.model, vae.tokenizer, mu + 3.0 * v)
    assert edit.tokens == sum(len(t.split()) for t in texts) and edit.unknown == 0


def test_analogy_point_is_c_plus_b_minus_a(vae):
    z_a, z_b, z_c = (encode_texts(vae.model, vae.tokenizer, [text]).mu[0] for text in (A, B, C))  # each alone
    for scale in (1.0, 2.5):
        answer = analogy(vae.model, vae.tokenizer, A, B, C, scale=scale)
        expected = [c + scale * (b - a) for a, b, c in zip(z_a.tolist(), z_b.tolist(), z_c.tolist(), strict=True)]
        assert answer.z.tolist() == pytest.approx(expected, abs=1e-5)
        assert [answer.decoded] == decode_texts(vae.model, vae.tokenizer, answer.z[None])


def test_a_labelled_model_keeps_each_sentence_label(tmp_path, capsys):
    """A CVAE / M2 SentenceVAE decodes every shifted point for its sentence's own label (its classifier's),
    and the analogy's answer for c's."""
    tokenizer = train_tokenizer([A, B, C], kind="word")
    torch.manual_seed(2)  # a classifier that reads label 1, whose decodings differ from label 0's
    model = SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=3, num_labels=2,
                        classifier_weight=1.0, prior=ConditionalGaussianPrior).eval()
    short = Decoding("greedy", max_len=6, allow_unk=True)
    v = torch.tensor([0.5, -1.0, 2.0])
    edit = add_attribute(model, tokenizer, [A, B], v, [0.0, 1.0], decoding=short)
    answer = analogy(model, tokenizer, A, B, C, decoding=short)
    with torch.inference_mode():  # encode_texts' labels are inference tensors: the label embedding takes them here
        encoded = encode_texts(model, tokenizer, [A, B, C])
        assert encoded.labels.tolist() == [1, 1, 1]
        zeros = torch.zeros(2, dtype=torch.long)
        assert decode_texts(model, tokenizer, encoded.mu[:2], short, labels=zeros) != [row[0] for row in edit.decoded]
        for k, s in enumerate((0.0, 1.0)):
            expected = decode_texts(model, tokenizer, encoded.mu[:2] + s * v, short, labels=encoded.labels[:2])
            assert [row[k] for row in edit.decoded] == expected
        assert [answer.decoded] == decode_texts(model, tokenizer, answer.z[None], short, labels=encoded.labels[2:])
    save_export(tmp_path / "export", model, tokenizer, kind="sentences", labels=["negative", "positive"])
    assert latent_tool.main(["analogy", "--model", str(tmp_path / "export"), "--a", A, "--b", B, "--c", C,
                             "--max-len", "6", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.splitlines()[3] == f"d  {answer.decoded}"


def test_nearest_by_cosine_by_hand():
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z = torch.tensor([1.0, 0.9])  # |z| = sqrt(1.81)
    found = nearest(codes, z)
    assert found.index == 2 and found.cosine == pytest.approx(1.9 / math.sqrt(2 * 1.81), abs=1e-6)
    found = nearest(codes, z, exclude=[2])
    assert found.index == 0 and found.cosine == pytest.approx(1 / math.sqrt(1.81), abs=1e-6)
    with pytest.raises(ValueError, match="no code left"):
        nearest(codes, z, exclude=[0, 1, 2])


# ------------------------------------------------------------------------------------------------ tool


def _tables(out: str) -> list[list[str]]:
    return [block.splitlines() for block in out.strip("\n").split("\n\n")]


def test_attribute_prints_a_table_per_sentence(exports, vae, records, capsys):
    assert latent_tool.main(["attribute", "--model", str(exports.vae), "--data", str(exports.data),
                             "--label-key", "attributes.form", "--from-label", "statement", "--to-label", "question",
                             A, C, "--scale", "0", "1.5", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    tables = _tables(captured.out)
    assert len(tables) == 2 and all(len(table) == 3 for table in tables)
    reconstructions = decode_texts(vae.model, vae.tokenizer, encode_texts(vae.model, vae.tokenizer, [A, C]).mu)
    for table, text, reconstruction in zip(tables, (A, C), reconstructions, strict=True):
        assert [line.split()[:2] for line in table] == [["0", "[input]"], ["1", "z+0v"], ["2", "z+1.5v"]]
        assert table[0].endswith(f"  {text}") and table[1].endswith(f"  {reconstruction}")
    forms = [r["attributes"]["form"] for r in records]
    err = captured.err.strip().splitlines()
    assert len(err) == 1
    assert (f"mean of {forms.count('question')} 'question' codes - mean of {forms.count('statement')} 'statement' "
            "codes (attributes.form)") in err[0]
    assert "|v| = " in err[0] and "a code's average norm" in err[0]


def test_attribute_reads_input_files_and_notes_unknown_words(exports, files, capsys):
    assert latent_tool.main(["attribute", "--model", str(exports.vae), "--data", str(exports.data),
                             "--label-key", "attributes.tense", "--from-label", "past", "--to-label", "future",
                             "--input", str(files["text"]), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    tables = _tables(captured.out)
    assert len(tables) == 3 and all(len(table) == 6 for table in tables)  # the input and the 5 default scales
    assert [line.split()[1] for line in tables[0]] == ["[input]", "z+0v", "z+0.5v", "z+1v", "z+1.5v", "z+2v"]
    assert tables[2][0].endswith("the zzqx was blorp .")
    assert "2 of 19 tokens of the given sentences are not in the model's vocabulary" in captured.err  # 7 + 7 + 5


def test_analogy_prints_the_answer_and_the_nearest_data_sentence(exports, vae, records, capsys):
    assert latent_tool.main(["analogy", "--model", str(exports.vae), "--a", A, "--b", B, "--c", C,
                             "--data", str(exports.data), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["a", "b", "c", "d", "nearest"]
    assert lines[0].endswith(A) and lines[1].endswith(B) and lines[2].endswith(C)
    z_a, z_b, z_c = encode_texts(vae.model, vae.tokenizer, [A, B, C]).mu
    z_d = z_c + z_b - z_a
    assert lines[3].endswith(decode_texts(vae.model, vae.tokenizer, z_d[None])[0])
    texts = [r["text"] for r in records]
    codes = encode_texts(vae.model, vae.tokenizer, texts).mu
    cosines = [float(code @ z_d / (code.norm() * z_d.norm())) if text not in (A, B, C) else -2.0
               for code, text in zip(codes, texts, strict=True)]
    best = max(range(len(texts)), key=cosines.__getitem__)
    assert lines[4] == f"nearest  {texts[best]}  (cosine {cosines[best]:.3f})"


def test_help_of_each_command(capsys):
    for argv in (["--help"], ["attribute", "--help"], ["analogy", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            latent_tool.main(argv)
        assert exit_info.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_ctrl_c_exits_130_with_one_line(exports, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(latent_tool, "add_attribute", interrupt)
    with pytest.raises(SystemExit) as exit_info:
        latent_tool.main(["attribute", "--model", str(exports.vae), "--data", str(exports.data),
                          "--label-key", "attributes.form", "--from-label", "statement", "--to-label", "question", A])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "textvae-latent: interrupted"


ATTRIBUTE = ["attribute", "--model", "{vae}", "--data", "{data}", "--label-key", "attributes.form"]
ERRORS = [
    # (argv with {placeholders}, words the error line must contain)
    ([*ATTRIBUTE, "--from-label", "statement", "--to-label", "poem", A],
     "--to-label 'poem': no sentence of {data} has attributes.form 'poem'; present: 'negation', 'question', "
     "'statement'"),
    ([*ATTRIBUTE, "--from-label", "poem", "--to-label", "question", A], "--from-label 'poem'"),
    ([*ATTRIBUTE, "--from-label", "question", "--to-label", "question", A], "two different labels"),
    (["attribute", "--model", "{vae}", "--data", "{data}", "--label-key", "attributes.mood", "--from-label", "a",
      "--to-label", "b", A], "has attributes.mood; available: attributes.form, attributes.length"),
    (["attribute", "--model", "{vae}", "--data", "{unlabelled}", "--from-label", "a", "--to-label", "b", A],
     "has label; available: none"),
    ([*ATTRIBUTE[:-1], "colour", "--from-label", "a", "--to-label", "b", A], "--label-key must be"),
    ([*ATTRIBUTE, "--from-label", "statement", "--to-label", "question"], "give the sentences to move"),
    ([*ATTRIBUTE, "--from-label", "statement", "--to-label", "question", A, "--input", "{text}"], "not both"),
    ([*ATTRIBUTE, "--from-label", "statement", "--to-label", "question", "--scale", "0", "1", A],
     "give the sentences before --scale"),
    ([*ATTRIBUTE, "--from-label", "statement", "--to-label", "question", A, "--scale", "1e9"], "--scale"),
    ([*ATTRIBUTE, "--from-label", "statement", "--to-label", "question", A, "--scale", "nan"], "--scale"),
    ([*ATTRIBUTE, "--from-label", "statement", "--to-label", "question", " "], "empty sentence"),
    ([*ATTRIBUTE, "--from-label", "statement", A], "--to-label"),
    (["attribute", "--model", "{vae}", "--data", "{missing}", "--from-label", "a", "--to-label", "b", A],
     "no such file"),
    (["attribute", "--model", "{vae}", "--data", "{latin1}", "--from-label", "a", "--to-label", "b", A], "UTF-8"),
    (["attribute", "--model", "{vae}", "--data", "{empty}", "--from-label", "a", "--to-label", "b", A],
     "no sentences"),
    ([*ATTRIBUTE, "--from-label", "statement", "--to-label", "question", "--input", "{empty}"], "no sentences"),
    (["attribute", "--model", "{lm}", "--data", "{data}", "--from-label", "a", "--to-label", "b", A], "no latent"),
    (["attribute", "--model", "{dialogue_export}", "--data", "{data}", "--from-label", "a", "--to-label", "b", A],
     "textvae-respond"),
    (["attribute", "--model", "{missing}", "--data", "{data}", "--from-label", "a", "--to-label", "b", A],
     "no config.json"),
    (["analogy", "--model", "{vae}", "--a", A, "--b", B], "--c"),
    (["analogy", "--model", "{vae}", "--a", A, "--b", B, "--c", ""], "empty sentence"),
    (["analogy", "--model", "{vae}", "--a", A, "--b", B, "--c", C, "--scale", "two"], "--scale"),
    (["analogy", "--model", "{lm}", "--a", A, "--b", B, "--c", C], "no latent"),
    (["analogy", "--model", "{dialogue_export}", "--a", A, "--b", B, "--c", C], "textvae-respond"),
    (["analogy", "--model", "{vae}", "--a", A, "--b", B, "--c", C, "--data", "{missing}"], "no such file"),
    (["analogy", "--model", "{vae}", "--a", A, "--b", B, "--c", C, "--data", "{only_abc}"], "only the sentences"),
    (["analogy", "--model", "{vae}", "--a", A, "--b", B, "--c", C, "--beam", "0"], "--beam"),
    (["interpolate", "--model", "{vae}"], "invalid choice"),
    ([], "the following arguments are required"),
]


@pytest.mark.parametrize(("argv", "expected"), ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_user_mistakes_end_in_one_line(argv, expected, exports, files, tmp_path, capsys):
    values = {"vae": exports.vae, "lm": exports.lm, "data": exports.data, "missing": tmp_path / "nope", **files}
    values = {k: str(v) for k, v in values.items()}
    with pytest.raises(SystemExit) as exit_info:
        latent_tool.main([arg.format(**values) for arg in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("textvae-latent: error: ") and expected.format(**values) in lines[0], lines[0]
    assert "Traceback" not in err
