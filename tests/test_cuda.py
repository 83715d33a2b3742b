"""The CUDA path: every model computes on the GPU what it computes on the CPU, decoding and evaluation run
there, and textvae-train / textvae-eval / textvae-respond work on a GPU. Skipped where no GPU is found
(CI has none); run on a lent GPU machine (BENCHMARKS.md, "GPU").
"""

from __future__ import annotations

import copy
import json
from functools import partial
from pathlib import Path

import pytest
import torch
from test_dialogue_models import build  # the tiny dialogue models, as those tests build them
from test_dialogue_models import data as dialogue_data  # noqa: F401 (their data: a fixture)

from textvae.data.batching import SentenceExample, batch_to, collate_sentences
from textvae.data.records import write_jsonl
from textvae.data.synthetic import generate_dialogues, generate_sentences
from textvae.decoding import Decoding, beam_search, greedy, sample
from textvae.dialogue import generate_responses
from textvae.evaluation import evaluate
from textvae.export import load_export
from textvae.models import LanguageModel, SentenceVAE
from textvae.objectives import gaussian_kl, importance_weighted_nll
from textvae.posteriors import BatchNormGaussian
from tools import eval as eval_tool
from tools import respond, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")
VOCAB = 40
SENTENCE_MODELS = {
    "lstm": lambda: SentenceVAE(vocab_size=VOCAB, embed_dim=16, hidden_dim=32, latent_dim=4),
    "gru-bi-every-input": lambda: SentenceVAE(vocab_size=VOCAB, embed_dim=16, hidden_dim=32, latent_dim=4,
                                              architecture="gru", bidirectional=True, z_to_every_input=True),
    "transformer": lambda: SentenceVAE(vocab_size=VOCAB, embed_dim=16, hidden_dim=32, latent_dim=4,
                                       architecture="transformer", num_layers=2, num_heads=2),
    "bn-vae": lambda: SentenceVAE(vocab_size=VOCAB, embed_dim=16, hidden_dim=32, latent_dim=4,
                                 posterior=partial(BatchNormGaussian, gamma=0.5)),
    "lm": lambda: LanguageModel(vocab_size=VOCAB, embed_dim=16, hidden_dim=32),
}


@pytest.fixture(autouse=True)
def full_float32():
    """TF32 matrix products round to ~1e-3: compare CPU and GPU in full float32."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def sentence_batch(n: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 12, (n,), generator=g).tolist()
    return collate_sentences([SentenceExample(torch.randint(4, VOCAB, (k,), generator=g).tolist(), None, i)
                              for i, k in enumerate(lengths)])


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return bool(torch.allclose(a.detach().cpu().double(), b.detach().cpu().double(), rtol=tol, atol=tol))


@pytest.mark.parametrize("name", list(SENTENCE_MODELS))
def test_sentence_models_compute_the_same_on_cuda(name):
    torch.manual_seed(0)
    cpu = SENTENCE_MODELS[name]().eval()
    gpu = copy.deepcopy(cpu).to(CUDA)
    batch = sentence_batch()
    with torch.no_grad():
        if cpu.latent_dim:
            mu, logvar = cpu.encode(batch.tokens, batch.lengths)
            mu_g, logvar_g = gpu.encode(batch.tokens.to(CUDA), batch.lengths.to(CUDA))
            assert close(mu, mu_g) and close(logvar, logvar_g)
            z = torch.randn(3, batch.tokens.shape[0], cpu.latent_dim)  # (K, B, Z)
            assert close(cpu.log_px_given_z(batch, z), gpu.log_px_given_z(batch_to(batch, CUDA), z.to(CUDA)))
        else:
            assert close(cpu(batch).reconstruction, gpu(batch_to(batch, CUDA)).reconstruction)
    # one SGD step from the same weights lands on the same weights (a deterministic loss: the posterior mean
    # for z, as the devices draw different noise; the default models have no dropout)
    for model, data in ((cpu, batch), (gpu, batch_to(batch, CUDA))):
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        if model.latent_dim:
            mu, logvar = model.encode(data.tokens, data.lengths)
            loss = -model.log_px_given_z(data, mu.unsqueeze(0)).mean() + gaussian_kl(mu, logvar).sum(-1).mean()
        else:
            loss = model(data).reconstruction.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for (key, a), b in zip(cpu.state_dict().items(), gpu.state_dict().values(), strict=True):
        if a.is_floating_point():
            assert close(a, b, 1e-3), key


def test_decoding_on_cuda_matches_the_cpu_and_honours_banned_tokens():
    torch.manual_seed(0)
    cpu = SENTENCE_MODELS["lstm"]().eval()
    gpu = copy.deepcopy(cpu).to(CUDA)
    z = torch.randn(8, 4)
    assert greedy(cpu, z, 15) == greedy(gpu, z.to(CUDA), 15)
    assert beam_search(cpu, z, 15, beam_size=4) == beam_search(gpu, z.to(CUDA), 15, beam_size=4)
    first = sample(gpu, z.to(CUDA), 15, generator=torch.Generator(CUDA).manual_seed(3), banned=[5, 6])
    again = sample(gpu, z.to(CUDA), 15, generator=torch.Generator(CUDA).manual_seed(3), banned=[5, 6])
    assert first == again and all(5 not in s and 6 not in s for s in first)


def test_importance_weighted_evaluation_on_cuda(tmp_path):
    from textvae.data.datasets import SentenceDataset, load_records, texts_of
    from textvae.data.tokenizers import WordTokenizer

    write_jsonl(tmp_path / "s.jsonl", generate_sentences(40, seed=0))
    records = load_records(tmp_path / "s.jsonl", cache_dir=tmp_path / "cache")
    tokenizer = WordTokenizer.train(texts_of(records, "sentences"))
    dataset = SentenceDataset(records, tokenizer, max_len=None)
    torch.manual_seed(0)
    model = SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=16, hidden_dim=32, latent_dim=4)
    on_cpu = evaluate(copy.deepcopy(model), dataset, samples=50, seed=0, tokenizer=tokenizer, device="cpu")
    on_gpu = evaluate(copy.deepcopy(model), dataset, samples=50, seed=0, tokenizer=tokenizer, device="cuda")
    assert on_gpu.sentences == on_cpu.sentences == 40 and on_gpu.tokens == on_cpu.tokens
    assert on_gpu.kl == pytest.approx(on_cpu.kl, rel=1e-4)  # closed form: the same on both
    assert on_gpu.recon_bleu == pytest.approx(on_cpu.recon_bleu)  # greedy from the posterior mean
    # the importance samples' noise is drawn on the CPU: both devices estimate with the same K draws
    assert on_gpu.iw_nll == pytest.approx(on_cpu.iw_nll, abs=1e-3)
    assert on_gpu.mi == pytest.approx(on_cpu.mi, abs=1e-3)
    assert on_gpu.iw_nll <= -on_gpu.elbo + 1e-4  # the IW bound is at least as tight as the ELBO
    assert on_gpu.active_units == on_cpu.active_units


def test_iw_bound_terms_do_not_leave_the_gpu():
    torch.manual_seed(0)
    model = SENTENCE_MODELS["lstm"]().to(CUDA).eval()
    from textvae.evaluation import importance_samples

    with torch.no_grad():
        terms, inference = importance_samples(model, batch_to(sentence_batch(), CUDA), 7, seed=0)
    mu = inference.q.params[0]
    assert all(t.device.type == "cuda" and t.shape == (7, 12) for t in terms) and mu.device.type == "cuda"
    assert torch.isfinite(importance_weighted_nll(*terms)).all()


@pytest.mark.parametrize("name", ["hred", "vhred", "cvae", "kgcvae"])
def test_dialogue_models_compute_the_same_on_cuda(name, dialogue_data):  # noqa: F811
    from textvae.data.batching import collate_dialogues

    _, dataset = dialogue_data
    cpu = build(name, dialogue_data).eval()
    gpu = copy.deepcopy(cpu).to(CUDA)
    batch = collate_dialogues([dataset[i] for i in range(7)])
    batch_gpu = batch_to(batch, CUDA)
    with torch.no_grad():
        c, c_gpu = cpu.encode_context(batch), gpu.encode_context(batch_gpu)
        assert close(c, c_gpu)
        if name != "hred":
            on_cpu, on_gpu = cpu.infer(batch), gpu.infer(batch_gpu)
            for a, b in zip((*on_cpu.p.params, *on_cpu.q.params), (*on_gpu.p.params, *on_gpu.q.params), strict=True):
                assert close(a, b)
        condition = cpu.response_condition(batch, num_samples=2, generator=torch.Generator().manual_seed(0))
        # the same condition (z drawn on the CPU) gives the same logits and greedy responses on the GPU
        inputs = batch.inputs.repeat(2, 1)
        assert close(cpu.decoder(inputs, condition.condition), gpu.decoder(inputs.to(CUDA), condition.condition.to(CUDA)))
        out = gpu(batch_gpu)
        assert out.reconstruction.device.type == "cuda" and torch.isfinite(out.reconstruction).all()
        responses = generate_responses(gpu, batch_gpu, num_samples=3, decoding=Decoding("greedy", max_len=12),
                                       generator=torch.Generator(CUDA).manual_seed(0))
        assert len(responses.ids) == 7 and all(len(r) == 3 for r in responses.ids)


def _train(recipe: str, data: Path, folder: Path, *extra: str) -> Path:
    export = folder / "export"
    train.main(["fit", "--config", str(ROOT / "recipes" / recipe), "--trainer.accelerator", "gpu",
                "--trainer.devices", "1", "--trainer.max_steps", "5", "--trainer.logger", "false",
                "--trainer.enable_progress_bar", "false", "--trainer.enable_checkpointing", "false",
                "--trainer.default_root_dir", str(folder), "--data.train", str(data), "--data.valid", str(data),
                "--data.test", str(data), "--data.cache_dir", str(folder / "cache"), "--export", str(export), *extra])
    return export


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_textvae_train_on_a_gpu_exports_a_model_that_loads_on_the_cpu(precision, tmp_path):
    write_jsonl(tmp_path / "s.jsonl", generate_sentences(64, seed=1))
    export = _train("quickstart.yaml", tmp_path / "s.jsonl", tmp_path, "--trainer.precision", precision)
    loaded = load_export(export)  # onto the CPU
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in loaded.model.parameters())


def test_dialogue_tools_on_a_gpu(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    write_jsonl(data, generate_dialogues(24, seed=1))
    export = _train("synthetic_dialogue_quickstart.yaml", data, tmp_path)
    contexts = tmp_path / "contexts.jsonl"
    contexts.write_text(json.dumps(["i need a hotel in the centre .", "what price range ?"]) + "\n", encoding="utf-8")
    out = tmp_path / "responses.jsonl"
    assert respond.main(["--model", str(export), "--input", str(contexts), "--output", str(out), "-n", "3",
                         "--device", "cuda"]) == 0
    assert len(json.loads(out.read_text(encoding="utf-8"))["responses"]) == 3
    eval_tool.main(["--model", str(export), "--data", str(data), "--max-sentences", "20", "--responses", "2",
                    "--device", "cuda", "--json", str(tmp_path / "eval.json")])
    result = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    assert result["kl"] is not None and result["kl"] >= 0 and result["ppl"] > 1
