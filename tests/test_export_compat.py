"""Exports written before: format version 1 (tests/fixtures/exports_v1, see its README) loads with this
code, its info upgraded to Export's typed fields and SentenceVAE's mu_batchnorm to a posterior component;
and the typed fields are checked on loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from textvae.data.batching import DialogueExample, SentenceExample, collate_dialogues, collate_sentences
from textvae.data.records import DataError
from textvae.export import VERSION, _upgrade_v1, load_export, save_export

FIXTURES = Path(__file__).parent / "fixtures" / "exports_v1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
NAMES = ["sentence_vae", "sentence_vae_bn", "vhred", "kgcvae"]


def _config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", NAMES)
def test_version_1_loads_with_its_info_as_typed_fields(name):
    old = _config(FIXTURES / name)
    assert old["version"] == 1
    export = load_export(FIXTURES / name)
    info = old["info"]
    assert export.kind == info["kind"]
    assert export.max_context == info.get("max_context") and export.max_len == info.get("max_len")
    for category in ("labels", "acts", "emotions", "topics"):
        assert getattr(export, category) == old["categories"].get(category, [])
    assert export.info == {"data": info["data"]}  # provenance only


@pytest.mark.parametrize("name", ["sentence_vae", "sentence_vae_bn"])
def test_version_1_sentence_models_encode_as_they_did(name):
    export = load_export(FIXTURES / name)
    expected = EXPECTED[name]
    batch = collate_sentences([SentenceExample(export.tokenizer.encode(text), None, i)
                               for i, text in enumerate(expected["texts"])])
    with torch.no_grad():
        mu, logvar = export.model.encode(batch.tokens, batch.lengths)  # (B, Z) x2
    torch.testing.assert_close(mu, torch.tensor(expected["mu"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(logvar, torch.tensor(expected["logvar"]), atol=1e-5, rtol=0)


def test_version_1_sentence_models_decode_as_they_did():
    """Same decoder log-likelihood at the stored posterior means: the weights landed where they were."""
    for name in ("sentence_vae_bn", "sentence_vae"):
        export = load_export(FIXTURES / name)
        expected = EXPECTED[name]
        batch = collate_sentences([SentenceExample(export.tokenizer.encode(text), None, i)
                                   for i, text in enumerate(expected["texts"])])
        with torch.no_grad():
            log_px = export.model.log_px_given_z(batch, torch.tensor(expected["mu"])[None])[0]
        torch.testing.assert_close(log_px, torch.tensor(expected["log_px_given_mu"]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["vhred", "kgcvae"])
def test_version_1_dialogue_models_compute_as_they_did(name):
    """The prior and recognition networks moved (prior_network -> prior, recognition_network.head ->
    posterior): a version-1 export's weights still land on them, and the model computes what it did."""
    export = load_export(FIXTURES / name)
    model, tokenizer, expected = export.model, export.tokenizer, EXPECTED[name]
    knowledge = name == "kgcvae"
    examples = [
        DialogueExample([tokenizer.encode("the food was great ."), tokenizer.encode("i loved the pasta .")], [0, 1],
                        tokenizer.encode("we will come back ."), 1 if knowledge else None, None,
                        0 if knowledge else None, 0),
        DialogueExample([tokenizer.encode("the service was slow .")], [0], tokenizer.encode("the food was great ."),
                        0 if knowledge else None, None, 1 if knowledge else None, 1)]
    batch = collate_dialogues(examples)
    with torch.no_grad():
        inference = model.infer(batch)
        log_px = model.log_px_given_z(batch, inference.q.mu[None], condition=inference.condition)[0]
        if knowledge:  # the stored figure is the decoder's alone; kgCVAE's likelihood adds log p(act | c, z)
            act_logits = model.act_network(torch.cat([inference.condition, inference.q.mu], dim=-1))
            log_px = log_px - torch.log_softmax(act_logits, -1).gather(1, batch.acts[:, None]).squeeze(1)
    for got, key in ((inference.p.mu, "mu_prior"), (inference.p.logvar, "logvar_prior"), (inference.q.mu, "mu"),
                     (inference.q.logvar, "logvar"), (log_px, "log_px_given_mu")):
        torch.testing.assert_close(got, torch.tensor(expected[key]), atol=1e-4, rtol=0)


def test_version_1_mu_batchnorm_becomes_a_posterior_component():
    def upgraded(gamma: float) -> dict:
        config = _config(FIXTURES / "sentence_vae")
        config["model"]["init_args"]["mu_batchnorm"] = gamma
        return _upgrade_v1(config)["model"]["init_args"]

    assert upgraded(0.5)["posterior"] == {"class_path": "textvae.posteriors.BatchNormGaussian",
                                          "init_args": {"gamma": 0.5}}
    assert "mu_batchnorm" not in upgraded(0.5)
    assert "posterior" not in upgraded(0.0) and "mu_batchnorm" not in upgraded(0.0)


def test_a_re_export_is_the_current_version_with_the_same_fields(tmp_path):
    old = load_export(FIXTURES / "kgcvae")
    save_export(tmp_path / "kgcvae", old.model, old.tokenizer, kind=old.kind, max_context=old.max_context,
                max_len=old.max_len, acts=old.acts, emotions=old.emotions, topics=old.topics, info=old.info)
    config = _config(tmp_path / "kgcvae")
    assert config["version"] == VERSION == 2 and config["kind"] == "dialogues" and config["max_len"] == 30
    new = load_export(tmp_path / "kgcvae")
    assert (new.kind, new.max_context, new.max_len, new.categories, new.info) == \
           (old.kind, old.max_context, old.max_len, old.categories, old.info)


def test_kind_defaults_to_what_the_model_is(tmp_path):
    for name, kind in (("vhred", "dialogues"), ("sentence_vae", "sentences")):
        export = load_export(FIXTURES / name)
        save_export(tmp_path / name, export.model, export.tokenizer)
        assert load_export(tmp_path / name).kind == kind


def _edited(tmp_path: Path, name: str, edit) -> Path:
    folder = tmp_path / name
    if not folder.exists():
        shutil.copytree(FIXTURES / name, folder)
    config = _config(FIXTURES / name)
    edit(config)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def _set(path: str, value):
    """An edit of a config: ``value`` at ``path`` (keys joined by dots)."""
    *parents, last = path.split(".")

    def edit(config):
        for key in parents:
            config = config[key]
        config[last] = value
    return edit


@pytest.mark.parametrize("edit, field", [
    (_set("info.max_context", "3"), "max_context"),
    (_set("info.max_len", -1), "max_len"),
    (_set("info.max_len", True), "max_len"),
    (_set("info.kind", "tweets"), "kind"),
    (_set("categories.acts", "inform question"), "categories.acts"),
    (_set("categories.topics", ["a", 2]), "categories.topics"),
    (_set("categories", ["acts"]), "categories"),
    (_set("categories.moods", []), "moods"),
    (_set("info", ["data"]), "info"),
])
def test_wrong_fields_of_a_version_1_export_are_one_line_errors(edit, field, tmp_path):
    folder = _edited(tmp_path, "kgcvae", edit)
    with pytest.raises(DataError) as error:
        load_export(folder)
    message = str(error.value)
    assert message.startswith(str(folder / "config.json")) and field in message and "re-export" in message
    assert "\n" not in message


def test_wrong_fields_of_a_version_2_export_are_one_line_errors(tmp_path):
    old = load_export(FIXTURES / "vhred")
    save_export(tmp_path / "vhred", old.model, old.tokenizer, max_context=3, max_len=30)
    good = _config(tmp_path / "vhred")
    for field, value in (("max_context", "3"), ("max_len", -2), ("kind", None)):
        (tmp_path / "vhred" / "config.json").write_text(json.dumps(good | {field: value}), encoding="utf-8")
        with pytest.raises(DataError, match=f"config.json: {field} must be .*; re-export the model$"):
            load_export(tmp_path / "vhred")
    with pytest.raises(ValueError, match="max_len must be"):  # save_export checks the same fields
        save_export(tmp_path / "other", old.model, old.tokenizer, max_len=0)


@pytest.mark.parametrize("version, words", [(VERSION + 1, "newer than this textvae reads"),
                                            (0, "unknown export format"), ("2", "unknown export format")])
def test_a_version_this_code_does_not_know_is_a_one_line_error(version, words, tmp_path):
    folder = _edited(tmp_path, "sentence_vae", _set("version", version))
    with pytest.raises(DataError, match=words) as error:
        load_export(folder)
    assert "\n" not in str(error.value)
    if version == VERSION + 1:
        assert "upgrade textvae" in str(error.value)
