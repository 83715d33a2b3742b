"""Context fidelity of generated dialogue responses: does the context's content reach the response?

For dialogues whose records carry a user goal (``meta.goal``: slot -> value, as the synthetic goal-oriented
dialogues and MultiWOZ-style corpora record it) and a topic (the domain):

* **domain share**: the share of responses that a text classifier (:mod:`textvae.classifier`, trained on the
  corpus' turns by :func:`domain_turns`) places in the context's domain or in ``general`` (turns that carry
  no domain: greetings, thanks, "all booked", which occur alike in dialogues of several domains);
* **slot match**: of the slot values the responses name, the share that match the dialogue's goal so far
  (:class:`GoalTracker`): a response that names "greek" or "west" in a dialogue about greek food in the west
  is right, one that names "london" there is not.

The slot values are the values of every goal in the records (plus a value the user changed their mind
about, ``meta.changed.from``), less the *ambiguous* ones: values that some turn names in a dialogue whose
goal never had them ("station" in "which station are you departing from ?"), since a text naming them
need not name a slot. A text names a value when the value's words occur in it as consecutive words.

The goal so far at turn n: the final goal, except that a value the user changed stays the old one
(``meta.changed``) until the turn where the new value is first named.

The figures are also given per responding speaker: the side that holds the goal (the user) introduces its
values where the context has none to give, so only the other side's responses (the system's) say how much
of the context reaches the response.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

GENERAL = "general"  # the domain label of turns that occur alike in dialogues of several domains
_DIGITS = re.compile(r"\d+")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.lower().split())


def _goal_values(dialogue: dict) -> tuple[dict[str, str], dict | None]:
    meta = dialogue.get("meta") or {}
    if isinstance(meta, str):  # loaded records keep meta as a JSON string (textvae.data.datasets)
        meta = json.loads(meta)
    goal = meta.get("goal") or {} if isinstance(meta, dict) else {}
    if not isinstance(goal, dict):
        return {}, None
    changed = meta.get("changed")
    if not (isinstance(changed, dict) and changed.get("slot") in goal and isinstance(changed.get("from"), str)):
        changed = None
    return {str(slot): str(value) for slot, value in goal.items() if isinstance(value, (str, int, float))}, changed


def _contains(words: tuple[str, ...], value: tuple[str, ...]) -> bool:
    n = len(value)
    return any(words[i:i + n] == value for i in range(len(words) - n + 1))


class GoalTracker:
    """The slot values of a set of dialogue records and each dialogue's goal so far (see the module doc).

    ``dialogues``: loaded dialogue records (``{"turns": [{"text", ...}], "meta": {"goal": {...}}}``), in the
    order a :class:`~textvae.data.datasets.DialogueDataset` built from them numbers them.
    """

    def __init__(self, dialogues: Sequence[dict]):
        goals = [_goal_values(d) for d in dialogues]
        candidates: set[tuple[str, ...]] = set()
        for goal, changed in goals:
            candidates.update(_words(v) for v in goal.values())
            if changed is not None:
                candidates.add(_words(changed["from"]))
        candidates.discard(())
        ambiguous = set()
        for dialogue, (goal, changed) in zip(dialogues, goals, strict=True):
            own = {_words(v) for v in goal.values()} | ({_words(changed["from"])} if changed else set())
            for turn in dialogue["turns"]:
                words = _words(turn["text"])
                ambiguous.update(v for v in candidates - own if _contains(words, v))
        self.values = sorted(candidates - ambiguous)
        self.ambiguous = sorted(ambiguous)
        self._by_first: dict[str, list[tuple[str, ...]]] = {}
        for value in sorted(self.values, key=len, reverse=True):  # the longest value first
            self._by_first.setdefault(value[0], []).append(value)
        self._goals = goals
        self._change_turn = []  # per dialogue: the turn that first names the changed slot's new value
        for dialogue, (goal, changed) in zip(dialogues, goals, strict=True):
            turn = None
            if changed is not None:
                new = _words(goal[changed["slot"]])
                turn = next((n for n, t in enumerate(dialogue["turns"]) if _contains(_words(t["text"]), new)), None)
            self._change_turn.append(turn)

    @property
    def has_goals(self) -> bool:
        """True when some dialogue carries a goal with a slot value."""
        return bool(self.values)

    def values_in(self, text: str) -> list[str]:
        """The slot values ``text`` names, in order, each occurrence once (a longer value wins over one it
        starts with)."""
        words = _words(text)
        found, i = [], 0
        while i < len(words):
            for value in self._by_first.get(words[i], ()):
                if words[i:i + len(value)] == value:
                    found.append(" ".join(value))
                    i += len(value)
                    break
            else:
                i += 1
        return found

    def goal_so_far(self, dialogue: int, turn: int) -> set[str]:
        """The goal's values at ``turn`` of ``dialogue`` (0-based indices into the records)."""
        goal, changed = self._goals[dialogue]
        values = dict(goal)
        if changed is not None:
            change = self._change_turn[dialogue]
            if change is None or turn < change:
                values[changed["slot"]] = changed["from"]
        return {" ".join(_words(v)) for v in values.values()}


def domain_key(text: str) -> str:
    """A turn's text with its numbers masked: "all booked . the reference is qt 65 ." and "... qt 12 ." are
    the same turn for deciding whether a turn belongs to one domain."""
    return _DIGITS.sub("#", " ".join(_words(text)))


def domain_turns(dialogues: Iterable[dict]) -> tuple[list[str], list[str]]:
    """Every turn's text and its domain label: the dialogue's topic, or :data:`GENERAL` when the same turn
    (numbers masked, :func:`domain_key`) occurs in dialogues of two or more topics. Dialogues without a
    topic are left out. Returns (texts, labels)."""
    turns = [(t["text"], d["topic"]) for d in dialogues if d.get("topic") for t in d["turns"]]
    topics: dict[str, set[str]] = {}
    for text, topic in turns:
        topics.setdefault(domain_key(text), set()).add(topic)
    labels = [GENERAL if len(topics[domain_key(text)]) > 1 else topic for text, topic in turns]
    return [text for text, _ in turns], labels


@dataclass
class Fidelity:
    """Context fidelity of generated responses (fractions, 0-1); the same figures for the references show
    what the classifier and the lexicon make of human (or scripted) responses."""

    classifier: str  # where the domain classifier came from
    responses: int  # generated responses scored
    domain_share: float  # placed in the context's domain or in "general"
    general_share: float  # placed in "general"
    slot_values: int  # slot values the generated responses name
    slot_match: float | None  # of those, the share in the dialogue's goal so far (None: no value named)
    reference_domain_share: float
    reference_slot_values: int
    reference_slot_match: float | None
    # per responding speaker: {"responses", "domain_share", "slot_values", "slot_match"}
    by_speaker: dict[str, dict[str, float | int | None]] = field(default_factory=dict)


class FidelityTotals:
    """Counts behind :class:`Fidelity`. ``classifier``: a :class:`~textvae.classifier.Classifier` whose labels
    are the corpus' topics and :data:`GENERAL`; ``tracker``: the :class:`GoalTracker` of the evaluated records."""

    def __init__(self, classifier, source: str, tracker: GoalTracker):
        if GENERAL not in classifier.labels:
            raise ValueError(f"the domain classifier {source} has no {GENERAL!r} label: train it with "
                             "textvae-classifier --label-key topic on the dialogues")
        self.classifier, self.source, self.tracker = classifier, source, tracker
        self.counts: Counter[str] = Counter()
        self.speakers: dict[str, Counter[str]] = {}

    def add(self, hypotheses: Sequence[str], reference: str, topic: str | None, dialogue: int, turn: int,
            speaker: str | None = None) -> None:
        """One context (response ``turn`` of record ``dialogue``, of domain ``topic``, said by ``speaker``): its
        N responses and the reference. A context without a topic counts for the slot match only."""
        c = self.counts
        own = self.speakers.setdefault(speaker, Counter()) if speaker is not None else Counter()
        goal = self.tracker.goal_so_far(dialogue, turn)
        if topic is not None:
            labels = [self.classifier.labels[i] for i in self.classifier.predict([*hypotheses, reference])]
            in_domain = sum(label in (topic, GENERAL) for label in labels[:-1])
            c["responses"] += len(hypotheses)
            c["in_domain"] += in_domain
            c["general"] += sum(label == GENERAL for label in labels[:-1])
            c["references"] += 1
            c["reference_in_domain"] += labels[-1] in (topic, GENERAL)
            own["responses"] += len(hypotheses)
            own["in_domain"] += in_domain
        for text in hypotheses:
            named = self.tracker.values_in(text)
            matched = sum(v in goal for v in named)
            c["values"] += len(named)
            c["matched"] += matched
            own["values"] += len(named)
            own["matched"] += matched
        named = self.tracker.values_in(reference)
        c["reference_values"] += len(named)
        c["reference_matched"] += sum(v in goal for v in named)

    def result(self) -> Fidelity:
        c = self.counts
        return Fidelity(
            classifier=self.source, responses=c["responses"],
            domain_share=c["in_domain"] / max(c["responses"], 1), general_share=c["general"] / max(c["responses"], 1),
            slot_values=c["values"], slot_match=c["matched"] / c["values"] if c["values"] else None,
            reference_domain_share=c["reference_in_domain"] / max(c["references"], 1),
            reference_slot_values=c["reference_values"],
            reference_slot_match=c["reference_matched"] / c["reference_values"] if c["reference_values"] else None,
            by_speaker={speaker: {"responses": o["responses"], "domain_share": o["in_domain"] / max(o["responses"], 1),
                                  "slot_values": o["values"],
                                  "slot_match": o["matched"] / o["values"] if o["values"] else None}
                        for speaker, o in sorted(self.speakers.items())})
