"""Speaker profiles (Zhao et al. 2017's caller metadata on Switchboard): the features, the examples and
batches that carry them, CVAE/kgCVAE reading them, the data -> model link in textvae-train, and
textvae-respond's "callers"."""

import json
from pathlib import Path

import pytest
import torch

import corpora
from textvae.data.batching import DialogueExample, collate_dialogues
from textvae.data.datasets import DialogueDataset, load_records, texts_of
from textvae.data.profiles import PROFILE_DIM, caller_features, callers_of, example_profile
from textvae.data.tokenizers import WordTokenizer
from textvae.decoding import Decoding
from textvae.export import load_export
from textvae.models import CVAE
from tools import respond, train

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]

ANN = {"age": 47, "education": 2, "sex": "FEMALE", "dialect": "NORTHERN"}
BOB = {"age": 30, "education": 9, "sex": "MALE"}  # education 9: Switchboard's "unknown"


def test_caller_features_follow_zhao_et_al():
    assert caller_features(ANN) == pytest.approx([0.47, 2 / 3, 0.0, 1.0])
    assert caller_features(BOB) == pytest.approx([0.30, 0.0, 1.0, 0.0])  # unknown education -> 0
    assert caller_features({"sex": " male "}) == [0.0, 0.0, 1.0, 0.0]
    assert caller_features({"age": True, "education": "2", "sex": 1}) == [0.0] * 4  # not numbers / names
    assert caller_features(None) == caller_features("A") == [0.0] * 4


def test_example_profile_is_the_responder_then_the_other_caller():
    callers = callers_of(json.dumps({"callers": {"A": ANN, "B": BOB}, "prompt": "x"}))  # a record's JSON meta
    assert example_profile(callers, "B") == caller_features(BOB) + caller_features(ANN)
    assert example_profile(callers, "A") == caller_features(ANN) + caller_features(BOB)
    assert example_profile(callers, "C") == [0.0] * 4 + [0.0] * 4  # not a caller; the other is ambiguous
    assert example_profile(None, "A") == [0.0] * PROFILE_DIM
    assert callers_of({"goal": "x"}) is None and callers_of(None) is None and callers_of({"callers": {}}) is None


def _utts(*pairs):
    return [[caller, text, ["statement", [0, 1, 0, 0]]] for caller, text in pairs]


@pytest.fixture(scope="module")
def switchboard(tmp_path_factory) -> Path:
    """A tiny Switchboard corpus in the kgCVAE format, prepared by textvae-corpus: two dialogues with caller
    metadata (as the original file writes it: quoted strings), one without."""
    folder = tmp_path_factory.mktemp("swda")
    quoted = {"age": 47, "education": " 2", "sex": ' "FEMALE"', "dialect": ' "NORTHERN"'}
    lines = [
        {"A": quoted, "B": {"age": 30, "education": " 9", "sex": ' "MALE"'}, "topic": '"PETS"', "prompt": "p",
         "utts": _utts(("A", "do you have a dog"), ("B", "yes i have two dogs"), ("A", "what kind"),
                       ("B", "a collie and a poodle"))},
        {"A": {"age": 62, "education": " 3", "sex": ' "MALE"'}, "B": quoted, "topic": '"MUSIC"', "prompt": "p",
         "utts": _utts(("B", "do you like music"), ("A", "i like jazz"), ("B", "me too"))},
        {"topic": '"PETS"', "utts": _utts(("A", "hello"), ("B", "hi there"))},
    ]
    source = folder / "source"
    source.mkdir()
    text = "".join(json.dumps(line) + "\n" for line in lines)
    for split in ("train", "valid", "test"):
        (source / f"{split}.jsonl").write_text(text, encoding="utf-8")
    corpora.prepare("switchboard", folder / "prepared", source=source)
    return folder / "prepared"


def test_dataset_and_batches_carry_the_profiles(switchboard, tmp_path):
    records = load_records(switchboard / "train.jsonl", cache_dir=tmp_path / "cache")
    dataset = DialogueDataset(records, WordTokenizer.train(texts_of(records, "dialogues")))
    assert dataset.has_profiles
    ann, bob, old = caller_features(ANN), caller_features(BOB), caller_features({"age": 62, "education": 3,
                                                                                    "sex": "MALE"})
    profiles = [dataset[i].profile for i in range(len(dataset))]
    # dialogue 1: B, A, B respond; dialogue 2: A, B; dialogue 3 (no callers): B
    assert profiles == [bob + ann, ann + bob, bob + ann, old + ann, ann + old, [0.0] * PROFILE_DIM]
    batch = collate_dialogues([dataset[i] for i in range(len(dataset))])
    assert batch.profiles.shape == (6, PROFILE_DIM) and batch.profiles.dtype == torch.float
    mixed = collate_dialogues([dataset[0], dataset[0]._replace(profile=None)])
    assert torch.equal(mixed.profiles[1], torch.zeros(PROFILE_DIM))  # an example without one reads unknown
    assert collate_dialogues([dataset[0]._replace(profile=None)]).profiles is None
    with pytest.raises(ValueError, match="different sizes"):
        collate_dialogues([dataset[0], dataset[1]._replace(profile=[1.0])])


def test_cvae_reads_the_profiles_in_its_condition(switchboard, tmp_path):
    records = load_records(switchboard / "train.jsonl", cache_dir=tmp_path / "cache")
    tokenizer = WordTokenizer.train(texts_of(records, "dialogues"))
    dataset = DialogueDataset(records, tokenizer)
    torch.manual_seed(0)
    model = CVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, utterance_dim=8, context_dim=8, latent_dim=3,
                 prior_dim=8, decoder_dim=8, mlp_dim=8, profile_dim=PROFILE_DIM).eval()
    batch = collate_dialogues([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        c = model.encode_context(batch)
        assert c.shape[1] == model.context_encoder.output_dim + PROFILE_DIM
        assert torch.equal(c[:, -PROFILE_DIM:], batch.profiles)
        swapped = batch._replace(profiles=batch.profiles.flip(0))
        assert not torch.allclose(model.prior(c, len(c)).mu, model.infer(swapped).p.mu)
        unknown = model.encode_context(batch._replace(profiles=None))  # read as zeros
        assert torch.equal(unknown, model.encode_context(batch._replace(profiles=torch.zeros_like(batch.profiles))))
        with pytest.raises(ValueError, match="reads 8 speaker profile features"):
            model.encode_context(batch._replace(profiles=batch.profiles[:, :4]))
    with pytest.raises(ValueError, match="profile_dim"):
        CVAE(vocab_size=20, profile_dim=-1)


def test_training_links_the_profiles_and_respond_reads_callers(switchboard, tmp_path, capsys):
    export = tmp_path / "export"
    data = [f"--data.{split}={switchboard / f'{split}.jsonl'}" for split in ("train", "valid", "test")]
    train.main(["fit", "--config", str(ROOT / "recipes" / "switchboard_kgcvae.yaml"), "--trainer.fast_dev_run", "true",
                "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                "--trainer.default_root_dir", str(tmp_path), *data, "--data.cache_dir", str(tmp_path / "cache"),
                "--export", str(export)])
    model = load_export(export).model
    assert model.init_args["profile_dim"] == model.profile_dim == PROFILE_DIM

    contexts = tmp_path / "contexts.jsonl"
    turns = {"turns": [{"speaker": "A", "text": "do you have a dog"}]}
    contexts.write_text(json.dumps(turns | {"callers": {"A": ANN, "B": BOB}}) + "\n" + json.dumps(turns) + "\n",
                        encoding="utf-8")
    responder = respond.Responder(export=load_export(export), num_samples=2, decoding=Decoding("greedy", max_len=5),
                                  max_context=3, max_turn_len=30, z_source="prior",
                                  generator=torch.Generator().manual_seed(0), device="cpu")
    lines = respond.read_contexts(contexts, responder, act=None, topic=None)
    assert lines[0].context.profile == pytest.approx(caller_features(BOB) + caller_features(ANN))  # B responds
    assert lines[1].context.profile is None  # no callers: unknown
    out = tmp_path / "out.jsonl"
    assert respond.main(["--model", str(export), "--input", str(contexts), "--output", str(out), "-n", "2",
                         "--max-len", "5"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2

    bad = tmp_path / "bad.jsonl"
    for callers, message in (({"A": ANN}, "must name the two speakers"), ({"A": ANN, "B": 3}, "must map each speaker")):
        bad.write_text(json.dumps(turns | {"callers": callers}) + "\n", encoding="utf-8")
        capsys.readouterr()
        with pytest.raises(SystemExit):
            respond.main(["--model", str(export), "--input", str(bad), "--output", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "bad.jsonl:1" in err[0] and message in err[0], err


def test_a_model_without_profiles_reports_ignored_callers(dialogue_exports, tmp_path, capsys):
    contexts = tmp_path / "contexts.jsonl"
    contexts.write_text(json.dumps({"turns": ["hello ."], "callers": {"A": ANN, "B": BOB}}) + "\n", encoding="utf-8")
    assert respond.main(["--model", str(dialogue_exports.cvae), "--input", str(contexts), "--output",
                         str(tmp_path / "out.jsonl"), "-n", "1", "--max-len", "5"]) == 0
    assert 'ignored the "callers" of 1 line: CVAE was trained without speaker profiles' in capsys.readouterr().err


def test_dialogue_example_profile_defaults_to_none():
    example = DialogueExample(context=[[4]], context_floor=[0], response=[5], act=None, emotion=None, topic=None,
                              index=0)
    assert example.profile is None and collate_dialogues([example]).profiles is None
