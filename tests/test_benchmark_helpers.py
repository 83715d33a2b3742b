"""What the benchmark rows rely on: a wider prior at generation (dailydialog-lite's --prior-scales) is a
decoding option, Decoding.prior_scale, that generate_responses passes to the model; the step count of
step_flops; and the scripts' --seeds N (tiny exports, every seed evaluated, mean ± sd, speeds of seed 0)."""

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest
import torch
from dialogue_exports import MODELS, _config
from test_dialogue_models import batch, build, data  # noqa: F401 (fixtures)

from textvae.classifier import save_classifier, train_classifier
from textvae.data.records import Sentence, write_jsonl
from textvae.data.synthetic import generate_dialogues, generate_sentences
from textvae.data.tokenizers import WordTokenizer
from textvae.decoding import Decoding
from textvae.dialogue import generate_responses
from textvae.export import save_export
from textvae.models import LanguageModel, SentenceVAE
from tools import act_tagger as act_tagger_tool
from tools import train as train_tool

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("name", ["vhred", "kgcvae"])
def test_prior_scale_widens_the_prior_that_z_is_drawn_from(name, data, batch, monkeypatch):  # noqa: F811
    model = build(name, data).eval()
    drawn = []
    response_condition = model.response_condition

    def recording(*args, **kwargs):
        condition = response_condition(*args, **kwargs)
        drawn.append(condition.z)
        return condition

    monkeypatch.setattr(model, "response_condition", recording)
    scale, n = 3.0, 2
    generate_responses(model, batch, num_samples=n, decoding=Decoding("greedy", max_len=4, prior_scale=scale),
                       generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        c = model.encode_context(batch)  # (B, C)
        prior = model.prior(c, c.shape[0])  # p(z | c)
        mu_p, logvar_p = prior.mu, prior.logvar  # (B, Z) x2
        eps = torch.randn((n, *mu_p.shape), generator=torch.Generator().manual_seed(2))  # (N, B, Z): the same noise
        z = (mu_p + scale * torch.exp(0.5 * logvar_p) * eps).flatten(0, 1)  # (N * B, Z), sample-major
    torch.testing.assert_close(drawn[0], z)


def load_step_flops():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "step_flops.py"
    spec = importlib.util.spec_from_file_location("step_flops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_flops_counts_every_linear_map_by_hand():
    """vocab 10, embedding 2, hidden 3, z 1; 5 encoder tokens, 4 decoder positions, one sentence."""
    count = load_step_flops().rnn_vae_flops
    size = dict(encoder_tokens=5, decoder_tokens=4, sentences=1, vocab_size=10, embed_dim=2, hidden_dim=3, latent_dim=1)
    # LSTM: encoder gates 2*(2+3)*12 per token; mu and logvar 2*3*1 each; decoder gates 2*(2+1+3)*12 and the output
    # layer 2*3*10 per position; z to (h_0, c_0) 2*1*6
    encoder, heads, decoder, initial = 5 * 120, 2 * 6, 4 * (144 + 60), 12
    assert count(**size) == encoder + heads + decoder + initial == 1440
    assert count(**size, training=True) == 3 * 1440
    assert count(**size, samples=2) == encoder + heads + 2 * (decoder + initial)
    # GRU, z at the initial state only: gates 2*(2+3)*9 (encoder and decoder), z to h_0 2*1*3
    assert count(**size, cell="gru", z_to_every_input=False) == 5 * 90 + 12 + 4 * (90 + 60) + 6


def test_step_flops_plain_reference_vae_by_hand(tmp_path):
    """The plain-PyTorch yardstick's loss: with the posterior heads and the output layer at zero, q is N(0, I)
    (KL 0) and every target costs log V, PAD excluded; and its SGD steps learn on a tiny corpus."""
    import math

    from textvae.data.batching import SentenceExample, collate_sentences
    from textvae.lightning import TextDataModule

    step_flops = load_step_flops()
    model = step_flops.PlainLSTMVAE(vocab_size=11, embed_dim=4, hidden_dim=5, latent_dim=2)
    for layer in (model.posterior, model.output):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    two = collate_sentences([SentenceExample([5, 6, 7], None, 0), SentenceExample([8], None, 1)])
    targets = 4 + 2  # words + EOS of the two sentences, not the PAD positions
    assert float(model(two.tokens, two.lengths)) == pytest.approx(targets * math.log(11) / 2, rel=1e-6)

    write_jsonl(tmp_path / "train.jsonl", generate_sentences(256, seed=0))
    module = TextDataModule(train=str(tmp_path / "train.jsonl"), batch_size=16, cache_dir=str(tmp_path / "cache"))
    size = dict(vocab_size=module.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=2)
    result = step_flops.plain_step(module, size, warmup=2, steps=14, flops_of=lambda b: 1000)
    assert result["sentences"] == 14 * 16 and result["sentences_per_s"] > 0
    assert result["gflops"] == pytest.approx(14 * 1000 / result["seconds"] / 1e9)
    losses = result["losses"]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4  # SGD at lr 1 lowers the bound within an epoch


@pytest.fixture
def benchmark(monkeypatch):
    """benchmarks/NAME.py loaded as its command line runs it (benchmarks/ first on the path: seeds.py), its
    trainings recorded in ``.trained``; a training fails the test unless ``.train`` is set to do it."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import seeds

    def load(name):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def train(command):
        load.trained.append(command)
        if load.train is None:
            pytest.fail(f"trained {command}")
        load.train(command)

    load.trained, load.train, load.seeds = [], None, seeds
    monkeypatch.setattr(seeds, "_train", train)
    return load


def _run(module, monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", [module.__name__, *map(str, argv)])
    module.main()


def _sentences(path: Path) -> WordTokenizer:
    """400 synthetic sentences written to ``path`` (12 training batches of 32: 10 warm-up steps and 1 timed)."""
    sentences = generate_sentences(400, seed=0)
    write_jsonl(path, sentences)
    return WordTokenizer.train(s.text for s in sentences)


def _tiny_export(folder: Path, tokenizer: WordTokenizer, seed: int, latent: bool = True) -> None:
    """An untrained tiny VAE (or LM) initialised from ``seed``, exported to folder/export."""
    torch.manual_seed(seed)
    model = (SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=2) if latent
             else LanguageModel(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=16))
    save_export(folder / "export", model, tokenizer)


def test_yelp10k_seeds_evaluates_every_run_and_reports_mean_and_sd(benchmark, tmp_path, monkeypatch, capsys):
    tokenizer = _sentences(tmp_path / "data.jsonl")
    runs = tmp_path / "runs"
    for seed, suffix in enumerate(["", "_seed1"]):  # the two seeds' runs exist: nothing is trained
        _tiny_export(runs / f"vae{suffix}", tokenizer, seed)
        _tiny_export(runs / f"lm{suffix}", tokenizer, seed, latent=False)
    yelp10k = benchmark("yelp10k")
    common = ["--train", tmp_path / "data.jsonl", "--test", tmp_path / "data.jsonl", "--sentences", 20, "--samples",
              3, "--train-steps", 1, "--cache-dir", tmp_path / "cache"]
    _run(yelp10k, monkeypatch, "--seeds", 2, "--vae-recipe", "vae", "--lm-recipe", "lm", "--runs", runs,
         "--json", tmp_path / "seeds.json", *common)
    report = json.loads((tmp_path / "seeds.json").read_text(encoding="utf-8"))
    vae, lm = report["results"]["vae"], report["results"]["lm"]
    assert vae["exports"] == [str(runs / "vae" / "export"), str(runs / "vae_seed1" / "export")]
    nll = [row["iw_nll"] for row in vae["seeds"]]
    assert nll[0] != nll[1]  # two models
    assert vae["mean_sd"]["iw_nll"] == pytest.approx({"mean": statistics.fmean(nll), "sd": statistics.stdev(nll),
                                                      "seeds": 2})
    margins = [v["iw_nll"] - m["iw_nll"] for v, m in zip(vae["seeds"], lm["seeds"], strict=True)]
    assert report["vae_minus_lm_iw_nll"]["per_seed"] == pytest.approx(margins)
    assert report["vae_minus_lm_iw_nll"]["sd"] == pytest.approx(statistics.stdev(margins))
    assert "train_sentences_per_s" in vae["seeds"][0] and "train_sentences_per_s" not in vae["seeds"][1]
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| `vae` |"))
    assert row.startswith(f"| `vae` | {statistics.fmean(nll):.2f} ± {statistics.stdev(nll):.2f} | ")
    assert next(line for line in printed.splitlines() if line.startswith("| `lm` |")).count(" (exact)") == 1
    assert benchmark.trained == []

    # one seed, export paths: the report as before (one row per model), seed 0's figures
    _run(yelp10k, monkeypatch, "--vae", runs / "vae" / "export", "--json", tmp_path / "one.json", *common)
    one = json.loads((tmp_path / "one.json").read_text(encoding="utf-8"))["results"]
    assert list(one) == ["vae"] and one["vae"]["iw_nll"] == pytest.approx(nll[0])
    with pytest.raises(SystemExit):  # seeds are runs of recipes
        _run(yelp10k, monkeypatch, "--seeds", 2, "--vae", runs / "vae" / "export", *common)


def test_dailydialog_lite_seeds_trains_the_missing_seed_and_evaluates_every_row(benchmark, dialogue_exports, tmp_path,
                                                                               monkeypatch, capsys):
    runs = tmp_path / "runs"
    for name in ("hred", "kgcvae"):  # seed 0: the tiny exports; seed 1: trained by the benchmark
        (runs / f"dailydialog_lite_{name}").mkdir(parents=True)
        (runs / f"dailydialog_lite_{name}" / "export").symlink_to(getattr(dialogue_exports, name))

    def train(command):  # the recipe's tiny stand-in at the command's seed, in the command's run folder
        name = Path(command[3]).stem.removeprefix("dailydialog_lite_")
        seed, folder = int(command[command.index("--seed_everything") + 1]), Path(command[command.index("--run") + 1])
        folder.mkdir(parents=True)
        config = _config(*MODELS[name], dialogue_exports.data, folder) | {"seed_everything": seed}
        (folder / "recipe.json").write_text(json.dumps(config), encoding="utf-8")
        train_tool.main(["fit", "--config", str(folder / "recipe.json")])

    benchmark.train = train
    write_jsonl(tmp_path / "train.jsonl", generate_dialogues(100, seed=1))  # over 11 batches for the training speed
    assert act_tagger_tool.main(["--data", str(dialogue_exports.data), "--test", str(dialogue_exports.data), "--out",
                                 str(tmp_path / "tagger"), "--cache-dir", str(tmp_path / "cache")]) == 0
    dailydialog = benchmark("dailydialog_lite")
    common = ["--runs", runs, "--train", tmp_path / "train.jsonl", "--test", dialogue_exports.data, "--act-tagger",
              tmp_path / "tagger", "--contexts", 6, "--responses", 2, "--speed-contexts", 4, "--train-steps", 1,
              "--cache-dir", tmp_path / "cache"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(dailydialog, monkeypatch, "--seeds", 2, "--models", "hred", "kgcvae", "--hred-temperatures", 0.7,
             "--prior-scales", 2, "--json", tmp_path / "seeds.json", *common)
        printed = capsys.readouterr().out
        _run(dailydialog, monkeypatch, "--models", "kgcvae", "--json", tmp_path / "one.json", *common)
    finally:
        torch.set_num_threads(threads)
    assert [(Path(c[3]).name, c[c.index("--seed_everything") + 1]) for c in benchmark.trained] == [
        ("dailydialog_lite_hred.yaml", "1"), ("dailydialog_lite_kgcvae.yaml", "1")]
    results = json.loads((tmp_path / "seeds.json").read_text(encoding="utf-8"))["results"]
    assert list(results) == ["hred", "kgcvae", "hred, T 0.7", "kgcvae, prior sd x2"]  # HRED has no prior to scale
    assert results["kgcvae"]["exports"] == [str(runs / "dailydialog_lite_kgcvae" / "export"),
                                            str(runs / "dailydialog_lite_kgcvae_seed1" / "export")]
    ppl = [row["ppl"] for row in results["kgcvae"]["seeds"]]
    assert ppl[0] != ppl[1]
    assert results["kgcvae"]["mean_sd"]["ppl"] == pytest.approx({"mean": statistics.fmean(ppl),
                                                                 "sd": statistics.stdev(ppl), "seeds": 2})
    assert all(len(r["seeds"]) == 2 for r in results.values())
    # the speeds: seed 0's model, once; a prior-scaled row has its model's
    assert {"responses_per_s", "train_tokens_per_s"} <= set(results["hred"]["seeds"][0])
    assert "responses_per_s" not in results["hred"]["seeds"][1]
    assert "responses_per_s" in results["hred, T 0.7"]["seeds"][0]
    assert "train_tokens_per_s" not in results["hred, T 0.7"]["seeds"][0]
    assert "responses_per_s" not in results["kgcvae, prior sd x2"]["seeds"][0]
    row = next(line for line in printed.splitlines() if line.startswith("| kgcvae |"))
    assert f"| {statistics.fmean(ppl):.1f} ± {statistics.stdev(ppl):.1f} (bound) |" in row
    # one seed: the report as before, seed 0's figures
    one = json.loads((tmp_path / "one.json").read_text(encoding="utf-8"))["results"]
    assert list(one) == ["kgcvae"] and one["kgcvae"]["ppl"] == pytest.approx(ppl[0])
    assert one["kgcvae"]["bleu_f1"] == pytest.approx(results["kgcvae"]["seeds"][0]["bleu_f1"])
    with pytest.raises(SystemExit):  # seeds are runs of recipes
        _run(dailydialog, monkeypatch, "--seeds", 2, "--models", f"kgcvae={dialogue_exports.kgcvae}", *common)


def test_latent_families_seeds_row_beside_one_seed_rows(benchmark, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the script reads data/CORPUS/test.jsonl and runs/NAME/export
    tokenizer = _sentences(Path("data/tiny/test.jsonl"))
    _tiny_export(Path("runs/vae"), tokenizer, 0)
    benchmark.train = lambda command: _tiny_export(Path(command[command.index("--run") + 1]), tokenizer,
                                                   int(command[command.index("--seed_everything") + 1]))
    one_seed = {"iw_nll": 40.0, "samples": None, "ppl": 60.0, "elbo": None, "kl": None, "kl_estimate": None,
                "mi": None, "active_units": None, "latent_dim": 0, "recon_bleu": None, "train_sentences_per_s": 450.0}
    Path("benchmarks").mkdir()
    Path("benchmarks/latent_families_tiny.json").write_text(json.dumps({"results": {"lm": one_seed}}), encoding="utf-8")
    latent_families = benchmark("latent_families")
    _run(latent_families, monkeypatch, "--corpus", "tiny", "--runs", "vae", "--seeds", 3, "--sentences", 10, "--samples",
         2, "--svi-steps", 2, "--svi-sentences", 4, "--train-steps", 0)
    assert [c[c.index("--run") + 1] for c in benchmark.trained] == ["runs/vae_seed1", "runs/vae_seed2"]
    rows = json.loads(Path("benchmarks/latent_families_tiny.json").read_text(encoding="utf-8"))["results"]
    assert rows["lm"] == one_seed  # a run evaluated earlier stays
    vae = rows["vae"]
    assert vae["exports"] == ["runs/vae/export", "runs/vae_seed1/export", "runs/vae_seed2/export"]
    gaps = [row["svi"]["amortization_gap"] for row in vae["seeds"]]
    assert vae["mean_sd"]["svi"]["amortization_gap"]["sd"] == pytest.approx(statistics.stdev(gaps))
    elbo = [row["elbo"] for row in vae["seeds"]]
    lines = capsys.readouterr().out.splitlines()
    assert "| `lm` | 40.00 (exact) | 60.0 | — | — | — | — | — | — | — | 450 |" in lines
    row = next(line for line in lines if line.startswith("| `vae` |")).split(" | ")
    assert row[3] == f"{-statistics.fmean(elbo):.2f} ± {statistics.stdev(elbo):.2f}"  # -ELBO
    assert row[6].endswith("/2") and " ± " in row[6]  # active units of z 2, over the seeds


def test_latent_families_measures_gaps_on_every_sentence_in_one_pass(benchmark, tmp_path, monkeypatch):
    from textvae.data.datasets import SentenceDataset, load_records
    from textvae.evaluation import evaluate
    from textvae.export import load_export

    monkeypatch.chdir(tmp_path)
    tokenizer = _sentences(Path("data/tiny/test.jsonl"))
    _tiny_export(Path("runs/vae"), tokenizer, 0)
    latent_families = benchmark("latent_families")
    calls = []
    monkeypatch.setattr(latent_families, "evaluate", lambda *a, **k: calls.append(k["svi_steps"]) or evaluate(*a, **k))
    _run(latent_families, monkeypatch, "--corpus", "tiny", "--runs", "vae", "--sentences", 6, "--samples", 3,
         "--svi-steps", 2, "--svi-sentences", 6, "--train-steps", 0, "--json", "out.json")
    assert calls == [2]  # the gaps cover every sentence: one evaluation, with the refinement
    row = json.loads(Path("out.json").read_text(encoding="utf-8"))["results"]["vae"]
    export = load_export("runs/vae/export")
    dataset = SentenceDataset(load_records("data/tiny/test.jsonl").select(range(6)), export.tokenizer, max_len=None)
    plain = evaluate(export.model, dataset, samples=3, seed=0, tokenizer=export.tokenizer)
    refined = evaluate(export.model, dataset, samples=3, seed=0, tokenizer=export.tokenizer, svi_steps=2)
    assert row["iw_nll"] == pytest.approx(plain.iw_nll) and row["recon_bleu"] == pytest.approx(plain.recon_bleu)
    assert row["svi"]["iw_nll_svi"] == pytest.approx(refined.iw_nll_svi) and row["svi"]["sentences"] == 6
    _run(latent_families, monkeypatch, "--corpus", "tiny", "--runs", "vae", "--sentences", 6, "--samples", 3,
         "--svi-steps", 2, "--svi-sentences", 4, "--train-steps", 0, "--json", "out.json")
    assert calls == [2, 0, 2]  # on a part of them: the figures, then the gaps on the first 4
    assert json.loads(Path("out.json").read_text(encoding="utf-8"))["results"]["vae"]["svi"]["sentences"] == 4


def test_label_control_seeds_of_a_recipe(benchmark, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the recipes' runs are runs/NAME
    sentences = [Sentence(s.text, ("negative", "positive")[i % 2]) for i, s in enumerate(generate_sentences(60, 0))]
    write_jsonl("test.jsonl", sentences)
    tokenizer = WordTokenizer.train(s.text for s in sentences)
    save_classifier("classifier", train_classifier([s.text for s in sentences], [s.label for s in sentences]))
    _tiny_export(Path("lm"), tokenizer, 0, latent=False)

    def labelled(folder: Path, seed: int) -> None:
        torch.manual_seed(seed)
        model = SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=2, num_labels=2)
        save_export(folder / "export", model, tokenizer, labels=["negative", "positive"])

    labelled(Path("runs/cvae"), 0)
    benchmark.train = lambda command: labelled(Path(command[command.index("--run") + 1]),
                                               int(command[command.index("--seed_everything") + 1]))
    label_control = benchmark("label_control")
    common = ["--classifier", "classifier", "--lm", "lm/export", "--test", "test.jsonl", "-n", 6]
    _run(label_control, monkeypatch, "--recipes", "cvae", "--seeds", 2, "--json", "seeds.json", *common)
    _run(label_control, monkeypatch, "--model", "runs/cvae/export", "--json", "one.json", *common)
    assert [c[c.index("--run") + 1] for c in benchmark.trained] == ["runs/cvae_seed1"]
    cvae = json.loads(Path("seeds.json").read_text(encoding="utf-8"))["models"]["cvae"]
    control = [rows["mean_control"] for rows in cvae["seeds"]]
    assert cvae["mean_sd"]["mean_control"] == pytest.approx({"mean": statistics.fmean(control),
                                                             "sd": statistics.stdev(control), "seeds": 2})
    assert "examples" not in cvae["mean_sd"]["negative"] and len(cvae["seeds"][1]["negative"]["examples"]) == 5
    # one seed, as before: the rows of runs/cvae/export, the same as seed 0's
    assert json.loads(Path("one.json").read_text(encoding="utf-8"))["models"]["runs/cvae/export"] == cvae["seeds"][0]
    assert "cvae, 2 seeds: mean control accuracy " in capsys.readouterr().out


def test_semi_supervised_seeds_of_the_three_recipes(benchmark, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the recipes' runs are runs/NAME
    sentences = [Sentence(s.text, ("negative", "positive")[i % 2]) for i, s in enumerate(generate_sentences(60, 0))]
    for name, part in (("test", sentences), ("valid", sentences[:30]), ("train.100", sentences[:10]),
                       ("train.2000", sentences[:20])):
        write_jsonl(f"data/{name}.jsonl", part)
    tokenizer = WordTokenizer.train(s.text for s in sentences)

    def train(command):  # M2 and the supervised model: a labelled VAE (untrained); the VAE: unlabelled
        folder, seed = Path(command[command.index("--run") + 1]), int(command[command.index("--seed_everything") + 1])
        if command[3] == "recipes/yelp10k_lstm_vae.yaml":
            return _tiny_export(folder, tokenizer, seed)
        torch.manual_seed(seed)
        model = SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=2, num_labels=2)
        save_export(folder / "export", model, tokenizer, labels=["negative", "positive"])

    benchmark.train = train
    semi_supervised = benchmark("semi_supervised")
    _run(semi_supervised, monkeypatch, "--data", "data", "--sizes", 100, 2000, "--seeds", 2, "--m2-recipe", "yelp10k_m2",
         "--supervised-recipe", "yelp10k_m2_supervised", "--vae-recipe", "yelp10k_lstm_vae", "--json", "seeds.json")
    trained = [(c[c.index("--run") + 1], c[c.index("--seed_everything") + 1], c[c.index("--run") + 2:])
               for c in benchmark.trained]
    assert ("runs/yelp10k_m2_2000_seed1", "1", ["--data.train", "data/train.2000.jsonl", "--data.train_repeats",
                                                "1"]) in trained  # M2's 2,000 labels: 1 repeat (the recipe's header)
    assert ("runs/yelp10k_m2_supervised_100", "0", ["--data.train", "data/train.100.jsonl", "--data.train_repeats",
                                                    "50"]) in trained  # its 100 labels: 50 repeats
    assert len(trained) == 2 * 2 * 2 + 2  # (M2, supervised) x 2 sizes x 2 seeds and the VAE's 2 seeds
    printed = capsys.readouterr().out
    _run(semi_supervised, monkeypatch, "--data", "data", "--sizes", 100, "--m2", "runs/yelp10k_m2_{n}/export",
         "--supervised", "runs/yelp10k_m2_supervised_{n}/export", "--vae", "runs/yelp10k_lstm_vae/export",
         "--json", "one.json")
    assert len(benchmark.trained) == 10  # resumed: every run exists
    rows = json.loads(Path("seeds.json").read_text(encoding="utf-8"))["results"]["100"]
    assert rows["exports"][1] == {"m2": "runs/yelp10k_m2_100_seed1/export",
                                  "supervised": "runs/yelp10k_m2_supervised_100_seed1/export",
                                  "vae": "runs/yelp10k_lstm_vae_seed1/export"}
    probe = [row["vae_probe"] for row in rows["seeds"]]
    assert rows["mean_sd"]["vae_probe"]["mean"] == pytest.approx(statistics.fmean(probe))
    m2 = [row["m2"] for row in rows["seeds"]]
    assert f"| 100 | {statistics.fmean(m2):.3f} ± {statistics.stdev(m2):.3f} | " in printed
    # one seed, by path: the row as before, seed 0's figures
    one = json.loads(Path("one.json").read_text(encoding="utf-8"))["results"]["100"]
    assert one == rows["seeds"][0] | {"ngrams": rows["ngrams"], "ngrams_l2": rows["ngrams_l2"]}
    with pytest.raises(SystemExit):  # no train_repeats known for 10 labels
        _run(semi_supervised, monkeypatch, "--data", "data", "--sizes", 10, "--seeds", 2, "--m2-recipe", "yelp10k_m2",
             "--supervised-recipe", "yelp10k_m2_supervised", "--vae-recipe", "yelp10k_lstm_vae")


def test_frontier_seeds_are_swept_alike_and_averaged(benchmark, dialogue_exports, tmp_path, monkeypatch, capsys):
    """NAME=DIR,DIR: each export swept as it is alone (the cache of the one-model runs serves), the curve the
    per-setting mean, the table mean ± sd, covering judged on the means and per seed."""
    frontier = benchmark("frontier")
    common = ["--data", dialogue_exports.data, "--contexts", 4, "--responses", 2, "--cache", tmp_path / "cache"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(frontier, monkeypatch, "--models", f"a={dialogue_exports.kgcvae}", f"b={dialogue_exports.cvae}",
             f"HRED={dialogue_exports.hred}", "--json", tmp_path / "alone.json", "--plot", tmp_path / "alone.png",
             *common)
        (tmp_path / "cache" / "b.json").rename(tmp_path / "cache" / "latent_seed1.json")
        (tmp_path / "cache" / "a.json").rename(tmp_path / "cache" / "latent.json")
        capsys.readouterr()
        _run(frontier, monkeypatch, "--models", f"latent={dialogue_exports.kgcvae},{dialogue_exports.cvae}",
             f"HRED={dialogue_exports.hred}", "--json", tmp_path / "seeds.json", "--plot", tmp_path / "seeds.png",
             *common)
        # a second HRED seed (the same export again): seed 1 of the HREDs meets seed 1 of the latent models
        (tmp_path / "cache" / "HRED_seed1.json").write_bytes((tmp_path / "cache" / "HRED.json").read_bytes())
        _run(frontier, monkeypatch, "--models", f"latent={dialogue_exports.kgcvae},{dialogue_exports.cvae}",
             f"HRED={dialogue_exports.hred},{dialogue_exports.hred}", "--json", tmp_path / "both.json", "--plot",
             tmp_path / "both.png", *common)
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out.split("wrote")[0]  # the first of the two seed runs
    assert "latent (seed 0): 23 points from" in printed and "latent (seed 1): 23 points from" in printed
    alone = json.loads((tmp_path / "alone.json").read_text(encoding="utf-8"))["models"]
    report = json.loads((tmp_path / "seeds.json").read_text(encoding="utf-8"))
    latent = report["models"]["latent"]
    assert [row["setting"] for row in latent] == [row["setting"] for row in alone["a"]]
    for row, a, b in zip(latent, alone["a"], alone["b"], strict=True):
        assert row["seeds"] == [a, b]
        pair = (a["distinct_2"], b["distinct_2"])
        assert row["distinct_2"] == pytest.approx(statistics.fmean(pair))
        assert row["sd"]["distinct_2"] == pytest.approx(statistics.stdev(pair))
        assert row["bleu_f1"] == pytest.approx([statistics.fmean(p) for p in zip(a["bleu_f1"], b["bleu_f1"], strict=True)])
    assert report["models"]["HRED"] == alone["HRED"]  # one seed: its figures, no spread
    first = latent[0]
    line = next(x for x in printed.splitlines() if x.startswith(f"| latent | {first['setting']} |"))
    assert f"| {first['bleu_f1'][0]:.3f} ± {first['sd']['bleu_f1'][0]:.3f} |" in line
    assert set(report["uncovered"]) == {"HRED"} and list(report["uncovered_per_seed"]) == ["0"]
    assert report["uncovered_per_seed"]["0"] == {"HRED": _uncovered(alone["HRED"], alone["a"])}
    assert report["uncovered"]["HRED"] == _uncovered(alone["HRED"], latent)
    both = json.loads((tmp_path / "both.json").read_text(encoding="utf-8"))
    assert both["uncovered_per_seed"] == {"0": {"HRED": _uncovered(alone["HRED"], alone["a"])},
                                          "1": {"HRED": _uncovered(alone["HRED"], alone["b"])}}
    assert all(row["sd"]["distinct_2"] == 0.0 for row in both["models"]["HRED"])  # the same export twice
    with pytest.raises(SystemExit):
        _run(frontier, monkeypatch, "--models", "HRED=", *common)
    # --measured: the two-seed latent model and the HRED of both.json read back, not swept: the same report
    capsys.readouterr()
    _run(frontier, monkeypatch, "--measured", f"latent={tmp_path / 'both.json'}", f"HRED={tmp_path / 'both.json'}",
         "--json", tmp_path / "read.json", "--plot", tmp_path / "read.png", *common)
    read = json.loads((tmp_path / "read.json").read_text(encoding="utf-8"))
    assert read["models"] == both["models"] and read["uncovered"] == both["uncovered"]
    assert read["uncovered_per_seed"] == both["uncovered_per_seed"]
    assert "latent: 23 points of 2 seeds from" in capsys.readouterr().out and (tmp_path / "read.png").stat().st_size
    for bad, message in [(f"HRED={tmp_path / 'missing.json'}", "cannot read"),
                         (f"HRED={tmp_path / 'read.png'}", "is not JSON"),
                         (f"CVAE={tmp_path / 'both.json'}", "has no points of a model 'CVAE'")]:
        with pytest.raises(SystemExit):
            _run(frontier, monkeypatch, "--measured", bad, *common)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(frontier, monkeypatch, "--models", f"HRED={dialogue_exports.hred}", "--measured",
             f"HRED={tmp_path / 'both.json'}", *common)
    assert "given twice" in capsys.readouterr().err


def test_frontier_cache_sweeps_only_the_settings_it_lacks(benchmark, dialogue_exports, tmp_path, monkeypatch, capsys):
    """A wider sweep over a cached model (the full grid: every prior scale with HRED's temperatures and top-p)
    measures only its new settings; each point, read back or new, equals the one an uncached run measures."""
    frontier = benchmark("frontier")
    common = ["--data", dialogue_exports.data, "--contexts", 4, "--responses", 2, "--plot", tmp_path / "f.png"]
    full = ["--scaled-temperatures", 0.3, 0.5, 0.7, 0.9, 1, 1.2, "--scaled-top-ps", 0.9]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(frontier, monkeypatch, "--models", f"a={dialogue_exports.kgcvae}", "--cache", tmp_path / "cache",
             "--json", tmp_path / "default.json", *common)
        cache = tmp_path / "cache" / "a.json"
        older = json.loads(cache.read_text(encoding="utf-8"))  # a cache as older runs wrote it: settings in the key
        older["key"]["settings"] = [p["decoding"] for p in older["points"]]
        cache.write_text(json.dumps(older), encoding="utf-8")
        capsys.readouterr()
        _run(frontier, monkeypatch, "--models", f"a={dialogue_exports.kgcvae}", "--cache", tmp_path / "cache",
             "--json", tmp_path / "cached.json", *common, *full)
        printed = capsys.readouterr().out
        _run(frontier, monkeypatch, "--models", f"a={dialogue_exports.kgcvae}", "--json", tmp_path / "fresh.json",
             *common, *full)
    finally:
        torch.set_num_threads(threads)
    assert "a: 9 points swept in" in printed and "a: 23 points from" in printed  # 3 scales x (T 0.9, T 1.2, top-p)
    default = json.loads((tmp_path / "default.json").read_text(encoding="utf-8"))["models"]["a"]
    cached = json.loads((tmp_path / "cached.json").read_text(encoding="utf-8"))["models"]["a"]
    fresh = json.loads((tmp_path / "fresh.json").read_text(encoding="utf-8"))["models"]["a"]
    assert cached == fresh and len(fresh) == 32
    assert [row for row in fresh if row["setting"] in {r["setting"] for r in default}] == default
    assert "sample per sampled z (T 1, top-p 0.9), prior x0.5" in {row["setting"] for row in fresh}
    assert len(json.loads(cache.read_text(encoding="utf-8"))["points"]) == 32  # the cache keeps every point
    assert not (tmp_path / "cache" / "a.json.partial").exists()
    cache.write_text("{not json", encoding="utf-8")
    for bad, message in [(["--cache", tmp_path / "cache"], "is not a cache this script wrote"),
                         (["--scaled-temperatures", 0], "must be > 0"), (["--scaled-top-ps", 1.5], "in (0, 1]")]:
        with pytest.raises(SystemExit) as exit_info:
            _run(frontier, monkeypatch, "--models", f"a={dialogue_exports.kgcvae}", "--json", tmp_path / "x.json",
                 *common, *bad)
        assert message in str(exit_info.value) + capsys.readouterr().err


def _uncovered(baseline: list[dict], latent: list[dict]) -> list[str]:
    """The baseline's settings no latent point matches or beats on BLEU-1 F1 and distinct-2 within and overall."""
    def beats(a, b):
        return (a["bleu_f1"][0] >= b["bleu_f1"][0] and a["distinct_2_within"] >= b["distinct_2_within"]
                and a["distinct_2"] >= b["distinct_2"])
    return [b["setting"] for b in baseline if not any(beats(a, b) for a in latent)]
