"""Embedded synthetic corpora: attribute-labelled sentences and goal-oriented dialogues.

Pure standard library, no downloads, deterministic given a seed (every draw comes from one
``random.Random(seed)``). They are the default corpora: small enough to train on in minutes, and
with known latent factors, so we can test whether a VAE's latent space captures them.

Sentences
---------
Each sentence first draws six attributes, independently and uniformly, then a probabilistic grammar
realises them (optional constituents in brackets, realised in this order)::

    statement -> [OPENER ,] [TIME ,] SUBJ VERB OBJ [ADV] [PLACE] [COMPANY] [TIME] [COORD] [CLAUSE] .
    negation  -> [OPENER ,] [TIME ,] SUBJ AUX not VERB OBJ ...                  [but COORD] [CLAUSE] .
    question  -> [WH] AUX SUBJ VERB OBJ [ADV] [PLACE] [COMPANY] [TIME] [COORD] [CLAUSE] ?
    SUBJ -> i | we | they | she | he | NAME | the [ADJ] ROLE        OBJ -> DET [EVAL] [ADJ] NOUN
    CLAUSE -> CONJ the NOUN BE ADJ | CONJ PERSON VERB OBJ | CONJ PERSON BE FEELING

Why every attribute can be read back from the text (``sentence_attributes_from_text`` does it):

* ``topic``: roles, nouns, verbs, adjectives and places come from the topic's own lexicon, and
  the eight lexicons are disjoint, so one topic's words appear (the object noun always does).
* ``sentiment``: at least one evaluative word (adjective, manner adverb, sentence opener, verb such
  as "loved"/"hated", a feeling "because we were delighted"), all of one polarity; negation never
  takes an evaluative verb, so "not" never flips one.
* ``tense``: verb morphology in every clause (cooked / cooks / will cook), do-support (did / does),
  agreeing copulas (was / is / will be) and time phrases (yesterday / every day / tomorrow).
* ``subject``: the main clause's subject is the first person word; present tense agrees with it.
* ``form``: "?" marks a question, "not" a negation.
* ``length``: a token-count bucket (short <= 9, medium 10-15, long 16-25). The generator draws a
  target count in the bucket and adds optional constituents in random order until it reaches it,
  so the bucket is what decides how many optional constituents a sentence gets.

Dialogues
---------
A user with a goal (slot values of one topic) talks to a system, turns alternating from the user:
optional greetings; the user informs some slots and the system requests the rest one at a time;
the system may confirm every value (the user affirms, or changes one and the system confirms
again); the system offers an entity (or, for weather, informs the forecast) built from the goal;
the user accepts, declines, or requests details; thanks and goodbyes. Confirmations and offers
repeat the values the user gave, so a response depends on the context. Every turn has a dialog
act; each act has several paraphrases. ``meta`` holds the final goal and any changed slot.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from textvae.data.records import Dialogue, Sentence, Turn

# ----------------------------------------------------------------------------- sentence lexicons


class _Topic(NamedTuple):
    roles: tuple[str, ...]  # people who can be the subject: "the chef"
    nouns: tuple[str, ...]  # singular count nouns: objects and clause subjects
    verbs: tuple[tuple[str, str], ...]  # (base, past) transitive verbs taking those nouns
    adjectives: tuple[str, ...]  # neutral, topic-flavoured
    positive: tuple[str, ...]  # evaluative adjectives of this topic
    negative: tuple[str, ...]
    places: tuple[str, ...]  # prepositional phrases


class _Polarity(NamedTuple):
    adjectives: tuple[str, ...]  # any topic: "wonderful"
    adverbs: tuple[str, ...]  # manner: "happily"
    openers: tuple[str, ...]  # sentence adverbs: "luckily ,"
    verbs: tuple[tuple[str, str], ...]  # (base, past): "love", "loved"
    feelings: tuple[str, ...]  # a person's state: "because we were delighted"


def _w(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _v(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((base, past) for base, past in (pair.split("/") for pair in text.split()))


def _topic(roles: str, nouns: str, verbs: str, adjectives: str, positive: str, negative: str,
           places: str) -> _Topic:
    return _Topic(_w(roles), _w(nouns), _v(verbs), _w(adjectives), _w(positive), _w(negative),
                  tuple(place.strip() for place in places.split(",")))


_TOPICS: dict[str, _Topic] = {
    "food": _topic(
        "chef baker waiter grocer butcher caterer",
        "soup cake pie sandwich salad pizza curry stew dessert omelette burger pancake tart casserole",
        "cook/cooked prepare/prepared serve/served eat/ate taste/tasted order/ordered share/shared buy/bought",
        "spicy sweet salty fresh homemade crispy creamy vegetarian",
        "delicious tasty flavourful", "bland burnt soggy",
        "in the kitchen, at the restaurant, at the cafe, in the bakery, at the market, at the diner"),
    "sports": _topic(
        "coach player umpire runner captain goalkeeper",
        "match race game tournament championship marathon contest relay derby semifinal rematch playoff",
        "enter/entered organise/organised attend/attended finish/finished join/joined host/hosted "
        "referee/refereed",
        "final regional annual indoor professional junior olympic",
        "thrilling spectacular memorable", "boring unfair sloppy",
        "at the stadium, in the gym, on the field, on the court, at the track, at the pool"),
    "travel": _topic(
        "pilot traveller guide tourist driver sailor",
        "flight trip tour journey cruise excursion voyage holiday safari getaway expedition",
        "book/booked reserve/reserved plan/planned take/took arrange/arranged extend/extended "
        "research/researched",
        "foreign overnight coastal international domestic remote",
        "scenic relaxing charming", "exhausting cramped overpriced",
        "at the airport, at the station, in the harbour, on the island, in the city, at the hostel"),
    "music": _topic(
        "singer drummer pianist guitarist composer conductor",
        "song melody symphony tune ballad anthem lullaby sonata concerto chorus hymn duet solo carol",
        "sing/sang compose/composed perform/performed rehearse/rehearsed hum/hummed record/recorded "
        "practise/practised",
        "acoustic classical rhythmic orchestral folk electric",
        "soulful catchy harmonious", "noisy tuneless shrill",
        "in the studio, at the concert hall, at the club, at the festival, at the conservatory, in the chapel"),
    "weather": _topic(
        "forecaster meteorologist fisherman shepherd lifeguard",
        "storm shower blizzard breeze rainbow heatwave gale thunderstorm sunrise sunset drizzle frost "
        "hailstorm downpour",
        "predict/predicted watch/watched chase/chased photograph/photographed notice/noticed "
        "expect/expected describe/described",
        "heavy sudden icy humid cold hot misty seasonal",
        "refreshing gentle glorious", "gloomy brutal bleak",
        "on the porch, on the rooftop, in the valley, on the hills, on the coast, on the balcony"),
    "technology": _topic(
        "engineer programmer developer technician designer scientist",
        "laptop phone robot computer server tablet printer keyboard router gadget drone smartwatch "
        "console headset",
        "upgrade/upgraded test/tested repair/repaired build/built design/designed configure/configured "
        "replace/replaced unbox/unboxed",
        "digital wireless portable electronic automatic online",
        "powerful reliable sleek", "buggy slow glitchy",
        "in the lab, at the office, in the workshop, at the factory, at the startup"),
    "health": _topic(
        "doctor nurse patient dentist surgeon pharmacist",
        "medicine vitamin vaccine prescription pill treatment therapy injection remedy syrup ointment "
        "capsule antibiotic",
        "prescribe/prescribed recommend/recommended try/tried administer/administered discuss/discussed "
        "monitor/monitored approve/approved",
        "medical daily herbal routine dental surgical",
        "healthy soothing effective", "painful harmful bitter",
        "at the clinic, in the hospital, at the pharmacy, in the ward, at the surgery"),
    "books": _topic(
        "author librarian writer poet editor reader",
        "novel paperback poem chapter story magazine diary essay biography manuscript memoir anthology letter",
        "write/wrote publish/published edit/edited borrow/borrowed translate/translated review/reviewed "
        "print/printed",
        "thick historical illustrated fictional literary rare",
        "gripping insightful witty", "tedious clumsy predictable",
        "in the library, at the bookshop, in the study, at the archive, at the poetry circle"),
}

_POLARITIES: dict[str, _Polarity] = {
    "positive": _Polarity(
        _w("wonderful lovely excellent perfect amazing pleasant superb"),
        _w("happily gladly cheerfully proudly eagerly"),
        _w("luckily fortunately thankfully"),
        _v("love/loved enjoy/enjoyed like/liked admire/admired praise/praised adore/adored "
           "appreciate/appreciated"),
        _w("happy delighted proud thrilled grateful")),
    "negative": _Polarity(
        _w("terrible awful horrible disappointing dreadful poor"),
        _w("sadly angrily reluctantly grudgingly miserably"),
        _w("unfortunately regrettably annoyingly"),
        _v("hate/hated dislike/disliked dread/dreaded resent/resented despise/despised regret/regretted "
           "loathe/loathed"),
        _w("sad upset annoyed furious miserable")),
}

_PRONOUNS = ("i", "we", "they", "she", "he")
_NAMES = _w("anna maria sofia emma lucy nina olivia clara david james peter tom daniel lucas omar ravi "
            "kenji mei priya carlos")
_THIRD_SINGULAR = frozenset({"she", "he", "name", "role"})  # subject kinds taking "cooks", "does", "is"
_PERSON_ADJECTIVES = _w("old young busy famous local quiet")
_DETERMINERS = _w("the a this that my our their his her")
_ADVERBS = _w("quickly slowly carefully quietly again together")
_CONJUNCTIONS = _w("because when after before while since")
_FUTURE_CONJUNCTIONS = _w("because since")  # "when she will cook" is not English
_WH = _w("why when where")
_COMPANY = ("with a friend", "with her sister", "with his brother", "with their children",
            "with my parents", "with our neighbours", "with a colleague", "with the whole family")
_TIMES = {
    "past": ("yesterday", "last night", "last week", "last summer", "two days ago", "a year ago"),
    "present": ("every day", "every morning", "on weekends", "every week", "each evening", "most days"),
    "future": ("tomorrow", "next week", "next summer", "later tonight", "next month", "in two days"),
}
_ANY_TIME = ("in the morning", "in the afternoon", "at night", "on monday", "on tuesday", "on wednesday",
             "on thursday", "on friday", "on saturday", "on sunday")
_LENGTHS = {"short": (4, 9), "medium": (10, 15), "long": (16, 25)}  # token counts, punctuation included

SENTENCE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "topic": tuple(_TOPICS),
    "sentiment": ("positive", "negative"),
    "tense": ("past", "present", "future"),
    "subject": ("i", "we", "they", "she", "he", "name", "role"),
    "form": ("statement", "question", "negation"),
    "length": tuple(_LENGTHS),
}

# ----------------------------------------------------------------------------- sentence grammar


def _third_singular(base: str) -> str:
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


def _finite(verb: tuple[str, str], tense: str, singular: bool) -> list[str]:
    base, past = verb
    if tense == "past":
        return [past]
    if tense == "future":
        return ["will", base]
    return [_third_singular(base) if singular else base]


def _auxiliary(tense: str, singular: bool) -> str:
    return {"past": "did", "future": "will"}.get(tense, "does" if singular else "do")


def _be(tense: str, subject: str) -> list[str]:
    if tense == "future":
        return ["will", "be"]
    plural = subject in ("we", "they")
    if tense == "past":
        return ["were" if plural else "was"]
    return ["am" if subject == "i" else "are" if plural else "is"]


def _noun_phrase(rng: random.Random, topic: _Topic, adjectives: Sequence[str] = ()) -> list[str]:
    words = [*adjectives, rng.choice(topic.nouns)]
    det = rng.choice(_DETERMINERS)
    if det == "a" and words[0][0] in "aeiou":
        det = "an"
    return [det, *words]


def _person(rng: random.Random) -> tuple[str, list[str]]:
    """A pronoun or a name for a subordinate clause: (subject kind, tokens)."""
    kind = rng.choice((*_PRONOUNS, "name"))
    return kind, [rng.choice(_NAMES) if kind == "name" else kind]


def _clause(rng: random.Random, topic: _Topic, polarity: _Polarity, evaluative: tuple[str, ...],
            tense: str) -> list[str]:
    conj = rng.choice(_FUTURE_CONJUNCTIONS if tense == "future" else _CONJUNCTIONS)
    kind = rng.randrange(3)
    if kind == 0:  # because the stew was spicy / the soup was delicious
        adjective = rng.choice(topic.adjectives + evaluative)
        return [conj, "the", rng.choice(topic.nouns), *_be(tense, "role"), adjective]
    who, tokens = _person(rng)
    if kind == 1:  # after they ordered a pie
        verb = rng.choice(topic.verbs)
        return [conj, *tokens, *_finite(verb, tense, who in _THIRD_SINGULAR), *_noun_phrase(rng, topic)]
    return [conj, *tokens, *_be(tense, who), rng.choice(polarity.feelings)]  # because we were delighted


def _coordination(rng: random.Random, topic: _Topic, polarity: _Polarity, tense: str, singular: bool,
                  form: str, main_verb: tuple[str, str]) -> list[str]:
    verb = rng.choice([v for v in topic.verbs + polarity.verbs if v != main_verb])
    obj = _noun_phrase(rng, topic)
    if form == "question":  # did she cook the soup and bake a pie ?
        return ["and", verb[0], *obj]
    conj = "but" if form == "negation" else "and"
    return [conj, *_finite(verb, tense, singular), *obj]


def _realise(rng: random.Random, topic: _Topic, sentiment: str, tense: str, subject: str, form: str,
             length: str) -> list[str] | None:
    """One try at a sentence with these attributes; None when it missed the length bucket."""
    lo, hi = _LENGTHS[length]
    singular = subject in _THIRD_SINGULAR
    polarity = _POLARITIES[sentiment]
    evaluative = getattr(topic, sentiment) + polarity.adjectives  # topic.positive or topic.negative
    # One constituent must carry the sentiment; "not" would flip an evaluative verb, a question
    # cannot open with "luckily ,".
    carriers = ["evaluation", "adverb"] + ["verb"] * (form != "negation") + ["opener"] * (form != "question")
    carrier = rng.choice(carriers)
    verb = rng.choice(polarity.verbs if carrier == "verb" else topic.verbs)
    wh = [rng.choice(_WH)] if form == "question" and rng.random() < 0.4 else []
    time = rng.choice(_TIMES[tense] + _ANY_TIME).split()
    front_time = form != "question" and rng.random() < 0.3
    optional = {
        "evaluation": [rng.choice(evaluative)],
        "object_adjective": [rng.choice(topic.adjectives)],
        "adverb": [rng.choice(polarity.adverbs + (() if carrier == "adverb" else _ADVERBS))],
        "place": rng.choice(topic.places).split(),
        "company": rng.choice(_COMPANY).split(),
        "time": [*time, ","] if front_time else time,
        "coordination": _coordination(rng, topic, polarity, tense, singular, form, verb),
        "clause": _clause(rng, topic, polarity, evaluative, tense),
    }
    if form != "question":
        optional["opener"] = [rng.choice(polarity.openers), ","]
    if subject == "role":
        optional["subject_adjective"] = [rng.choice(_PERSON_ADJECTIVES)]

    # "did she cook" / "she did not cook" / "she will cook" / "she cooked"
    verb_group = {"question": 2, "negation": 3}.get(form, 2 if tense == "future" else 1)
    subject_size = 2 if subject == "role" else 1
    size = len(wh) + subject_size + verb_group + 2 + 1  # + DET NOUN + final punctuation
    chosen = {carrier} & optional.keys()
    size += sum(len(optional[name]) for name in chosen)
    target = rng.randint(lo, hi)
    names = [name for name in optional if name not in chosen]
    rng.shuffle(names)
    for name in names:
        if size >= target:
            break
        if size + len(optional[name]) <= hi:
            chosen.add(name)
            size += len(optional[name])
    if not lo <= size <= hi:
        return None

    def part(name: str) -> list[str]:
        return optional[name] if name in chosen else []

    if subject == "role":
        subj = ["the", *part("subject_adjective"), rng.choice(topic.roles)]
    else:
        subj = [rng.choice(_NAMES) if subject == "name" else subject]
    obj = _noun_phrase(rng, topic, part("evaluation") + part("object_adjective"))
    if form == "question":
        head = [*wh, _auxiliary(tense, singular), *subj, verb[0]]
    elif form == "negation":
        head = [*subj, _auxiliary(tense, singular), "not", verb[0]]
    else:
        head = [*subj, *_finite(verb, tense, singular)]
    front, end = (part("time"), []) if front_time else ([], part("time"))
    return [*part("opener"), *front, *head, *obj, *part("adverb"), *part("place"), *part("company"), *end,
            *part("coordination"), *part("clause"), "?" if form == "question" else "."]


def generate_sentences(n: int, seed: int | str) -> list[Sentence]:
    """``n`` sentences with their generating attributes (``label`` is the topic); see the module doc."""
    return list(iter_sentences(n, seed))


def iter_sentences(n: int, seed: int | str) -> Iterator[Sentence]:
    """:func:`generate_sentences` one sentence at a time."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    for _ in range(n):
        attributes = {name: rng.choice(values) for name, values in SENTENCE_ATTRIBUTES.items()}
        args = (_TOPICS[attributes["topic"]], attributes["sentiment"], attributes["tense"],
                attributes["subject"], attributes["form"], attributes["length"])
        for _ in range(1000):  # every attribute combination fits its bucket within a few tries
            tokens = _realise(rng, *args)
            if tokens is not None:
                break
        else:
            raise RuntimeError(f"no sentence fits {attributes}")  # a grammar bug, not bad luck
        yield Sentence(" ".join(tokens), label=attributes["topic"], attributes=attributes)


# ----------------------------------------------------------------------------- reading attributes back


def _verb_forms(verbs: tuple[tuple[str, str], ...]) -> list[str]:
    return [form for base, past in verbs for form in (base, _third_singular(base), past)]


_TOPIC_OF = {word: name for name, topic in _TOPICS.items()
             for word in (*topic.roles, *topic.nouns, *topic.adjectives, *topic.positive, *topic.negative,
                          *_verb_forms(topic.verbs),
                          *(w for place in topic.places for w in place.split()[2:]))}
_POLARITY_OF = {word: name for name, polarity in _POLARITIES.items()
                for word in (*polarity.adjectives, *polarity.adverbs, *polarity.openers, *polarity.feelings,
                             *_verb_forms(polarity.verbs),
                             *(word for topic in _TOPICS.values() for word in getattr(topic, name)))}
_PAST_MARKERS = frozenset({"did", "was", "were"} | {past for t in _TOPICS.values() for _, past in t.verbs}
                          | {past for p in _POLARITIES.values() for _, past in p.verbs})
_ROLES = frozenset(role for t in _TOPICS.values() for role in t.roles)


def sentence_attributes_from_text(text: str) -> dict[str, str]:
    """Recover every attribute of a generated sentence from its text alone, by the lexicons."""
    tokens = text.split()
    topics = [_TOPIC_OF[t] for t in tokens if t in _TOPIC_OF]
    polarities = [_POLARITY_OF[t] for t in tokens if t in _POLARITY_OF]
    subject = next(("name" if t in _NAMES else "role" if t in _ROLES else t
                    for t in tokens if t in _PRONOUNS or t in _NAMES or t in _ROLES), "")
    if "will" in tokens:
        tense = "future"
    elif _PAST_MARKERS.intersection(tokens):
        tense = "past"
    else:
        tense = "present"
    return {
        "topic": Counter(topics).most_common(1)[0][0] if topics else "",
        "sentiment": Counter(polarities).most_common(1)[0][0] if polarities else "",
        "tense": tense,
        "subject": subject,
        "form": "question" if "?" in tokens else "negation" if "not" in tokens else "statement",
        "length": next((name for name, (_, hi) in _LENGTHS.items() if len(tokens) <= hi), "long"),
    }


# ----------------------------------------------------------------------------- dialogues


class _Domain(NamedTuple):
    slots: dict[str, tuple[str, ...]]  # the user's goal: slot -> possible values
    phrases: dict[str, tuple[str, ...]]  # slot -> fragments naming a value, "{v}"
    questions: dict[str, tuple[str, ...]]  # slot -> system requests for it
    openers: tuple[str, ...]  # the user's first words, naming the domain
    summaries: tuple[str, ...]  # what the system's confirmation starts from: "a restaurant"


_AREAS = _w("north south east west centre")
_DAYS = _w("monday tuesday wednesday thursday friday saturday sunday")
_COUNTS = _w("two three four five six")
_CLOCK = tuple(f"{hour}:{minute}" for hour in range(7, 23) for minute in ("00", "15", "30", "45"))
_CITIES = _w("cambridge london oxford leeds york bristol norwich ely brighton")
_LANDMARKS = _w("station airport museum hospital university cinema market harbour stadium library")

_DOMAINS: dict[str, _Domain] = {
    "restaurant": _Domain(
        {"food": _w("italian chinese indian mexican thai french japanese greek turkish spanish"),
         "area": _AREAS, "price": _w("cheap moderate expensive")},
        {"food": ("serving {v} food", "that serves {v} food", "with {v} cuisine"),
         "area": ("in the {v}", "in the {v} of town"),
         "price": ("in the {v} price range", "on the {v} side")},
        {"food": ("what kind of food would you like ?", "which cuisine do you prefer ?",
                  "do you have a cuisine in mind ?"),
         "area": ("which part of town ?", "what area would you like ?", "where in town should it be ?"),
         "price": ("what price range are you looking for ?", "how much would you like to spend ?")},
        ("i am looking for a restaurant", "i need a restaurant", "can you find me a restaurant",
         "i want to book a table at a restaurant", "i would like a place to eat"),
        ("a restaurant", "a table at a restaurant")),
    "hotel": _Domain(
        {"area": _AREAS, "stars": _w("two three four five"), "nights": _COUNTS},
        {"area": ("in the {v}", "somewhere in the {v}"), "stars": ("with {v} stars", "rated {v} stars"),
         "nights": ("for {v} nights",)},
        {"area": ("which area would you like to stay in ?", "where in town ?"),
         "stars": ("how many stars should it have ?", "what star rating do you want ?"),
         "nights": ("how many nights will you stay ?", "for how many nights ?")},
        ("i need a hotel", "i am looking for somewhere to stay", "can you book me a hotel",
         "i want a hotel room"),
        ("a hotel", "a room")),
    "taxi": _Domain(
        {"departure": _LANDMARKS, "destination": _LANDMARKS, "time": _CLOCK},
        {"departure": ("from the {v}", "leaving from the {v}"),
         "destination": ("to the {v}", "going to the {v}"), "time": ("at {v}", "for {v}")},
        {"departure": ("where should the taxi pick you up ?", "where are you leaving from ?"),
         "destination": ("where are you going ?", "what is your destination ?"),
         "time": ("what time do you want to leave ?", "when should it pick you up ?")},
        ("i need a taxi", "can you book me a taxi", "i would like a cab", "please get me a taxi"),
        ("a taxi", "a cab")),
    "train": _Domain(
        {"departure": _CITIES, "destination": _CITIES, "day": _DAYS, "time": _CLOCK},
        {"departure": ("from {v}", "departing from {v}"), "destination": ("to {v}", "arriving in {v}"),
         "day": ("on {v}",), "time": ("at {v}", "leaving at {v}", "around {v}")},
        {"departure": ("where will you be leaving from ?", "which station are you departing from ?"),
         "destination": ("where are you travelling to ?", "what is your destination ?"),
         "day": ("which day do you want to travel ?", "what day ?"),
         "time": ("what time would you like to leave ?", "when do you want to depart ?")},
        ("i need a train", "i am looking for a train", "can you find me a train",
         "i want to book a train ticket"),
        ("a train", "a ticket for a train")),
    "weather": _Domain(
        {"city": _w("london paris berlin madrid rome tokyo dublin oslo cairo lisbon"), "day": _DAYS},
        {"city": ("in {v}", "for {v}"), "day": ("on {v}", "for {v}")},
        {"city": ("which city ?", "where do you need the forecast for ?"),
         "day": ("which day ?", "for what day ?")},
        ("what will the weather be like", "can you tell me the weather", "i would like the forecast",
         "how is the weather looking"),
        ("the weather", "the forecast")),
    "movie": _Domain(
        {"genre": _w("comedy horror drama thriller romance western musical documentary"), "day": _DAYS,
         "people": _COUNTS},
        {"genre": ("for a {v}", "for a {v} film", "for a {v} movie"), "day": ("on {v}",),
         "people": ("for {v} people", "for a group of {v}")},
        {"genre": ("what kind of film would you like ?", "which genre do you prefer ?"),
         "day": ("which day would you like to go ?", "what day ?"),
         "people": ("how many tickets ?", "how many people are going ?")},
        ("i would like tickets", "can you book me cinema tickets", "i need movie tickets",
         "i want to buy tickets"),
        ("tickets", "cinema tickets")),
}

DIALOGUE_TOPICS: tuple[str, ...] = tuple(_DOMAINS)
DIALOGUE_ACTS: tuple[str, ...] = ("greet", "inform", "request", "confirm", "affirm", "deny", "offer", "thank",
                                  "bye")
DIALOGUE_SLOTS: dict[str, dict[str, tuple[str, ...]]] = {name: d.slots for name, d in _DOMAINS.items()}
SPEAKERS = ("user", "system")

# The system's offer per topic: it repeats goal values, "{name}" is the entity it found.
_OFFERS = {
    "restaurant": ("how about {name} ? it serves {food} food in the {area} .",
                   "{name} serves {food} food in the {area} and is {price} .",
                   "i recommend {name} in the {area} , serving {food} food at {price} prices ."),
    "hotel": ("{name} is a {stars} star hotel in the {area} . shall i book {nights} nights ?",
              "how about {name} ? it has {stars} stars and is in the {area} .",
              "i found {name} in the {area} , rated {stars} stars ."),
    "taxi": ("i can send a {name} from the {departure} to the {destination} at {time} . shall i book it ?",
             "a {name} can pick you up at the {departure} at {time} . shall i book it ?"),
    "train": ("there is a train from {departure} to {destination} on {day} at {time} . shall i book a seat ?",
              "the {time} train from {departure} arrives in {destination} an hour later . want a ticket ?"),
    "movie": ("{name} is a {genre} showing on {day} . shall i book {people} tickets ?",
              "how about {name} ? it is a {genre} playing on {day} ."),
}
_NAME_WORDS = {
    "restaurant": (_w("golden silver red blue little old green royal"), _w("lantern olive dragon spoon garden "
                                                                           "table oak anchor")),
    "hotel": (_w("grand royal park river city old bay hill"), _w("inn lodge house manor court hotel")),
    "taxi": (_w("black white red blue grey silver"), _w("toyota ford skoda volvo tesla honda")),
    "movie": (_w("last silent hidden lost dark secret broken endless"), _w("voyage kingdom promise river "
                                                                          "mirror island letter summer")),
}
_STREETS = _w("mill king station church regent bridge park high")
_CONDITIONS = _w("sunny rainy cloudy windy snowy foggy stormy")

_GREETINGS = ("hello .", "hi there .", "good morning .", "hello , is anyone there ?")
_SYSTEM_GREETINGS = ("hello , how can i help you ?", "hi , what can i do for you today ?",
                     "good day , how may i help ?")
_USER_INFORMS = ("{f} , please .", "{f} .", "preferably {f} .", "{f} would be good .", "{v} , please .",
                 "{v} .")
_CONFIRMS = ("so you want {s} , is that right ?", "let me confirm : {s} , correct ?",
             "okay , {s} . is that right ?", "just to check , you need {s} ?", "you are after {s} , yes ?")
_AFFIRMS = ("yes , that is right .", "yes , exactly .", "correct .", "that is it .", "yes please .")
_CHANGES = ("no , actually {f} .", "sorry , i changed my mind : {f} .", "not quite , make that {f} .",
            "no , {f} instead .")
_ACCEPTS = ("yes , please book it .", "that sounds great , book it please .", "perfect , go ahead .",
            "yes please .")
_DECLINES = ("no , do you have anything else ?", "i do not like that one , any other option ?",
             "something else , please .")
_BOOKED = ("done , your reference number is {ref} .", "all booked . the reference is {ref} .",
           "i have booked it . your reference is {ref} .")
_REQUESTS = ("what is the {r} ?", "could you give me the {r} ?", "and the {r} , please ?")
_ANSWERS = ("the {r} is {value} .", "it is {value} .", "sure , the {r} is {value} .")
_THANKS = ("thank you , that is all .", "great , thanks a lot .", "thanks for your help .",
           "perfect , thank you .")
_BYES = ("you are welcome . goodbye .", "have a great day !", "glad i could help . bye .")
_USER_BYES = ("bye .", "goodbye .", "bye , have a nice day .")


def _details(rng: random.Random, topic: str) -> dict[str, str]:
    """What the user may ask about the offered entity (or the forecast)."""
    phone = f"01223 {rng.randint(10, 99)} {rng.randint(10, 99)}"
    address = f"{rng.randint(1, 60)} {rng.choice(_STREETS)} street"
    return {
        "restaurant": {"address": address, "phone number": phone},
        "hotel": {"address": address, "phone number": phone, "price": f"{rng.randint(8, 30) * 5} pounds"},
        "taxi": {"journey time": f"{rng.randint(2, 9) * 5} minutes", "phone number": phone},
        "train": {"price": f"{rng.randint(5, 60)} pounds", "journey time": f"{rng.randint(3, 18) * 5} minutes"},
        "movie": {"price": f"{rng.randint(6, 15)} pounds", "running time": f"{rng.randint(18, 36) * 5} minutes"},
        "weather": {"wind": rng.choice(_w("light strong gusty calm")),
                    "humidity": f"{rng.randint(3, 9) * 10} percent"},
    }[topic]


def _dialogue_turns(rng: random.Random, topic: str) -> tuple[list[Turn], dict]:
    """One walk through the script in the module docstring; may come out longer than 12 turns."""
    domain = _DOMAINS[topic]
    slots = list(domain.slots)
    goal = {slot: rng.choice(values) for slot, values in domain.slots.items()}
    if "destination" in goal:
        goal["destination"] = rng.choice([v for v in domain.slots["destination"] if v != goal["departure"]])
    turns: list[Turn] = []
    meta: dict = {"goal": goal}  # the final goal: a change of mind below updates it

    def say(speaker: str, act: str, template: str, **values: str) -> None:
        turns.append(Turn(speaker, " ".join(template.format(**values).split()), act=act))

    def fragment(slot: str) -> str:
        return rng.choice(domain.phrases[slot]).format(v=goal[slot])

    def describe() -> str:
        return " ".join([rng.choice(domain.summaries), *(fragment(slot) for slot in slots)])

    if rng.random() < 0.3:
        say("user", "greet", rng.choice(_GREETINGS))
        say("system", "greet", rng.choice(_SYSTEM_GREETINGS))
    told = sorted(rng.sample(range(len(slots)), rng.randint(1, len(slots))))
    opener = rng.choice(domain.openers)
    hello = "hi , " if not turns and rng.random() < 0.3 else ""
    say("user", "inform", hello + opener + " " + " ".join(fragment(slots[i]) for i in told)
        + (" ?" if opener.startswith(("can", "what", "how")) else " ."))
    for slot in (s for i, s in enumerate(slots) if i not in told):
        say("system", "request", rng.choice(domain.questions[slot]))
        say("user", "inform", rng.choice(_USER_INFORMS), f=fragment(slot), v=goal[slot])
    if rng.random() < 0.5:
        say("system", "confirm", rng.choice(_CONFIRMS), s=describe())
        if rng.random() < 0.3:  # the user changes one value; the system confirms the new one
            slot = rng.choice(slots)
            taken = {goal[s] for s in slots if s != slot}  # departure and destination stay apart
            old = goal[slot]
            goal[slot] = rng.choice([v for v in domain.slots[slot] if v != old and v not in taken])
            meta["changed"] = {"slot": slot, "from": old}
            say("user", "deny", rng.choice(_CHANGES), f=fragment(slot))
            say("system", "confirm", rng.choice(_CONFIRMS), s=describe())
        say("user", "affirm", rng.choice(_AFFIRMS))
    first, last = _NAME_WORDS.get(topic, ((), ()))
    name = f"{rng.choice(first)} {rng.choice(last)}" if first else ""
    if topic in ("restaurant", "hotel", "movie"):
        name = "the " + name
    if topic == "weather":
        say("system", "inform", "on {day} in {city} it will be {c} with a high of {t} degrees .", **goal,
            c=rng.choice(_CONDITIONS), t=str(rng.randint(-2, 32)))
    else:
        say("system", "offer", rng.choice(_OFFERS[topic]), name=name, **goal)
        if topic in ("restaurant", "hotel", "movie") and rng.random() < 0.2:
            say("user", "deny", rng.choice(_DECLINES))
            name = f"the {rng.choice(first)} {rng.choice([w for w in last if w not in name.split()])}"
            say("system", "offer", rng.choice(_OFFERS[topic]), name=name, **goal)
        if rng.random() < 0.5:
            say("user", "affirm", rng.choice(_ACCEPTS))
            ref = f"{rng.choice(_w('ab kx qt mz rp lw'))} {rng.randint(10, 99)}"
            say("system", "inform", rng.choice(_BOOKED), ref=ref)
    details = _details(rng, topic)
    for wanted in rng.sample(sorted(details), rng.choice((0, 0, 1, 1, 2))):
        say("user", "request", rng.choice(_REQUESTS), r=wanted)
        say("system", "inform", rng.choice(_ANSWERS), r=wanted, value=details[wanted])
    say("user", "thank", rng.choice(_THANKS))
    say("system", "bye", rng.choice(_BYES))
    if rng.random() < 0.3:
        say("user", "bye", rng.choice(_USER_BYES))
    return turns, meta


def generate_dialogues(n: int, seed: int) -> list[Dialogue]:
    """``n`` goal-oriented dialogues of 4-12 turns, user and system alternating, an act on every turn."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    dialogues = []
    for i in range(n):
        topic = rng.choice(DIALOGUE_TOPICS)
        turns, meta = _dialogue_turns(rng, topic)
        while len(turns) > 12:  # the script can run long (greetings, requests, a change of mind)
            turns, meta = _dialogue_turns(rng, topic)
        dialogues.append(Dialogue(turns=tuple(turns), topic=topic, meta=meta, id=f"synthetic-{seed}-{i}"))
    return dialogues
