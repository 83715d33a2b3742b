"""LaRL (textvae.models.larl) and its reinforcement learning (textvae.reinforce, textvae-reinforce): the
categorical latent's KL against torch.distributions and by hand, REINFORCE on a two-action toy, the task reward on
hand-worked cases, training through textvae-train, generation, export round trip, the decoder that attends to
the context's words and copies them, and the tool end to end."""

import json
import math

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from textvae.data.batching import collate_dialogues
from textvae.data.datasets import DialogueDataset, Vocab, load_records
from textvae.data.records import write_jsonl
from textvae.data.synthetic import generate_dialogues
from textvae.decoding import Decoding, generate
from textvae.dialogue import generate_responses
from textvae.export import load_export, save_export
from textvae.models import HRED, DialogueModel, LaRL
from textvae.models.modules import AttentionRNNDecoder, WithContext
from textvae.reinforce import (
    RewardBaseline,
    RLSettings,
    TaskReward,
    policy_gradient_step,
    reinforce,
    score_policy,
    slot_f1,
    task_reward,
)
from tools import reinforce as reinforce_tool
from tools import train

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(embed_dim=12, utterance_dim=10, context_dim=16, decoder_dim=16, policy_dim=12)


@pytest.fixture(scope="module")
def data(six_dialogues):
    records, tokenizer, dataset = six_dialogues
    return tokenizer, dataset, collate_dialogues([dataset[i] for i in range(7)]), records


def moved_by_one_step(model: LaRL, batch) -> list[str]:
    """The parameters one SGD step on the training loss (reconstruction + KL) changes."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    out = model.train()(batch)
    (out.reconstruction + out.kl.sum(-1)).mean().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    return [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]


def assert_same_terms(model: LaRL, other: LaRL, batch, *, seed: int) -> None:
    """The two models' reconstruction and KL terms of ``batch`` are equal from the same random state."""
    torch.manual_seed(seed)
    a = model(batch)
    torch.manual_seed(seed)
    b = other(batch)
    assert torch.equal(a.reconstruction, b.reconstruction) and torch.equal(a.kl, b.kl)


def build(data, **kwargs) -> LaRL:
    tokenizer, dataset, *_ = data
    torch.manual_seed(0)
    arguments = SMALL | {"num_latents": 3, "num_classes": 4, "num_topics": len(dataset.topics), "topic_dim": 4}
    return LaRL(vocab_size=tokenizer.vocab_size, **arguments | kwargs)


# -- the categorical latent's KL ------------------------------------------------------------------------


def test_lite_kl_is_each_categoricals_kl_to_the_uniform(data):
    model = build(data).eval()
    batch = data[2]
    with torch.no_grad():
        out = model(batch)
        logits = model.policy(model.encode_context(batch)).logits.view(-1, 3, 4)  # (B, M, K)
    expected = kl_divergence(Categorical(logits=logits), Categorical(probs=torch.full((4,), 0.25)))  # (B, M)
    assert out.kl.shape == (batch.context.shape[0], 3) and out.kl_closed_form
    torch.testing.assert_close(out.kl, expected)


def test_lite_kl_by_hand_for_two_classes(data):
    """p = (3/4, 1/4) in every categorical: KL to (1/2, 1/2) = 3/4 log(3/2) + 1/4 log(1/2) per categorical."""
    model = build(data, num_classes=2).eval()
    with torch.no_grad():
        model.policy_head.to_logits.weight.zero_()
        model.policy_head.to_logits.bias.copy_(torch.tensor([math.log(3.0), 0.0] * 3))
        out = model(data[2])
    by_hand = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # 0.1308...
    torch.testing.assert_close(out.kl, torch.full_like(out.kl, by_hand))


def test_full_elbo_kl_is_the_recognition_networks_kl_to_the_policy(data):
    model = build(data, elbo="full").eval()
    batch = data[2]
    with torch.no_grad():
        out = model(batch)
        c = model.encode_context(batch)
        q = model.recognize(c, batch).logits.view(-1, 3, 4)
        p = model.policy(c).logits.view(-1, 3, 4)
    torch.testing.assert_close(out.kl, kl_divergence(Categorical(logits=q), Categorical(logits=p)))


# -- the policy gradient -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["batch_mean", "moving_average"])
def test_policy_gradient_moves_probability_to_the_rewarded_action(kind):
    torch.manual_seed(0)
    logits = torch.nn.Parameter(torch.zeros(2))  # pi(a) = softmax(logits): 1/2 each at the start
    optimizer = torch.optim.SGD([logits], lr=1.0)
    baseline = RewardBaseline(kind)
    for _ in range(40):
        actions = torch.multinomial(torch.softmax(logits.detach(), -1), 16, replacement=True)  # (16,)
        log_prob = torch.log_softmax(logits, -1)[actions]
        policy_gradient_step(optimizer, log_prob, (actions == 1).float(), baseline)  # reward 1 for action 1
    assert torch.softmax(logits.detach(), -1)[1] > 0.95


def test_moving_average_baseline_by_hand():
    baseline = RewardBaseline("moving_average", decay=0.5)
    torch.testing.assert_close(baseline.advantage(torch.tensor([1.0, 3.0])), torch.tensor([-1.0, 1.0]))  # b = 2
    torch.testing.assert_close(baseline.advantage(torch.tensor([6.0, 6.0])), torch.tensor([4.0, 4.0]))  # b = 2
    assert baseline.value == 4.0  # 0.5 * 2 + 0.5 * 6


# -- the task reward ---------------------------------------------------------------------------------------


def test_slot_f1_and_reward_by_hand():
    assert slot_f1(set(), set()) == 1.0
    assert slot_f1({"greek"}, set()) == 0.0 and slot_f1(set(), {"greek"}) == 0.0
    assert slot_f1({"greek", "north"}, {"greek", "west"}) == 0.5  # 2 * 1 / (2 + 2)
    assert slot_f1({"greek"}, {"greek", "west", "cheap"}) == 0.5  # 2 * 1 / (1 + 3)
    assert task_reward(True, 0.5) == 75.0 and task_reward(False, 1.0) == 50.0 and task_reward(False, 0.0) == 0.0


class KeywordTagger:
    """A stand-in act tagger: "offer" when the text says "how about", else "inform"."""

    acts = ["inform", "offer"]

    def tag(self, texts):
        return [1 if "how about" in t else 0 for t in texts]


DIALOGUES = [
    {"turns": [{"text": "i want greek food in the west .", "act": "inform"},
               {"text": "how about the olive tree ? it serves greek food in the west .", "act": "offer"},
               {"text": "thanks .", "act": "inform"}],
     "meta": {"goal": {"food": "greek", "area": "west"}}},
    {"turns": [{"text": "i want thai food in the north .", "act": "inform"},
               {"text": "how about the bangkok house ? it serves thai food .", "act": "offer"}],
     "meta": {"goal": {"food": "thai", "area": "north"}}},
]


def test_task_reward_on_hand_worked_responses():
    reward = TaskReward(DIALOGUES, KeywordTagger())
    terms = reward(["how about it ? greek food in the north .",  # offer (right), {greek, north} vs {greek, west}
                    "it serves greek food in the west .",  # inform (wrong), both values right
                    "you are welcome .",  # right act, no value where none is wanted
                    "how about the north ?"],  # right act, {north} vs {thai}: F1 0
                   [(0, 1), (0, 1), (0, 2), (1, 1)])
    assert terms.act_match.tolist() == [1.0, 0.0, 1.0, 1.0]
    assert terms.slot_f1.tolist() == [0.5, 1.0, 1.0, 0.0]
    assert terms.reward.tolist() == [75.0, 50.0, 100.0, 50.0]


# -- the model: training, generation, export ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LaRL trained 30 steps by textvae-train (through TextVAESystem) and exported by it, and its data
    folder (train and test splits)."""
    folder = tmp_path_factory.mktemp("larl")
    dialogues = generate_dialogues(30, seed=0)
    write_jsonl(folder / "train.jsonl", dialogues)
    write_jsonl(folder / "test.jsonl", dialogues[:4])  # topics the model knows
    recipe = {
        "seed_everything": 0,
        "trainer": {"max_steps": 30, "accelerator": "cpu", "devices": 1, "logger": False,
                    "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "num_sanity_val_steps": 0, "limit_val_batches": 0, "default_root_dir": str(folder)},
        "model": {"model": {"class_path": "textvae.models.LaRL",
                            "init_args": SMALL | {"num_latents": 3, "num_classes": 5, "topic_dim": 4}},
                  "kl_schedule": {"kind": "constant", "max_beta": 0.01}, "lr": 0.01},
        "data": {"train": str(folder / "train.jsonl"), "max_context": 3, "max_len": 30, "batch_size": 16,
                 "cache_dir": str(folder / "cache")},
        "export": str(folder / "export"),
    }
    (folder / "recipe.json").write_text(json.dumps(recipe), encoding="utf-8")
    train.main(["fit", "--config", str(folder / "recipe.json")])
    return folder


def test_trains_generates_and_round_trips_through_an_export(trained, data, tmp_path):
    folder = trained
    export = load_export(folder / "export")
    model = export.model
    assert isinstance(model, LaRL) and isinstance(model, DialogueModel) and model.num_topics > 0
    assert model.latent_dim == 15
    dataset = DialogueDataset(load_records(folder / "test.jsonl", cache_dir=folder / "cache"), export.tokenizer,
                              max_context=3, topics=Vocab(export.topics))
    batch = collate_dialogues([dataset[i] for i in range(5)])
    responses = generate_responses(model, batch, num_samples=3, generator=torch.Generator().manual_seed(0))
    assert len(responses.ids) == 5 and all(len(r) == 3 for r in responses.ids) and responses.acts is None
    assert any(len(ids) > 0 for r in responses.ids for ids in r)
    # each action is one one-hot per categorical; greedy takes each categorical's most likely class
    with torch.no_grad():
        condition = model.response_condition(batch, num_samples=2, generator=torch.Generator().manual_seed(0))
        greedy = model.response_condition(batch, greedy=True)
        logits = model.policy(model.encode_context(batch)).logits.view(5, 3, 5)
    assert torch.equal(condition.z.view(10, 3, 5).sum(-1), torch.ones(10, 3))
    assert torch.equal(greedy.z.view(5, 3, 5).argmax(-1), logits.argmax(-1))
    # a second export of the loaded model gives the same responses and likelihoods
    save_export(tmp_path / "again", model, export.tokenizer, kind="dialogues", categories=export.categories)
    again = load_export(tmp_path / "again").model
    assert again.init_args == model.init_args
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    same = generate_responses(again, batch, num_samples=3, generator=torch.Generator().manual_seed(0))
    assert same.ids == responses.ids
    assert_same_terms(model, again, batch, seed=1)


def test_one_training_step_changes_every_part_of_the_model(data):
    model = build(data, elbo="full")
    moved = {name.split(".")[0] for name in moved_by_one_step(model, data[2])}
    assert {"context_encoder", "policy_hidden", "policy_head", "recognition_hidden", "recognition_head",
            "decoder"} <= moved


# -- the decoder that attends to the context's words and copies them -----------------------------------------


def test_attention_and_copy_train_decode_and_round_trip_through_an_export(data, tmp_path):
    """With ``attention`` and ``copy`` the decoder reads the context's words besides [c, z]: one training step moves
    its attention and copy gate with the rest; response_condition carries the words repeated sample-major; greedy,
    beam and sampled decoding run from it; an export loads to the same responses and likelihoods."""
    tokenizer, dataset, batch, _ = data
    model = build(data, elbo="full", attention=True, copy=True)
    assert isinstance(model.decoder, AttentionRNNDecoder) and model.decoder.copy_gate is not None
    moved = {name.rsplit(".", 1)[0] for name in moved_by_one_step(model, batch)}
    assert {"decoder.attention_query", "decoder.attention_out", "decoder.copy_gate", "policy_head.to_logits",
            "recognition_head.to_logits", "context_encoder.utterance.rnn"} <= moved
    model.eval()
    b, n = batch.context.shape[0], 2
    with torch.no_grad():
        condition = model.response_condition(batch, num_samples=n, generator=torch.Generator().manual_seed(0))
        c, words = model.context_and_words(batch)
    assert isinstance(condition.condition, WithContext) and condition.condition.shape == (n * b, c.shape[1] + model.latent_dim)
    assert torch.equal(condition.condition.words.ids, words.ids.repeat(n, 1))  # row s * B + b is context b
    assert torch.equal(condition.condition.vector[:, :c.shape[1]], c.repeat(n, 1))
    decodings = [Decoding("greedy", max_len=10), Decoding("beam", max_len=10, beam_size=3),
                 Decoding("sample", max_len=10)]
    responses = [generate(model, condition.condition, d, generator=torch.Generator().manual_seed(1))
                 for d in decodings]
    assert all(len(ids) == n * b and all(len(r) <= 10 for r in ids) for ids in responses)
    assert any(len(r) > 0 for ids in responses for r in ids)
    # without the words, an attending decoder refuses the condition
    with pytest.raises(ValueError, match="context_and_words"):
        model.decoder_condition(c, condition.z[:b])
    save_export(tmp_path / "copy", model, tokenizer, kind="dialogues", categories={"topics": dataset.topics.names})
    loaded = load_export(tmp_path / "copy").model
    assert loaded.init_args == model.init_args and loaded.attention and loaded.init_args["copy"]
    with torch.no_grad():
        again = loaded.response_condition(batch, num_samples=n, generator=torch.Generator().manual_seed(0))
        inputs = batch.inputs.repeat(n, 1)
        assert torch.equal(model.decoder(inputs, condition.condition), loaded.decoder(inputs, again.condition))
    assert torch.equal(condition.z, again.z) and torch.equal(condition.condition.vector, again.condition.vector)
    assert [generate(loaded, again.condition, d, generator=torch.Generator().manual_seed(1))
            for d in decodings] == responses
    assert_same_terms(model, loaded, batch, seed=3)


def test_reinforce_and_scoring_run_on_a_model_that_copies(data):
    """REINFORCE decodes and scores through the words too: it moves the policy alone, and the responses' NLL is
    finite."""
    tokenizer, dataset, _, records = data
    model = build(data, attention=True, copy=True).eval()
    supervised = build(data, attention=True, copy=True).eval()
    reward = TaskReward(records, KeywordTagger())
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    history = reinforce(model, dataset, reward, tokenizer, RLSettings(steps=2, batch_size=4, max_len=8, lr=0.1))
    assert len(history) == 2
    changed = {name.split(".")[0] for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])}
    assert changed == {"policy_hidden", "policy_head"}
    scores = score_policy(model, supervised, dataset, reward, tokenizer, nll_samples=2, max_len=8, max_contexts=6)
    assert scores.responses == 6 and math.isfinite(scores.nll) and scores.nll > 0
    assert scores.reward == pytest.approx(50 * scores.act_match + 50 * scores.slot_f1)


# -- textvae-reinforce ---------------------------------------------------------------------------------


def test_reinforce_tool_end_to_end(trained, tmp_path, capsys):
    folder = trained
    out, figures = tmp_path / "rl", tmp_path / "rl.json"
    assert reinforce_tool.main(["--model", str(folder / "export"), "--data", str(folder), "--out", str(out),
                                "--steps", "4", "--batch-size", "8", "--nll-samples", "2", "--max-contexts", "12",
                                "--json", str(figures), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "supervised" in printed and "after 4 RL steps" in printed
    result = json.loads(figures.read_text())
    assert len(result["history"]) == 4 and result["before"]["responses"] == 12
    for scores in (result["before"], result["after"]):
        assert 0 <= scores["reward"] <= 100 and 0 <= scores["act_match"] <= 1 and scores["nll"] > 0
        # the reward is its two halves, averaged over the same responses
        assert scores["reward"] == pytest.approx(50 * scores["act_match"] + 50 * scores["slot_f1"])
    supervised, rl = load_export(folder / "export").model, load_export(out).model
    changed = {name.split(".")[0] for name, tensor in rl.state_dict().items()
               if not torch.equal(tensor, supervised.state_dict()[name])}
    assert changed == {"policy_hidden", "policy_head"}  # RL moves the policy and nothing else


def test_reinforce_tool_refuses_a_model_without_a_latent_policy(trained, data, tmp_path, capsys):
    tokenizer, *_ = data
    save_export(tmp_path / "hred", HRED(vocab_size=tokenizer.vocab_size, embed_dim=8, utterance_dim=8, context_dim=8,
                                        decoder_dim=8), tokenizer)
    with pytest.raises(SystemExit) as exit_info:
        reinforce_tool.main(["--model", str(tmp_path / "hred"), "--data", str(trained), "--out",
                             str(tmp_path / "rl"), "--device", "cpu"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "needs a LaRL model, got HRED" in error[0]
    assert not (tmp_path / "rl").exists()
