"""Matching non-polar classes in polar questions (Sec. 4.2.3, Fig 4.4, Fig A.1) and coverage brackets.

Fig A.1's rule (L2246): a class matches where its text occurs "not preceded nor followed by a
letter, while allowing other symbols around". A label of several words matches as a whole phrase
(its words in order, any whitespace between), case-insensitively. Each question is counted once
per class; one question may match any number of classes (L900).
"""
from __future__ import annotations

import bisect
import re
from typing import Mapping, Sequence

_LETTER = r"[^\W\d_]"        # a letter (unicode-aware): not a non-word char, not a digit, not '_'


def label_pattern(label: str) -> re.Pattern:
    """The Fig A.1 expression for one non-polar label."""
    words = label.strip().split()
    # words of a label are separated by spaces only: never by the newline that separates questions
    # in match_counts (a phrase must not span two questions)
    body = r"[ \t]+".join(re.escape(w) for w in words)
    return re.compile(rf"(?<!{_LETTER}){body}(?!{_LETTER})", re.IGNORECASE)


def matches(label: str, question: str) -> bool:
    return label_pattern(label).search(question) is not None


def match_counts(labels: Sequence[str], questions: Sequence[str]) -> dict[str, int]:
    """For each label, the number of questions it matches (each question counted once per label).

    All questions are joined into one text separated by newlines (never part of a label, and not a
    letter) and each label's expression runs once over it; match positions map back to questions.
    """
    text = "\n".join(" ".join(q.split()) for q in questions)
    starts, pos = [], 0
    for q in questions:
        starts.append(pos)
        pos += len(" ".join(q.split())) + 1
    out = {}
    for label in labels:
        hit = {bisect.bisect_right(starts, m.start()) - 1 for m in label_pattern(label).finditer(text)}
        out[label] = len(hit)
    return out


def rank_classes(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """Classes sorted by number of matches (descending), ties by label name."""
    return sorted(counts.items(), key=lambda t: (-t[1], t[0]))


def thesis_brackets(counts: Mapping[str, int], min_matches: int = 30, top_min: int = 100,
                    second_size: int = 50) -> list[list[str]]:
    """The paper rule (L950, notes/vqa.md): drop classes with < ``min_matches``; bracket 1 = classes
    with >= ``top_min``; bracket 2 = the next ``second_size`` classes by count; bracket 3 = the rest."""
    ranked = [(c, n) for c, n in rank_classes(counts) if n >= min_matches]
    b1 = [c for c, n in ranked if n >= top_min]
    rest = [c for c, n in ranked if n < top_min]
    return [b1, rest[:second_size], rest[second_size:]]


def equal_brackets(counts: Mapping[str, int], n_brackets: int = 3, min_matches: int = 0) -> list[list[str]]:
    """Default-preset rule: the ranked classes (>= ``min_matches``) cut into ``n_brackets`` brackets
    of equal size (the first ones one larger when the count does not divide)."""
    ranked = [c for c, n in rank_classes(counts) if n >= min_matches]
    k, r = divmod(len(ranked), n_brackets)
    out, i = [], 0
    for b in range(n_brackets):
        size = k + (1 if b < r else 0)
        out.append(ranked[i:i + size])
        i += size
    return out


def make_brackets(counts: Mapping[str, int], rule: str, min_matches: int, top_min: int,
                  second_size: int) -> list[list[str]]:
    if rule == "thesis":
        return thesis_brackets(counts, min_matches, top_min, second_size)
    if rule == "equal":
        return equal_brackets(counts, 3, min_matches)
    raise ValueError(f"unknown bracket rule '{rule}' (thesis, equal)")


def bracket_interval(bracket: Sequence[str], counts: Mapping[str, int]) -> tuple[int, int] | None:
    """[t0, t1]: the smallest and largest number of matches in a bracket."""
    if not bracket:
        return None
    vals = [counts[c] for c in bracket]
    return min(vals), max(vals)
