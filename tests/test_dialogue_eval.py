"""textvae.dialogue and textvae.dialogue_eval on real tiny dialogue models exported by textvae-train
(tests/dialogue_exports.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from textvae.data.batching import collate_dialogues
from textvae.data.datasets import DialogueDataset, Vocab, load_records
from textvae.data.tokenizers import UNK_ID
from textvae.data.word_vectors import load_word_vectors
from textvae.decoding import Decoding, greedy
from textvae.dialogue import (
    default_decoding,
    default_method,
    describe_method,
    generate_responses,
    responder_floor,
)
from textvae.dialogue_eval import evaluate_dialogues
from textvae.export import load_export
from textvae.models import DialogueModel

pytestmark = pytest.mark.usefixtures("one_thread")


def _load(dialogue_exports, name, tmp_path):
    export = load_export(getattr(dialogue_exports, name))
    records = load_records(dialogue_exports.data, cache_dir=tmp_path / ".cache", kind="dialogues")
    dataset = DialogueDataset(records.select(range(8)), export.tokenizer, acts=Vocab(export.acts))
    return export, dataset


def test_exported_models_honour_the_contract(dialogue_exports, tmp_path):
    export, dataset = _load(dialogue_exports, "kgcvae", tmp_path)
    model = export.model
    assert isinstance(model, DialogueModel) and default_method(model) == "greedy"
    assert default_decoding(model) == Decoding("greedy")
    batch = collate_dialogues([dataset[i] for i in range(5)])
    greedy_12 = Decoding("greedy", max_len=12)
    out = generate_responses(model, batch, num_samples=3, decoding=greedy_12,
                             generator=torch.Generator().manual_seed(0))
    assert len(out.ids) == 5 and all(len(r) == 3 for r in out.ids) and len(out.acts[0]) == 3
    forced = generate_responses(model, batch, num_samples=2, decoding=greedy_12, acts=torch.full((5,), 4),
                                generator=torch.Generator().manual_seed(0))
    assert forced.acts == [[4, 4]] * 5
    hred = load_export(dialogue_exports.hred).model
    assert default_method(hred) == "sample" and default_decoding(hred) == Decoding("sample")
    assert generate_responses(hred, batch, num_samples=2, decoding=greedy_12).acts is None


@pytest.mark.parametrize("name", ["vhred", "cvae", "kgcvae"])
def test_latent_models_decode_each_sampled_z_greedily(name, dialogue_exports, tmp_path):
    export, dataset = _load(dialogue_exports, name, tmp_path)
    model = export.model
    batch = collate_dialogues([dataset[i] for i in range(4)])
    method = default_method(model)
    out = generate_responses(model, batch, num_samples=3, decoding=Decoding(method, max_len=10),
                             generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        condition = model.response_condition(batch, num_samples=3, generator=torch.Generator().manual_seed(1))
        expected = greedy(model, condition.condition, 10, banned=[UNK_ID])  # (3 * 4) responses, sample-major
    assert method == "greedy" and out.ids == [[expected[s * 4 + b] for s in range(3)] for b in range(4)]


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_responses_never_say_unk_unless_allowed(method, dialogue_exports, tmp_path):
    export, dataset = _load(dialogue_exports, "cvae", tmp_path)
    model = export.model
    with torch.no_grad():
        model.decoder.output.bias[UNK_ID] += 50.0  # a decoder that would say <unk> at every step
    batch = collate_dialogues([dataset[i] for i in range(4)])

    def words(**options):
        out = generate_responses(model, batch, num_samples=2, decoding=Decoding(method, max_len=6, **options),
                                 generator=torch.Generator().manual_seed(0))
        return [ids for responses in out.ids for ids in responses]

    assert all(ids == [UNK_ID] * 6 for ids in words(allow_unk=True))
    assert all(ids and UNK_ID not in ids for ids in words())
    assert describe_method(model, Decoding(method, allow_unk=True, temperature=0.7)).endswith(
        {"greedy": "(<unk> allowed)", "beam": "(beam 5, <unk> allowed)", "sample": "(T 0.7, <unk> allowed)"}[method])


def test_responder_floor():
    assert responder_floor(["A", "B", "A"]) == [0, 1, 0]
    assert responder_floor(["A"]) == [0]


def test_hred_perplexity_is_exact_and_counts_eos(dialogue_exports, tmp_path):
    export, dataset = _load(dialogue_exports, "hred", tmp_path)
    result = evaluate_dialogues(export.model, dataset, export.tokenizer, responses=0, batch_size=7)
    with torch.no_grad():
        batch = collate_dialogues([dataset[i] for i in range(len(dataset))])
        nll = export.model(batch).reconstruction.sum().item()
    assert result.tokens == dataset.num_targets == batch.num_targets
    assert result.nll == pytest.approx(nll / len(dataset), rel=1e-5)
    assert result.ppl == pytest.approx(math.exp(nll / result.tokens), rel=1e-5)
    assert not result.nll_is_bound and result.kl is None and result.bleu_recall is None
    assert "(exact)" in result.table()


@pytest.mark.parametrize("name", ["vhred", "cvae"])
def test_latent_model_reports_the_elbo_bound(name, dialogue_exports, tmp_path):
    export, dataset = _load(dialogue_exports, name, tmp_path)
    result = evaluate_dialogues(export.model, dataset, export.tokenizer, responses=4, batch_size=4)  # the default
    assert result.nll_is_bound and result.nll == pytest.approx(result.reconstruction + result.kl)
    assert result.act_nll is None
    assert result.kl > 0 and "upper bound: -ELBO with the recognition network" in result.table()
    assert result.decoding == "greedy per sampled z"
    for r, p in zip(result.bleu_recall, result.bleu_precision, strict=True):
        assert 0 <= p <= r <= 1
    assert all(0 <= v <= 1 for v in (result.distinct_1, result.distinct_2, result.distinct_1_within))
    assert result.act_accuracy is None and result.acts_scored is None
    again = evaluate_dialogues(export.model, dataset, export.tokenizer, responses=4, batch_size=4,
                               decoding=Decoding("greedy"))
    timing = {"seconds", "contexts_per_second"}
    assert {k: v for k, v in result.to_dict().items() if k not in timing} == \
           {k: v for k, v in again.to_dict().items() if k not in timing}  # same seed, same numbers
    json.loads(result.to_json())


def test_one_sample_makes_recall_equal_precision(dialogue_exports, tmp_path):
    export, dataset = _load(dialogue_exports, "hred", tmp_path)
    result = evaluate_dialogues(export.model, dataset, export.tokenizer, responses=1,
                                decoding=Decoding("sample", max_len=15))
    assert result.bleu_recall == pytest.approx(result.bleu_precision)
    assert result.decoding == "sample (T 1)"  # the temperature is part of the description


def test_kgcvae_act_accuracy_and_embeddings(dialogue_exports, tmp_path):
    export, dataset = _load(dialogue_exports, "kgcvae", tmp_path)
    vectors_file = tmp_path / "vectors.txt"
    g = torch.Generator().manual_seed(0)
    words = export.tokenizer.tokens[4:]
    vectors_file.write_text("".join(f"{w} " + " ".join(f"{x:.4f}" for x in torch.randn(5, generator=g).tolist()) + "\n"
                                    for w in words), encoding="utf-8")
    vectors = load_word_vectors(vectors_file)
    result = evaluate_dialogues(export.model, dataset, export.tokenizer, responses=3,
                                decoding=Decoding("greedy", max_len=15), embeddings=vectors,
                                embeddings_source=vectors_file.name)
    assert result.acts_scored == 3 * len(dataset) and 0 <= result.act_accuracy <= 1
    # the decoder reads the gold act, so the bound is on -log p(x, y | c): the act's NLL is counted
    assert result.act_nll > 0 and result.nll == pytest.approx(result.reconstruction + result.kl + result.act_nll)
    assert "act NLL" in result.table()
    e = result.embedding
    assert e.coverage == pytest.approx(1.0) and e.vectors == "vectors.txt"
    for name in ("average", "extrema", "greedy"):
        assert -1 <= getattr(e, f"{name}_precision") <= getattr(e, f"{name}_recall") <= 1
    table = result.table()
    assert "act accuracy" in table and "embedding greedy" in table
    assert len(result.examples) == 3 and len(result.examples[0]["responses"]) == 3
