"""Speaker profiles: the callers' metadata as features, for the models that condition on them.

Zhao et al. (2017)'s kgCVAE reads, besides the topic, the profile of the caller who responds and of the
other caller on Switchboard. A prepared dialogue carries them as ``meta["callers"] = {speaker: {"age": 47,
"education": 2, "sex": "MALE", "dialect": ...}}`` (the Switchboard parser writes it; any corpus may).
Each caller becomes :data:`PROFILE_FEATURES` numbers, as in Zhao et al.'s data loader: age / 100,
education / 3, and sex one-hot (male, female). A value that is missing or not understood gives 0 for
its feature(s): Switchboard codes an unknown education as 9, which the original code divided by 3
like the others. Other metadata (dialect) is not used. An example's profile is the responder's
features followed by the other caller's: :data:`PROFILE_DIM` numbers, all 0 for a dialogue without
caller metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

PROFILE_FEATURES = 4  # age / 100, education / 3, male, female
PROFILE_DIM = 2 * PROFILE_FEATURES  # the responder's, then the other caller's
_MAX_AGE, _MAX_EDUCATION = 120, 3


def caller_features(caller: Any) -> list[float]:
    """One caller's metadata -> [age / 100, education / 3, male, female]; unknown values give 0."""
    if not isinstance(caller, Mapping):
        return [0.0] * PROFILE_FEATURES
    age, education, sex = caller.get("age"), caller.get("education"), caller.get("sex")
    age_feature = age / 100 if _is_number(age) and 0 < age <= _MAX_AGE else 0.0
    education_feature = education / _MAX_EDUCATION if _is_number(education) and 0 <= education <= _MAX_EDUCATION else 0.0
    sex = sex.strip().upper() if isinstance(sex, str) else None
    return [float(age_feature), float(education_feature), float(sex == "MALE"), float(sex == "FEMALE")]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def callers_of(meta: str | Mapping | None) -> dict[str, list[float]] | None:
    """The features of every caller in a dialogue's ``meta`` (a dict, or the JSON string a loaded record
    holds); None when it names no callers."""
    if isinstance(meta, str):
        meta = json.loads(meta)
    callers = meta.get("callers") if isinstance(meta, Mapping) else None
    if not isinstance(callers, Mapping) or not callers:
        return None
    return caller_profiles(callers)


def caller_profiles(callers: Mapping[str, Any]) -> dict[str, list[float]]:
    """``{speaker: metadata}`` -> ``{speaker: features}`` (:func:`caller_features`)."""
    return {str(speaker): caller_features(info) for speaker, info in callers.items()}


def example_profile(callers: Mapping[str, Sequence[float]] | None, responder: str) -> list[float]:
    """The responder's features, then the other caller's (:data:`PROFILE_DIM` numbers). The other caller
    is the one caller who is not the responder; with none or several, and for a responder without
    metadata, those features are 0."""
    if not callers:
        return [0.0] * PROFILE_DIM
    others = [speaker for speaker in callers if speaker != responder]
    mine = list(callers.get(responder, [0.0] * PROFILE_FEATURES))
    other = list(callers[others[0]]) if len(others) == 1 else [0.0] * PROFILE_FEATURES
    return mine + other
