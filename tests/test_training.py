"""Training end to end: every recipe (sentence and dialogue) runs a fast dev run, export → load is exact,
DDP ranks agree."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from textvae.data.batching import DialogueExample, SentenceExample, collate_dialogues, collate_sentences
from textvae.data.records import read_jsonl, write_jsonl
from textvae.data.synthetic import generate_dialogues, generate_sentences
from textvae.export import load_export
from textvae.models import DialogueModel
from textvae.training_objectives import ELBO
from tools import train

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    write_jsonl(folder / "sentences.jsonl", generate_sentences(64, seed=1))
    write_jsonl(folder / "dialogues.jsonl", generate_dialogues(16, seed=1))
    return {"sentences": folder / "sentences.jsonl", "dialogues": folder / "dialogues.jsonl"}


def recipe_kind(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return "dialogues" if "# kind: dialogues" in text else "sentences"


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_fast_dev_run_and_export(recipe, tiny_data, tmp_path):
    data = tiny_data[recipe_kind(recipe)]
    export = tmp_path / "export"
    text = recipe.read_text(encoding="utf-8")
    labels = []  # a recipe conditioned on a two-way label reads the synthetic sentences' sentiment instead
    if "num_labels: 2" in text:
        labels += ["--data.label_key", "attributes.sentiment"]
    if "unlabelled:" in text:
        labels += ["--data.unlabelled", str(data)]
    if "architecture: pretrained" in text:  # tiny local backbones in place of the recipe's model folders
        pytest.importorskip("transformers")
        from textvae.models.pretrained import make_tiny_backbones

        encoder, decoder = make_tiny_backbones(tmp_path / "backbones", [s.text for s in read_jsonl(data, "sentences")],
                                               vocab_size=300, width=16, layers=1, heads=2)
        labels += ["--model.model.init_args.encoder_model", str(encoder), "--model.model.init_args.decoder_model",
                   str(decoder), "--data.tokenizer_dir", str(decoder)]
    train.main(["fit", "--config", str(recipe), "--trainer.fast_dev_run", "true", "--trainer.logger", "false",
                "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
                "--data.train", str(data), "--data.valid", str(data), "--data.test", str(data),
                "--data.cache_dir", str(tmp_path / "cache"), "--export", str(export), *labels])
    loaded = load_export(export)
    assert (export / "config.json").is_file() and (export / "model.safetensors").is_file()
    assert loaded.tokenizer.vocab_size == loaded.model.init_args["vocab_size"]
    args = loaded.model.init_args
    if recipe_kind(recipe) == "dialogues":
        assert isinstance(loaded.model, DialogueModel)
        if "num_acts" in args:  # CVAE/kgCVAE: the data's act and topic inventories are linked in
            assert args["num_acts"] == len(loaded.categories["acts"]) > 0
            assert args["num_topics"] == len(loaded.categories["topics"]) > 0  # the synthetic dialogues' topics
            assert args["profile_dim"] == 0  # they name no callers (tests/test_profiles.py: Switchboard's do)
    else:  # the act/topic links skip models without those arguments
        assert "num_acts" not in args and "num_topics" not in args


def test_export_round_trip_gives_identical_logits(tiny_data, tmp_path):
    export = tmp_path / "export"
    train.main(["fit", "--config", str(ROOT / "recipes" / "quickstart.yaml"), "--trainer.max_steps", "3",
                "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(tmp_path),
                "--data.train", str(tiny_data["sentences"]), "--data.valid", str(tiny_data["sentences"]),
                "--data.test", str(tiny_data["sentences"]), "--data.cache_dir", str(tmp_path / "cache"),
                "--export", str(export)])
    loaded = load_export(export)
    again = load_export(export)
    texts = ["the chef cooked a spicy soup .", "we will visit the old museum ."]
    batch = collate_sentences([SentenceExample(loaded.tokenizer.encode(t), None, i) for i, t in enumerate(texts)])
    z = torch.randn(2, loaded.model.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = loaded.model.decoder(batch.inputs, z)
        assert torch.equal(logits, again.model.decoder(batch.inputs, z))
        assert torch.equal(loaded.model.encode(batch.tokens, batch.lengths)[0],
                           again.model.encode(batch.tokens, batch.lengths)[0])
    assert loaded.categories["labels"]  # the synthetic corpus labels sentences by topic


def test_dialogue_export_round_trip_gives_identical_logits(tiny_data, tmp_path):
    export = tmp_path / "export"
    train.main(["fit", "--config", str(ROOT / "recipes" / "synthetic_dialogue_quickstart.yaml"),
                "--trainer.max_steps", "3", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(tmp_path),
                "--data.train", str(tiny_data["dialogues"]), "--data.valid", str(tiny_data["dialogues"]),
                "--data.test", str(tiny_data["dialogues"]), "--data.cache_dir", str(tmp_path / "cache"),
                "--export", str(export)])
    loaded, again = load_export(export), load_export(export)
    assert loaded.model.num_acts == len(loaded.categories["acts"]) > 0  # the quickstart is a kgCVAE
    assert loaded.kind == "dialogues" and loaded.max_context == 8 and loaded.max_len == 100  # tool defaults
    assert loaded.model.attention  # the quickstart's decoder attends to the context and copies from it
    examples = [DialogueExample([loaded.tokenizer.encode("i need a hotel in the centre .")], [0],
                                loaded.tokenizer.encode("what price range ?"), 0, None, 1, 0)]
    batch = collate_dialogues(examples)
    with torch.no_grad():
        a = loaded.model.response_condition(batch, num_samples=2, generator=torch.Generator().manual_seed(0))
        b = again.model.response_condition(batch, num_samples=2, generator=torch.Generator().manual_seed(0))
        assert torch.equal(a.condition.vector, b.condition.vector) and torch.equal(a.acts, b.acts)
        assert torch.equal(a.condition.words.states, b.condition.words.states)
        inputs = batch.inputs.repeat(2, 1)
        assert torch.equal(loaded.model.decoder(inputs, a.condition), again.model.decoder(inputs, b.condition))


def test_train_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["fit", "--config", str(ROOT / "recipes" / "quickstart.yaml"),
                    "--data.train", str(tmp_path / "missing.jsonl"), "--trainer.logger", "false"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "missing.jsonl" in err and "Traceback" not in err


def test_ddp_two_cpu_processes_end_with_identical_weights(tiny_data, tmp_path):
    # keep the caller's PYTHONPATH (packages installed there), the repository first
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "ddp_train.py"), str(tiny_data["sentences"]),
                             str(tmp_path)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world 2" in result.stdout
    decays = re.findall(r"decays (\d+)", result.stdout)  # the ranks agree on each learning-rate decay
    assert len(decays) == 2 and decays[0] == decays[1] != "0", result.stdout
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert rank0.keys() == rank1.keys() and len(rank0) > 0
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # in an epoch the ranks train on disjoint halves of the data (64 sentences, batches of 8: 4 steps each)
    seen = [[int(i) for i in (tmp_path / f"rank{r}.seen").read_text().split()] for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 32
    assert sorted(seen[0] + seen[1]) == list(range(64))


def test_logged_elbo_of_kgcvae_is_the_bound_the_evaluation_reports(tiny_data, tmp_path):
    """val/elbo = -(reconstruction + act NLL + KL): the -log p(x, y | c) bound textvae-eval reports, so the
    checkpoint chosen by val/elbo is the best by it; "kl" is the true KL."""
    from textvae.data.datasets import DialogueDataset, load_records, texts_of
    from textvae.data.tokenizers import WordTokenizer
    from textvae.lightning import TextVAESystem
    from textvae.models import CVAE

    records = load_records(tiny_data["dialogues"], cache_dir=tmp_path / "cache")
    tokenizer = WordTokenizer.train(texts_of(records, "dialogues"))
    dataset = DialogueDataset(records, tokenizer)
    torch.manual_seed(0)
    model = CVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, utterance_dim=8, context_dim=8, latent_dim=3, prior_dim=8, decoder_dim=8, mlp_dim=8,
                 knowledge=True, num_acts=len(dataset.acts), act_dim=4).eval()
    system = TextVAESystem(model, objective=ELBO(free_bits_per_dim=5.0))  # free bits change the loss, never the logged ELBO
    logged = {}
    system.log_dict = lambda metrics, **kwargs: logged.update(metrics)
    batch = collate_dialogues([dataset[i] for i in range(6)])
    torch.manual_seed(1)
    with torch.no_grad():
        system._step(batch, "val")
        torch.manual_seed(1)
        out = model(batch)
    bound = out.reconstruction.mean() + out.act_nll.mean() + out.kl.sum(-1).mean()
    assert out.act_nll.mean() > 0
    assert float(logged["val/elbo"]) == pytest.approx(-float(bound), rel=1e-6)
    assert float(logged["val/act_nll"]) == pytest.approx(float(out.act_nll.mean()), rel=1e-6)
    assert float(logged["val/kl"]) == pytest.approx(float(out.kl.sum(-1).mean()), rel=1e-6)


def test_mixed_precision_training_clips_gradients_with_an_unfused_adam(tmp_path):
    """Lightning's mixed precision refuses to clip a fused optimizer's gradients: the system then uses a plain Adam
    (fused otherwise). A Transformer VAE, as the CPU's oneDNN has no bf16 LSTM on every processor."""
    import pytorch_lightning as pl

    from textvae.lightning import TextVAESystem
    from textvae.models import SentenceVAE

    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=20, architecture="transformer", embed_dim=16, hidden_dim=16, latent_dim=4,
                        num_heads=2)
    assert TextVAESystem(model).configure_optimizers().defaults["fused"]  # no trainer: full precision
    batches = [collate_sentences([SentenceExample([4 + (i + j) % 16 for j in range(5)], None, i) for i in range(8)])]
    system = TextVAESystem(model)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = pl.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    trainer.fit(system, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    assert not trainer.optimizers[0].defaults["fused"]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_bf16_mixed_training_of_recurrent_models_on_the_cpu(tiny_data, tmp_path):
    """oneDNN has no bf16 LSTM/GRU on most processors: under CPU autocast the RNNs run in float32."""
    from textvae.models.modules import run_rnn

    rnn = torch.nn.LSTM(4, 3, batch_first=True)
    x = torch.randn(2, 5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = run_rnn(rnn, x)
    assert out.dtype == torch.float32 and torch.equal(out, rnn(x)[0])
    for recipe, data in (("quickstart.yaml", "sentences"), ("synthetic_dialogue_quickstart.yaml", "dialogues")):
        export = tmp_path / recipe / "export"
        train.main(["fit", "--config", str(ROOT / "recipes" / recipe), "--trainer.precision", "bf16-mixed",
                    "--trainer.max_steps", "3", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                    "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(tmp_path / recipe),
                    "--data.train", str(tiny_data[data]), "--data.valid", str(tiny_data[data]),
                    "--data.test", str(tiny_data[data]), "--data.cache_dir", str(tmp_path / "cache"),
                    "--export", str(export)])
        assert all(torch.isfinite(p).all() for p in load_export(export).model.parameters())


def test_a_run_logs_to_one_csv_and_one_tensorboard_version(tiny_data, tmp_path, monkeypatch):
    """The recipes' CSV and TensorBoard loggers write to sibling folders, so one run is logs/version_N (metrics,
    config, checkpoints) and tensorboard/version_N, not two versions of one folder."""
    monkeypatch.chdir(tmp_path)  # the recipe's relative runs/quickstart lands here
    data = str(tiny_data["sentences"])
    for _ in range(2):
        train.main(["fit", "--config", str(ROOT / "recipes" / "quickstart.yaml"), "--trainer.max_steps", "2",
                    "--trainer.enable_progress_bar", "false", "--data.train", data, "--data.valid", data,
                    "--data.test", data, "--data.cache_dir", str(tmp_path / "cache")])
    run = tmp_path / "runs" / "quickstart"
    assert sorted(p.name for p in (run / "logs").iterdir()) == ["version_0", "version_1"]
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == ["version_0", "version_1"]
    for version in ("version_0", "version_1"):
        assert (run / "logs" / version / "metrics.csv").is_file()
        assert any((run / "tensorboard" / version).glob("events.out.tfevents.*"))
