"""Pretrained backbones (Optimus style): tiny randomly initialised BERT-style and GPT-2-style models written
locally, nothing downloaded. Checked against the Hugging Face models run directly, against teacher forcing, and
through the training, export and generation tools."""

import json
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

from textvae.data.batching import SentenceExample, collate_sentences  # noqa: E402
from textvae.data.records import DataError  # noqa: E402
from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID, HuggingFaceTokenizer, load_tokenizer  # noqa: E402
from textvae.decoding import beam_search, greedy  # noqa: E402
from textvae.export import load_export, save_export  # noqa: E402
from textvae.inference import importance_samples  # noqa: E402
from textvae.models import SentenceVAE  # noqa: E402
from textvae.models.pretrained import OFFSET, PretrainedDecoder, make_tiny_backbones  # noqa: E402

TEXTS = [
    "the food was great and the staff were friendly .",
    "we ordered the steak fajitas medium with no beans .",
    "will she upgrade a reliable phone in the lab ?",
    "they did not approve their treatment .",
    "the service is slow but the pizza is good .",
    "i love this place , the coffee is amazing .",
] * 20


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    return make_tiny_backbones(tmp_path_factory.mktemp("backbones"), TEXTS, vocab_size=300, width=32, layers=2,
                               heads=2, max_positions=64)


@pytest.fixture(scope="module")
def tokenizer(backbones):
    return load_tokenizer(backbones[1])


def batch_of(tokenizer, texts):
    return collate_sentences([SentenceExample(tokenizer.encode(t), None, i) for i, t in enumerate(texts)])


def vae(backbones, tokenizer, seed=0, **kwargs):
    torch.manual_seed(seed)
    encoder, decoder = backbones
    args = dict(vocab_size=tokenizer.vocab_size, architecture="pretrained", encoder_model=str(encoder),
                decoder_model=str(decoder), latent_dim=4)
    return SentenceVAE(**{**args, **kwargs})


def test_tokenizer_shifts_the_models_ids_past_textvae_specials(backbones, tokenizer, tmp_path):
    own = transformers.AutoTokenizer.from_pretrained(str(backbones[1]))
    text = TEXTS[1]
    assert tokenizer.encode(text) == [i + 4 for i in own.encode(text, add_special_tokens=False)]
    assert tokenizer.vocab_size == len(own) + 4 and OFFSET == 4
    ids = tokenizer.encode(text)
    assert tokenizer.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == text  # byte-level BPE gives the text back
    assert tokenizer.decode([*ids[:2], UNK_ID, *ids[2:]]) == text  # <unk> has no text
    tokenizer.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, HuggingFaceTokenizer) and loaded.encode(text) == ids
    assert loaded.fingerprint == tokenizer.fingerprint
    assert load_tokenizer(backbones[0]).fingerprint != tokenizer.fingerprint  # the encoder's WordPiece
    (tmp_path / "tokenizer.json").write_text(json.dumps({"type": "huggingface", "folder": "../elsewhere"}))
    with pytest.raises(DataError, match="folder"):
        load_tokenizer(tmp_path)


def test_decoder_is_the_lm_on_shifted_ids(backbones, tokenizer):
    """With no latent, textvae's logits over the model's own ids are the LM's own logits, BOS reading the LM's
    end-of-text embedding and the EOS row its end-of-text output row."""
    decoder = PretrainedDecoder(str(backbones[1]), vocab_size=tokenizer.vocab_size).eval()
    lm = transformers.AutoModelForCausalLM.from_pretrained(str(backbones[1])).eval()
    end = lm.config.eos_token_id
    ids = tokenizer.encode(TEXTS[0])
    with torch.no_grad():
        ours = decoder(torch.tensor([[BOS_ID, *ids]]), None)[0]  # (T, V)
        theirs = lm(torch.tensor([[end, *[i - 4 for i in ids]]])).logits[0]  # (T, V')
    assert torch.allclose(ours[:, 4:], theirs[:, : tokenizer.vocab_size - 4], atol=1e-5)
    assert torch.allclose(ours[:, EOS_ID], theirs[:, end], atol=1e-5)


@pytest.mark.parametrize("injection", ["memory", "embedding", "both"])
def test_incremental_decoding_matches_teacher_forcing_and_z_matters(backbones, tokenizer, injection):
    model = vae(backbones, tokenizer, latent_injection=injection).eval()
    batch = batch_of(tokenizer, TEXTS[:3])
    z = torch.randn(3, 4)
    with torch.no_grad():
        full = model.decoder(batch.inputs, z)  # (B, T, V)
        state = model.decoder_start(z)
        steps = []
        for t in range(batch.inputs.shape[1]):
            logits, state = model.decoder_step(batch.inputs[:, t], state)
            steps.append(logits)
        assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
        assert not torch.allclose(model.decoder(batch.inputs, torch.randn(3, 4)), full, atol=1e-3)
    kinds = {"memory": (True, False), "embedding": (False, True), "both": (True, True)}[injection]
    assert (model.decoder.latent_to_memory is not None, model.decoder.latent_to_embedding is not None) == kinds


def test_memory_slot_is_one_more_key_and_value_per_layer(backbones, tokenizer):
    """Memory injection equals the LM run with a one-token cache holding the projected z in every layer."""
    model = vae(backbones, tokenizer, latent_injection="memory").eval()
    decoder = model.decoder
    z = torch.randn(2, 4)
    batch = batch_of(tokenizer, TEXTS[:2])
    slots = decoder.latent_to_memory(z).view(2, decoder.num_layers, decoder.kv_heads, 1, decoder.head_dim)
    cache = transformers.DynamicCache()
    for layer in range(decoder.num_layers):
        cache.update(slots[:, layer], slots[:, layer], layer)
    t = batch.inputs.shape[1]
    embeds = torch.where((batch.inputs < 4).unsqueeze(-1), decoder.special_embedding(batch.inputs.clamp(max=3)),
                         decoder.lm.get_input_embeddings()((batch.inputs - 4).clamp(min=0)))
    with torch.no_grad():
        h = decoder.lm.transformer(inputs_embeds=embeds, attention_mask=torch.ones(2, t + 1),
                                   position_ids=torch.arange(t).expand(2, t),
                                   **{decoder._cache_argument: cache}).last_hidden_state
        assert torch.allclose(decoder.features(batch.inputs, z), h, atol=1e-5)


def test_encoder_reads_the_text_through_its_own_tokenizer(backbones, tokenizer):
    model = vae(backbones, tokenizer)
    batch = batch_of(tokenizer, TEXTS[:4])
    assert model.encoder.texts(batch.tokens) == TEXTS[:4]
    own = transformers.AutoTokenizer.from_pretrained(str(backbones[0]))
    bert = model.encoder.model.eval()
    with torch.no_grad():
        expected = bert(**own(TEXTS[:4], padding=True, return_tensors="pt")).pooler_output
        assert torch.allclose(model.encoder(batch.tokens, batch.lengths), expected, atol=1e-5)


def test_trains_and_the_export_round_trips(backbones, tokenizer, tmp_path):
    model = vae(backbones, tokenizer, word_dropout=0.2)
    batch = batch_of(tokenizer, TEXTS[:6])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(80):
        out = model(batch)
        loss = (out.reconstruction + 0.1 * out.kl.sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.3 * sum(losses[:5])  # six sentences learnt, told apart by z
    save_export(tmp_path / "export", model, tokenizer)
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["assets"] == ["encoder_model", "decoder_model"]
    assert config["model"]["init_args"]["encoder_model"] == "encoder"  # inside the export, not the training's path
    loaded = load_export(tmp_path / "export")
    assert not loaded.model.decoder.load_weights  # rebuilt from the configuration, then the export's weights
    model.eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        expected = importance_samples(model, batch, 5, generator=generator)
        got = importance_samples(loaded.model, batch, 5, generator=torch.Generator().manual_seed(0))
    for a, b in zip(expected, got, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    z = model.encode(batch.tokens, batch.lengths)[0]
    assert greedy(loaded.model, z, 20) == greedy(model, z, 20)
    assert beam_search(loaded.model, z[:2], 20, beam_size=3) == beam_search(model, z[:2], 20, beam_size=3)


def test_export_refuses_an_asset_outside_it(backbones, tokenizer, tmp_path):
    save_export(tmp_path / "export", vae(backbones, tokenizer), tokenizer)
    path = tmp_path / "export" / "config.json"
    config = json.loads(path.read_text())
    config["model"]["init_args"]["decoder_model"] = str(backbones[1])  # an absolute path elsewhere
    path.write_text(json.dumps(config))
    with pytest.raises(DataError, match="asset 'decoder_model' must name a folder inside the export"):
        load_export(tmp_path / "export")


def test_argument_errors(backbones, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="needs encoder_model and decoder_model"):
        SentenceVAE(vocab_size=tokenizer.vocab_size, architecture="pretrained", encoder_model=str(backbones[0]))
    with pytest.raises(ValueError, match="go with architecture 'pretrained'"):
        SentenceVAE(vocab_size=30, architecture="lstm", decoder_model=str(backbones[1]))
    with pytest.raises(ValueError, match="train on the decoder's own tokenizer"):
        vae(backbones, tokenizer, vocab_size=tokenizer.vocab_size + 1000)
    with pytest.raises(DataError, match="no Hugging Face tokenizer here"):
        vae(backbones, tokenizer, decoder_model=str(tmp_path))
    for name in ("tokenizer.json", "tokenizer_config.json"):  # a tokenizer without its model
        (tmp_path / name).write_bytes((backbones[1] / name).read_bytes())
    with pytest.raises(DataError, match="no config.json"):
        vae(backbones, tokenizer, decoder_model=str(tmp_path))
    (tmp_path / "config.json").write_bytes((backbones[1] / "config.json").read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"a pickle is never loaded")
    with pytest.raises(DataError, match="no pickled checkpoint"):
        vae(backbones, tokenizer, decoder_model=str(tmp_path))


def test_recipe_trains_exports_evaluates_samples_and_interpolates(backbones, tmp_path):
    """recipes/synthetic_optimus.yaml, with these tiny backbones and a few steps, through the tools a user runs."""
    data = tmp_path / "data"
    data.mkdir()
    for split, rows in (("train", TEXTS), ("valid", TEXTS[:12]), ("test", TEXTS[:12])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    encoder, decoder = backbones
    run = tmp_path / "run"

    def tool(name, *args):
        done = subprocess.run([sys.executable, "-m", f"tools.{name}", *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    tool("train", "fit", "--config", "recipes/synthetic_optimus.yaml", "--run", str(run),
         "--model.model.init_args.encoder_model", str(encoder), "--model.model.init_args.decoder_model", str(decoder),
         "--data.tokenizer_dir", str(decoder), "--data.train", str(data / "train.jsonl"),
         "--data.valid", str(data / "valid.jsonl"), "--data.test", str(data / "test.jsonl"), "--data.batch_size", "16",
         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "1",
         "--trainer.enable_progress_bar", "false")
    export = run / "export"
    assert (export / "encoder" / "config.json").is_file() and (export / "decoder" / "tokenizer.json").is_file()
    report = tool("eval", "--model", str(export), "--data", str(data / "test.jsonl"), "--samples", "5")
    nll = float(next(line for line in report.splitlines() if line.startswith("IW-NLL")).split()[2])
    assert 0 < nll < 500
    samples = tool("sample", "--model", str(export), "-n", "3", "--max-len", "12").strip().splitlines()
    assert len(samples) == 3
    path = tool("homotopy", "--model", str(export), "--from", TEXTS[0], "--to", TEXTS[1], "--steps", "3")
    assert TEXTS[0] in path and TEXTS[1] in path
