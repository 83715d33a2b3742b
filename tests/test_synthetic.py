from collections import Counter

import pytest

from textvae.data.records import read_jsonl, write_jsonl
from textvae.data.synthetic import (
    _TOPICS,
    DIALOGUE_ACTS,
    DIALOGUE_SLOTS,
    DIALOGUE_TOPICS,
    SENTENCE_ATTRIBUTES,
    SPEAKERS,
    _verb_forms,
    generate_dialogues,
    generate_sentences,
    sentence_attributes_from_text,
)


@pytest.fixture(scope="module")
def sentences():
    return generate_sentences(10_000, seed=0)


@pytest.fixture(scope="module")
def dialogues():
    return generate_dialogues(2_000, seed=0)


def _mentions(text: str, value: str) -> bool:
    return f" {value} " in f" {text} "


def test_deterministic_and_seed_sensitive():
    assert generate_sentences(200, seed=3) == generate_sentences(200, seed=3)
    assert generate_dialogues(50, seed=3) == generate_dialogues(50, seed=3)
    assert [s.text for s in generate_sentences(200, seed=3)] != [s.text for s in generate_sentences(200, seed=4)]
    assert [d.turns for d in generate_dialogues(50, seed=3)] != [d.turns for d in generate_dialogues(50, seed=4)]


def test_counts_and_bad_n():
    assert len(generate_sentences(17, seed=1)) == 17
    assert len(generate_dialogues(17, seed=1)) == 17
    assert generate_sentences(0, seed=1) == [] and generate_dialogues(0, seed=1) == []
    with pytest.raises(ValueError):
        generate_sentences(-1, seed=1)
    with pytest.raises(ValueError):
        generate_dialogues(-1, seed=1)


def test_topic_lexicons_are_disjoint():
    owner: dict[str, str] = {}
    for name, topic in _TOPICS.items():
        words = {*topic.roles, *topic.nouns, *topic.adjectives, *topic.positive, *topic.negative,
                 *_verb_forms(topic.verbs), *(w for place in topic.places for w in place.split()[2:])}
        for word in words:
            assert owner.setdefault(word, name) == name, f"{word!r} in {owner[word]} and {name}"


def test_sentence_attributes_are_valid_and_recoverable(sentences):
    for sentence in sentences:
        assert sentence.text and sentence.text == sentence.text.lower()
        assert set(sentence.attributes) == set(SENTENCE_ATTRIBUTES)
        for name, value in sentence.attributes.items():
            assert isinstance(value, str) and value in SENTENCE_ATTRIBUTES[name]
        assert sentence.label == sentence.attributes["topic"]
        assert sentence_attributes_from_text(sentence.text) == sentence.attributes, sentence.text


def test_sentence_shape(sentences):
    lengths = [len(s.text.split()) for s in sentences]
    assert 4 <= min(lengths) and max(lengths) <= 25
    for sentence in sentences:
        tokens = sentence.text.split()
        assert tokens[-1] in (".", "?") and "" not in tokens
        assert all(t in ",.?" or t.isalpha() for t in tokens), sentence.text  # punctuation split off


def test_vocabulary_and_uniqueness(sentences):
    vocab = {w for s in sentences for w in s.text.split()}
    assert len(vocab) >= 400
    assert len({s.text for s in sentences}) / len(sentences) >= 0.95


def test_every_attribute_value_is_well_represented(sentences):
    for name, values in SENTENCE_ATTRIBUTES.items():
        counts = Counter(s.attributes[name] for s in sentences)
        for value in values:  # uniform draws: each value within half of its fair share
            assert counts[value] >= 0.5 * len(sentences) / len(values), (name, value, counts)


def test_recovery_reads_the_text():
    assert sentence_attributes_from_text("the old chef cooked a spicy soup happily in the kitchen .") == {
        "topic": "food", "sentiment": "positive", "tense": "past", "subject": "role", "form": "statement",
        "length": "medium"}
    assert sentence_attributes_from_text("will they hate the boring match ?") == {
        "topic": "sports", "sentiment": "negative", "tense": "future", "subject": "they", "form": "question",
        "length": "short"}


def test_dialogue_structure(dialogues):
    assert {d.topic for d in dialogues} == set(DIALOGUE_TOPICS)
    assert {t.act for d in dialogues for t in d.turns} == set(DIALOGUE_ACTS)
    for dialogue in dialogues:
        assert 4 <= len(dialogue.turns) <= 12
        assert dialogue.topic in DIALOGUE_TOPICS and dialogue.id
        speakers = [t.speaker for t in dialogue.turns]
        assert speakers == [SPEAKERS[i % 2] for i in range(len(speakers))]  # alternate, user first
        for turn in dialogue.turns:
            assert turn.act in DIALOGUE_ACTS
            assert turn.text.strip() and turn.text == turn.text.lower() and "  " not in turn.text
        goal = dialogue.meta["goal"]
        assert set(goal) == set(DIALOGUE_SLOTS[dialogue.topic])
        assert all(goal[slot] in DIALOGUE_SLOTS[dialogue.topic][slot] for slot in goal)


def test_system_repeats_what_the_user_said(dialogues):
    confirmations = 0
    for dialogue in dialogues:
        goal, changed = dialogue.meta["goal"], dialogue.meta.get("changed")
        denied = next((i for i, t in enumerate(dialogue.turns) if t.act == "deny"), len(dialogue.turns))
        for i, turn in enumerate(dialogue.turns):
            if turn.speaker != "system" or turn.act not in ("confirm", "offer"):
                continue
            said = " ".join(t.text for t in dialogue.turns[:i] if t.speaker == "user")
            for slot, value in goal.items():
                if changed and slot == changed["slot"] and i < denied:
                    value = changed["from"]  # confirmed before the user changed it
                if turn.act == "confirm" or _mentions(turn.text, value):
                    assert _mentions(turn.text, value), (turn.text, slot, value)
                    assert _mentions(said, value), (said, slot, value)
            confirmations += turn.act == "confirm"
    assert confirmations > 100


def test_weather_forecast_answers_the_goal(dialogues):
    for dialogue in (d for d in dialogues if d.topic == "weather"):
        forecast = next(t for t in dialogue.turns if t.speaker == "system" and "degrees" in t.text)
        assert all(_mentions(forecast.text, v) for v in dialogue.meta["goal"].values())


def test_round_trips_through_jsonl(tmp_path):
    sentences, dialogues = generate_sentences(50, seed=2), generate_dialogues(50, seed=2)
    write_jsonl(tmp_path / "s.jsonl", sentences)
    write_jsonl(tmp_path / "d.jsonl", dialogues)
    assert list(read_jsonl(tmp_path / "s.jsonl", "sentences")) == sentences
    assert list(read_jsonl(tmp_path / "d.jsonl", "dialogues")) == dialogues
