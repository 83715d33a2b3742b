"""textvae-eval, textvae-sample and textvae-homotopy: happy paths through main([...]), and every user mistake
ending in one line "textvae-X: error: ..." with exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_evaluation import Exports, build_exports

from tools import eval as eval_tool
from tools import homotopy as homotopy_tool
from tools import sample as sample_tool

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from a second thread, and OpenMP threads spinning on cores that other
    processes keep busy made these tests 15x slower (42 s instead of 2.6 s to build the exports)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Exports:
    return build_exports(tmp_path_factory.mktemp("tools"))


@pytest.fixture(scope="module")
def files(exports, tmp_path_factory) -> dict[str, Path]:
    """Extra inputs: plain sentences, bad and empty files, a corrupt and a dialogue export."""
    root = tmp_path_factory.mktemp("inputs")
    out = {}
    out["text"] = root / "sentences.txt"
    out["text"].write_text("they did not approve their treatment .\nthe zzqx was blorp .\n", encoding="utf-8")
    out["latin1"] = root / "latin1.txt"
    out["latin1"].write_bytes("caf\xe9 au lait .\n".encode("latin-1"))
    out["empty"] = root / "empty.txt"
    out["empty"].write_text("\n\n", encoding="utf-8")
    out["unknown_labels"] = root / "unknown_labels.jsonl"
    out["unknown_labels"].write_text(json.dumps({"text": "they did not approve .", "label": "gardening"}) + "\n"
                                     + json.dumps({"text": "i test a drone .", "label": "cooking"}) + "\n",
                                     encoding="utf-8")
    out["truncated_weights"] = root / "truncated_weights"
    shutil.copytree(exports.vae, out["truncated_weights"])
    weights = out["truncated_weights"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    out["garbage_config"] = root / "garbage_config"
    shutil.copytree(exports.vae, out["garbage_config"])
    (out["garbage_config"] / "config.json").write_text("{not json", encoding="utf-8")
    out["dialogue_export"] = root / "dialogue_export"
    shutil.copytree(exports.vae, out["dialogue_export"])
    config = json.loads((out["dialogue_export"] / "config.json").read_text(encoding="utf-8"))
    config["kind"] = "dialogues"
    (out["dialogue_export"] / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------------------- eval


def test_eval_prints_the_table_and_writes_json(exports, tmp_path, capsys):
    out = tmp_path / "results" / "eval.json"
    eval_tool.main(["--model", str(exports.vae), "--data", str(exports.data), "--samples", "10",
                    "--max-sentences", "40", "--prior-samples", "10", "--json", str(out)])
    stdout = capsys.readouterr().out
    for row in ("IW-NLL (K=10)", "PPL", "ELBO", "KL", "MI", "active units", "recon BLEU", "self-BLEU"):
        assert row in stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["sentences"] == 40 and data["samples"] == 10 and data["prior"]["n"] == 10
    assert data["iw_nll"] > 0 and 0 <= data["active_units"] <= 4


def test_eval_language_model_and_labels_the_model_never_saw(exports, files, capsys):
    eval_tool.main(["--model", str(exports.lm), "--data", str(files["unknown_labels"]), "--prior-samples", "0"])
    stdout = capsys.readouterr().out
    assert "NLL (exact)" in stdout and "sentences" in stdout and "self-BLEU" not in stdout


# ----------------------------------------------------------------------------------------------- sample


def test_sample_prints_n_prior_samples(exports, capsys):
    for model in (exports.vae, exports.lm):
        sample_tool.main(["--model", str(model), "-n", "4", "--decode", "sample", "--top-p", "0.9", "--seed", "1"])
        assert len(capsys.readouterr().out.splitlines()) == 4
    sample_tool.main(["--model", str(exports.vae), "-n", "3", "--decode", "beam", "--beam", "2"])
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_sample_is_reproducible_with_a_seed(exports, capsys):
    runs = []
    for _ in range(2):
        sample_tool.main(["--model", str(exports.vae), "-n", "5", "--seed", "7"])
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1]


def test_reconstruct_text_and_jsonl(exports, files, capsys):
    sample_tool.main(["--model", str(exports.vae), "--reconstruct", str(files["text"])])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2 and all(line.count("\t") == 1 for line in lines)
    assert lines[1].split("\t")[0] == "the zzqx was blorp ."
    assert "2 of 12 tokens are not in the model's vocabulary" in captured.err
    sample_tool.main(["--model", str(exports.vae), "--reconstruct", str(exports.data), "-n", "3"])
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_plot_writes_a_png(exports, tmp_path, capsys):
    out = tmp_path / "plots" / "latent.png"
    sample_tool.main(["--model", str(exports.vae), "--plot", str(out), "--data", str(exports.data),
                      "--label-key", "attributes.topic", "-n", "80"])
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert "80 sentences" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- homotopy


def test_homotopy_prints_the_path_with_the_given_ends(exports, capsys):
    start, end = "they did not approve their treatment .", "will she upgrade a reliable phone ?"
    homotopy_tool.main(["--model", str(exports.vae), "--from", start, "--to", end, "--steps", "4"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 + 2
    assert lines[0].startswith("0") and "[from]" in lines[0] and lines[0].endswith(start)
    assert lines[-1].startswith("5") and "[to]" in lines[-1] and lines[-1].endswith(end)
    assert [line.split()[0] for line in lines] == [str(i) for i in range(6)]


def test_homotopy_between_prior_draws(exports, capsys):
    homotopy_tool.main(["--model", str(exports.vae), "--from-prior", "--to-prior", "--steps", "2",
                        "--method", "slerp", "--decode", "sample", "--seed", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "(prior draw)" in lines[0] and "(prior draw)" in lines[-1]


# ------------------------------------------------------------------------------------------- --help


@pytest.mark.parametrize("tool", [eval_tool, sample_tool, homotopy_tool])
def test_help(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- errors

ERRORS = [
    # (tool, argv with {placeholders}, words the error line must contain)
    (eval_tool, ["--model", "{missing_dir}", "--data", "{data}"], "no config.json"),
    (eval_tool, ["--model", "{truncated_weights}", "--data", "{data}"], "weights"),
    (eval_tool, ["--model", "{garbage_config}", "--data", "{data}"], "corrupt config"),
    (eval_tool, ["--model", "{dialogue_export}", "--data", "{data}"], "does not offer response_condition"),
    (eval_tool, ["--model", "{vae}", "--data", "{missing_file}"], "no such file"),
    (eval_tool, ["--model", "{vae}", "--data", "{latin1}"], "UTF-8"),
    (eval_tool, ["--model", "{vae}", "--data", "{empty}"], "empty"),
    (eval_tool, ["--model", "{vae}", "--data", "{data}", "--samples", "0"], "--samples"),
    (eval_tool, ["--model", "{vae}", "--data", "{data}", "--prior-samples", "1"], "--prior-samples"),
    (eval_tool, ["--model", "{vae}"], "--data"),
    (sample_tool, ["--model", "{missing_dir}"], "no config.json"),
    (sample_tool, ["--model", "{truncated_weights}"], "weights"),
    (sample_tool, ["--model", "{vae}", "-n", "0"], "-n"),
    (sample_tool, ["--model", "{vae}", "-n", "-3"], "-n"),
    (sample_tool, ["--model", "{vae}", "--top-p", "0"], "--top-p"),
    (sample_tool, ["--model", "{vae}", "--top-p", "1.5"], "--top-p"),
    (sample_tool, ["--model", "{vae}", "--top-p", "nan"], "--top-p"),
    (sample_tool, ["--model", "{vae}", "--temperature", "0"], "--temperature"),
    (sample_tool, ["--model", "{vae}", "--top-k", "-1"], "--top-k"),
    (sample_tool, ["--model", "{lm}", "--reconstruct", "{text}"], "no latent"),
    (sample_tool, ["--model", "{lm}", "--plot", "{out_png}", "--data", "{data}"], "no latent"),
    (sample_tool, ["--model", "{vae}", "--reconstruct", "{missing_file}"], "no such file"),
    (sample_tool, ["--model", "{vae}", "--reconstruct", "{latin1}"], "UTF-8"),
    (sample_tool, ["--model", "{vae}", "--reconstruct", "{empty}"], "no sentences"),
    (sample_tool, ["--model", "{vae}", "--plot", "{out_png}"], "--data"),
    (sample_tool, ["--model", "{vae}", "--plot", "{out_png}", "--data", "{data}", "--label-key", "colour"],
     "--label-key"),
    (sample_tool, ["--model", "{vae}", "--plot", "{out_png}", "--data", "{data}", "--label-key", "attributes.x"],
     "available: attributes.form"),
    (sample_tool, ["--model", "{dialogue_export}"], "textvae-respond"),
    (homotopy_tool, ["--model", "{lm}", "--from", "a b", "--to", "c d"], "no latent"),
    (homotopy_tool, ["--model", "{vae}", "--from", "a b", "--to", "c d", "--steps", "0"], "--steps"),
    (homotopy_tool, ["--model", "{vae}", "--from", "  ", "--to", "c d"], "empty sentence"),
    (homotopy_tool, ["--model", "{vae}", "--from", "a b"], "--to"),
    (homotopy_tool, ["--model", "{vae}", "--from", "a", "--from-prior", "--to", "b"], "not allowed"),
    (homotopy_tool, ["--model", "{garbage_config}", "--from-prior", "--to-prior"], "corrupt config"),
]


@pytest.mark.parametrize(("tool", "argv", "expected"), ERRORS,
                         ids=[f"{t.__name__.split('.')[-1]}-{i}" for i, (t, _, _) in enumerate(ERRORS)])
def test_user_mistakes_end_in_one_line(tool, argv, expected, exports, files, tmp_path, capsys):
    values = {"vae": exports.vae, "lm": exports.lm, "data": exports.data, "missing_dir": tmp_path / "nope",
              "missing_file": tmp_path / "nope.jsonl", "out_png": tmp_path / "out.png", **files}
    with pytest.raises(SystemExit) as exit_info:
        tool.main([arg.format(**{k: str(v) for k, v in values.items()}) for arg in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    prog = tool.PROG
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------- eval on dialogues


def test_eval_dialogue_model_prints_zhao_et_al_metrics(dialogue_exports, tmp_path, capsys):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("i 1 0 0\nthe 0 1 0\ntrain 0 0 1\n. 1 1 0\n", encoding="utf-8")
    out = tmp_path / "eval.json"
    eval_tool.main(["--model", str(dialogue_exports.kgcvae), "--data", str(dialogue_exports.data), "--responses", "3",
                    "--max-sentences", "12", "--embeddings", str(vectors), "--max-len", "15", "--json", str(out)])
    stdout = capsys.readouterr().out
    for row in ("upper bound: -ELBO", "KL", "PPL", "BLEU-1..4 recall", "BLEU-1..4 precision", "BLEU-1..4 F1",
                "distinct-1 / -2 within", "act accuracy", "embedding extrema", "greedy per sampled z"):
        assert row in stdout, row
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["contexts"] == 12 and data["responses"] == 3 and data["acts_scored"] == 36
    assert len(data["bleu_f1"]) == 4 and 0 < data["embedding"]["coverage"] < 1


def test_eval_hred_samples_and_decoding_flags(dialogue_exports, capsys):
    eval_tool.main(["--model", str(dialogue_exports.hred), "--data", str(dialogue_exports.data), "--responses", "2",
                    "--max-sentences", "5", "--top-p", "0.9", "--max-len", "10"])
    stdout = capsys.readouterr().out
    assert "NLL" in stdout and "(exact)" in stdout and "2 per context, sample" in stdout
    eval_tool.main(["--model", str(dialogue_exports.cvae), "--data", str(dialogue_exports.data), "--no-bleu",
                    "--max-sentences", "5"])
    stdout = capsys.readouterr().out
    assert "KL" in stdout and "BLEU" not in stdout


def test_eval_reads_the_context_length_of_the_export(dialogue_exports, tmp_path, capsys):
    """The kgCVAE was trained with data.max_context 3: the default, unlike --max-context 1."""
    results = {}
    for given in ([], ["--max-context", "3"], ["--max-context", "1"]):
        out = tmp_path / f"eval{len(given)}{given[-1] if given else ''}.json"
        eval_tool.main(["--model", str(dialogue_exports.kgcvae), "--data", str(dialogue_exports.data), "--no-bleu",
                        "--max-sentences", "12", "--json", str(out), *given])
        results[" ".join(given)] = json.loads(out.read_text(encoding="utf-8"))["nll"]
    capsys.readouterr()
    assert results[""] == results["--max-context 3"] != results["--max-context 1"]


DIALOGUE_ERRORS = [
    (["--model", "{hred}", "--data", "{sentences}"], "holds sentences but"),
    (["--model", "{vae}", "--data", "{data}"], "holds dialogues but"),
    (["--model", "{hred}", "--data", "{data}", "--samples", "5"], "--samples applies to sentence models"),
    (["--model", "{vae}", "--data", "{sentences}", "--responses", "5"], "--responses applies to dialogue models"),
    (["--model", "{vae}", "--data", "{sentences}", "--allow-unk"], "--allow-unk applies to dialogue models"),
    (["--model", "{vae}", "--data", "{sentences}", "--prior-scale", "2"], "--prior-scale applies to dialogue models"),
    (["--model", "{hred}", "--data", "{data}", "--embeddings", "{latin1}"], "word2vec/GloVe text format"),
    (["--model", "{hred}", "--data", "{data}", "--embeddings", "{foreign}"], "none of the model's words has a vector"),
    (["--model", "{hred}", "--data", "{data}", "--embeddings", "{missing}"], "no such file"),
    (["--model", "{hred}", "--data", "{data}", "--beam", "3", "--temperature", "0.5"], "give one"),
    (["--model", "{hred}", "--data", "{data}", "--decode", "greedy", "--top-k", "5"], "applies to sampling"),
]


@pytest.mark.parametrize(("argv", "expected"), DIALOGUE_ERRORS)
def test_eval_dialogue_mistakes_end_in_one_line(argv, expected, dialogue_exports, exports, files, tmp_path, capsys):
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("zug 1 0\nbahnhof 0 1\n", encoding="utf-8")
    values = {"hred": dialogue_exports.hred, "data": dialogue_exports.data, "sentences": exports.data, "foreign": foreign,
              "vae": exports.vae, "latin1": files["latin1"], "text": files["text"], "missing": tmp_path / "nope.txt"}
    with pytest.raises(SystemExit) as exit_info:
        eval_tool.main([arg.format(**{k: str(v) for k, v in values.items()}) for arg in argv])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("textvae-eval: error: ") and expected in lines[0], lines
