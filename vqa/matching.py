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


LABEL_WORDS = ("phrase", "all_words", "any_word")


def label_pattern(label: str, case_fold: bool = True) -> re.Pattern:
    """The Fig A.1 expression for one non-polar label (its words as one phrase)."""
    words = label.strip().split()
    # words of a label are separated by spaces only: never by the newline that separates questions
    # in match_counts (a phrase must not span two questions)
    body = r"[ \t]+".join(re.escape(w) for w in words)
    return re.compile(rf"(?<!{_LETTER}){body}(?!{_LETTER})", re.IGNORECASE if case_fold else 0)


def matches(label: str, question: str, case_fold: bool = True) -> bool:
    return label_pattern(label, case_fold).search(question) is not None


def match_counts(labels: Sequence[str], questions: Sequence[str], case_fold: bool = True,
                 label_words: str = "phrase") -> dict[str, int]:
    """For each label, the number of questions it matches (each question counted once per label).

    ``label_words``: "phrase" = the label's words in order as one phrase (Fig A.1 read as one
    expression per label); "all_words" = every word of the label somewhere in the question;
    "any_word" = at least one of them (L900: "we gather all words from each non-polar label").
    ``case_fold``: match regardless of case ("In the picture, ..." matches IN).

    All questions are joined into one text separated by newlines (never part of a label, and not a
    letter) and each expression runs once over it; match positions map back to questions.
    """
    if label_words not in LABEL_WORDS:
        raise ValueError(f"label_words = {label_words!r}: one of {', '.join(LABEL_WORDS)}")
    text = "\n".join(" ".join(q.split()) for q in questions)
    starts, pos = [], 0
    for q in questions:
        starts.append(pos)
        pos += len(" ".join(q.split())) + 1

    def hits(expr: str) -> set[int]:
        return {bisect.bisect_right(starts, m.start()) - 1 for m in label_pattern(expr, case_fold).finditer(text)}
    word_hits: dict[str, set[int]] = {}

    def of_word(w: str) -> set[int]:
        if w not in word_hits:
            word_hits[w] = hits(w)
        return word_hits[w]
    out = {}
    for label in labels:
        words = label.split()
        if label_words == "phrase" or len(words) <= 1:
            out[label] = len(hits(label))
        elif label_words == "all_words":
            out[label] = len(set.intersection(*(of_word(w) for w in words)))
        else:
            out[label] = len(set.union(*(of_word(w) for w in words)))
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


# ------------------------------------------------------------------------------------------------
# Tab A.1 as printed (L2252-L2276): the 100 non-polar classes with most matching polar questions,
# read down the four column pairs (the order of the printed ties kept)
# ------------------------------------------------------------------------------------------------
TABLE_A1 = (
    ("in", 11936), ("on", 8292), ("man", 4643), ("picture", 2990), ("people", 2469), ("person", 2199),
    ("photo", 1944), ("woman", 1699), ("water", 1651), ("can", 1644), ("s", 1579), ("cat", 1454),
    ("all", 1413), ("train", 1341), ("room", 1310), ("dog", 1287), ("animals", 1053), ("food", 1000),
    ("animal", 925), ("someone", 906), ("pizza", 888), ("bus", 860), ("going", 825), ("color", 783),
    ("boy", 734), ("day", 733), ("girl", 724), ("toilet", 717), ("sky", 683), ("happy", 671),
    ("sunny", 643), ("plane", 637), ("bathroom", 634), ("giraffe", 628), ("street", 616), ("eating", 603),
    ("bear", 601), ("both", 596), ("ball", 587), ("open", 583), ("up", 578), ("ground", 571),
    ("looking", 569), ("out", 562), ("table", 561), ("trees", 560), ("moving", 557), ("elephant", 555),
    ("child", 541), ("playing", 540), ("white", 536), ("plate", 532), ("kitchen", 531), ("men", 527),
    ("clean", 510), ("sitting", 506), ("standing", 501), ("horse", 490), ("car", 483), ("building", 483),
    ("outside", 478), ("grass", 478), ("real", 477), ("eat", 464), ("cold", 461), ("background", 457),
    ("good", 453), ("bird", 452), ("sign", 451), ("light", 450), ("shirt", 447), ("boat", 442),
    ("more", 442), ("truck", 441), ("bed", 440), ("raining", 438), ("bike", 433), ("hair", 430),
    ("right", 429), ("clock", 426), ("full", 425), ("road", 421), ("healthy", 415), ("window", 414),
    ("beach", 411), ("black", 410), ("red", 406), ("old", 405), ("baby", 401), ("camera", 400),
    ("snow", 400), ("glasses", 399), ("clouds", 396), ("holding", 393), ("flowers", 387), ("lights", 385),
    ("zoo", 379), ("green", 376), ("down", 375), ("zebra", 373),
)


def table_a1_agreement(counts: Mapping[str, int], printed: Sequence[tuple[str, int]] = TABLE_A1) -> dict:
    """How our match counts of the non-polar classes compare with Tab A.1 as printed:
    ``a1_overlap`` = how many of its classes are in our top len(printed); ``a1_rank_corr`` = Spearman's
    rho between our counts and the printed ones over its classes (a class we do not have counts 0);
    ``a1_count_ratio_median`` = the median of ours / printed over its classes (1: the same questions
    and rule; about 1.5 when matching train + val polar questions where the thesis matched train only)."""
    import numpy as np
    from scipy.stats import spearmanr
    top = {c for c, _ in rank_classes(counts)[:len(printed)]}
    ours = np.array([counts.get(c, 0) for c, _ in printed], dtype=np.float64)
    theirs = np.array([n for _, n in printed], dtype=np.float64)
    rho = float(spearmanr(ours, theirs).statistic) if ours.std() > 0 else float("nan")
    return {"a1_overlap": sum(c in top for c, _ in printed), "a1_rank_corr": rho,
            "a1_count_ratio_median": float(np.median(ours / theirs))}
