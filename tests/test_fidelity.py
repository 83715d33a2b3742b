"""Context fidelity (textvae.fidelity): slot values and the goal so far on hand-written dialogues, the domain
labels of turns, the counts behind the figures, and textvae-eval --domain-classifier end to end."""

import json

import pytest

from textvae.classifier import labelled_texts, train_classifier
from textvae.fidelity import GENERAL, FidelityTotals, GoalTracker, domain_turns

pytestmark = pytest.mark.usefixtures("one_thread")


def dialogue(topic, goal, texts, changed=None):
    meta = {"goal": goal, **({"changed": changed} if changed else {})}
    return {"topic": topic, "meta": json.dumps(meta),  # loaded records keep meta as a JSON string
            "turns": [{"speaker": "user" if i % 2 == 0 else "system", "text": t} for i, t in enumerate(texts)]}


RECORDS = [
    dialogue("restaurant", {"food": "greek", "area": "west"},
             ["i need greek food in the west .", "how about the red oak ? it serves greek food in the west ."]),
    dialogue("train", {"departure": "new york", "destination": "ely", "day": "monday"},
             ["a train from new york to ely .", "which station are you departing from ?", "on monday ."]),
    dialogue("taxi", {"departure": "station", "destination": "museum"},
             ["a taxi from the station to the museum .", "thanks ."]),
    dialogue("hotel", {"area": "south", "stars": "four"},
             ["a hotel in the north with four stars .", "no , actually in the south .", "the south , then ."],
             changed={"slot": "area", "from": "north"}),
]


def test_slot_values_exclude_words_that_name_no_slot_and_prefer_the_longest():
    tracker = GoalTracker(RECORDS)
    # "station" is the taxi's goal, but a train dialogue says it without its goal having it: ambiguous
    assert tracker.ambiguous == [("station",)]
    assert ("new", "york") in tracker.values and ("north",) in tracker.values  # a changed-from value counts
    assert tracker.values_in("From New York to the west via the station , greek") == ["new york", "west", "greek"]
    assert tracker.values_in("nothing here .") == []


def test_the_goal_so_far_keeps_a_changed_value_until_the_new_one_is_named():
    tracker = GoalTracker(RECORDS)
    assert tracker.goal_so_far(0, 1) == {"greek", "west"}
    assert tracker.goal_so_far(1, 2) == {"new york", "ely", "monday"}
    assert tracker.goal_so_far(3, 0) == {"north", "four"}  # the user's new value comes at turn 1
    assert tracker.goal_so_far(3, 1) == tracker.goal_so_far(3, 2) == {"south", "four"}
    assert GoalTracker([dialogue("x", {}, ["hi ."])]).has_goals is False


def test_domain_turns_label_turns_shared_across_topics_general():
    records = [dialogue("a", {}, ["book it .", "ref 12 done .", "pasta please ."]),
               dialogue("b", {}, ["book it .", "ref 98 done .", "a cab please ."]),
               {"topic": None, "meta": None, "turns": [{"speaker": "u", "text": "untopical ."}]}]
    texts, labels = domain_turns(records)
    assert list(zip(texts, labels, strict=True)) == [
        ("book it .", GENERAL), ("ref 12 done .", GENERAL), ("pasta please .", "a"),
        ("book it .", GENERAL), ("ref 98 done .", GENERAL), ("a cab please .", "b")]
    pairs = labelled_texts(records, "topic", "dialogues")
    assert (pairs.texts, pairs.labels, pairs.unlabelled) == (texts, labels, 1)


class Fixed:
    """A classifier stand-in that answers a fixed label per text."""

    def __init__(self, answers):
        self.answers = answers
        self.labels = sorted({*answers.values(), GENERAL})

    def predict(self, texts):
        return [self.labels.index(self.answers[t]) for t in texts]


def test_fidelity_counts_by_hand():
    tracker = GoalTracker(RECORDS)
    classifier = Fixed({"greek in the west .": "restaurant", "greek in the north .": "restaurant",
                        "a taxi to ely .": "taxi", "thanks .": GENERAL,
                        "how about the red oak ? it serves greek food in the west .": "restaurant"})
    totals = FidelityTotals(classifier, "fixed", tracker)
    totals.add(["greek in the west .", "greek in the north .", "a taxi to ely .", "thanks ."],
               "how about the red oak ? it serves greek food in the west .", "restaurant", 0, 1, "system")
    totals.add(["greek in the north ."], "greek in the west .", "restaurant", 0, 0, "user")
    result = totals.result()
    assert result.by_speaker == {
        "system": {"responses": 4, "domain_share": 3 / 4, "slot_values": 5, "slot_match": 3 / 5},
        "user": {"responses": 1, "domain_share": 1.0, "slot_values": 2, "slot_match": 1 / 2}}
    assert result.slot_values == 7 and result.slot_match == 4 / 7 and result.responses == 5
    totals = FidelityTotals(classifier, "fixed", tracker)
    totals.add(["greek in the west .", "greek in the north .", "a taxi to ely .", "thanks ."],
               "how about the red oak ? it serves greek food in the west .", "restaurant", 0, 1)
    result = totals.result()
    assert result.by_speaker == {}
    assert result.responses == 4 and result.domain_share == 3 / 4 and result.general_share == 1 / 4
    assert result.slot_values == 5 and result.slot_match == 3 / 5  # greek, west, greek, [north], [ely]
    assert result.reference_domain_share == 1.0 and result.reference_slot_match == 1.0
    with pytest.raises(ValueError, match="general"):
        FidelityTotals(train_classifier(["a", "b"], ["x", "y"], min_count=1), "acts", tracker)


def test_eval_reports_context_fidelity_with_a_domain_classifier(dialogue_exports, tmp_path, capsys):
    from tools import classifier
    from tools import eval as eval_tool

    data = str(dialogue_exports.data)
    for key in ("topic", "act"):
        assert classifier.main(["--data", data, "--label-key", key, "--out", str(tmp_path / key)]) == 0
    out = tmp_path / "eval.json"
    assert eval_tool.main(["--model", str(dialogue_exports.hred), "--data", data, "--responses", "2",
                           "--max-sentences", "20", "--domain-classifier", str(tmp_path / "topic"),
                           "--json", str(out)]) == 0
    fidelity = json.loads(out.read_text())["fidelity"]
    assert 0 <= fidelity["domain_share"] <= 1 and 0 <= fidelity["general_share"] <= fidelity["domain_share"]
    assert fidelity["responses"] == 40 and fidelity["reference_slot_match"] == 1.0
    assert "in the context's domain" in capsys.readouterr().out
    with pytest.raises(SystemExit) as error:  # an act classifier is not a domain classifier
        eval_tool.main(["--model", str(dialogue_exports.hred), "--data", data, "--responses", "2",
                        "--domain-classifier", str(tmp_path / "act")])
    assert error.value.code == 2
    assert "--label-key topic" in capsys.readouterr().err
