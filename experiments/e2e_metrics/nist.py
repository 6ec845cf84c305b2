"""Corpus NIST-5 as the official E2E scorer computes it, in either of its two implementations.

NIST credits each hypothesis n-gram (n = 1..5) that a reference of its MR holds (clipped to the most times any
one of those references holds it) with the n-gram's information, log2(count(n-gram without its last word) /
count(n-gram)), both counts taken over every reference of every MR (for a unigram the first count is the
total number of reference words). Each order's credited information is divided by the number of hypothesis
n-grams of that order; the five quotients are summed and multiplied by a length factor that is 1 when the
hypotheses are at least as long as the reference length and falls to 0.5 at two thirds of it.

`measure_scores.py` offers two implementations that agree on everything but the reference length:

* "pymteval" -- `measure_scores.py -p`, the command LoRA's README runs for the paper's E2E table, so this is
  the default here: the reference length is the sum over MRs of each MR's mean reference length.
* "mteval" -- the script's default, its Perl mteval-v13a-sig.pl: the reference length is the total number of
  reference words divided by the mean number of references per MR. When MRs with more references have
  longer references (as in the E2E test set), this length is larger and the score lower.

The two also differ at the edges: the Perl reads a bigram whose first word is "0" against the word total,
counts no n-grams in a hypothesis too short for them, and lowercases only A-Z; the Python counts len - n + 1
n-grams even when that is negative, counts an empty output as one (empty) word, and lowercases every letter.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from experiments.e2e_metrics.ngrams import (
    NGram,
    clipped_matches,
    max_reference_counts,
    ngram_counts,
    ngrams,
    ngrams_of_order,
)

NIST_MAX_N = 5


NIST_VARIANTS = ("pymteval", "mteval")


def information_weights(
    references: Sequence[Sequence[Sequence[str]]], *, variant: str = "pymteval"
) -> dict[NGram, float]:
    """Each reference n-gram's information, log2(count(prefix) / count(n-gram)), over all references."""
    _check_variant(variant)
    counts: Counter[NGram] = Counter()
    total_words = 0
    for group in references:
        for reference in group:
            counts.update(ngrams(reference, NIST_MAX_N))
            total_words += len(reference)
    weights = {}
    for ngram, count in counts.items():
        prefix = ngram[:-1]
        # Perl tests the space-joined prefix for truth, and the string "0" is false there: a bigram that
        # starts with the token "0" is weighed against the word total, as in unigrams.
        perl_false = variant == "mteval" and prefix == ("0",)
        denominator = counts[prefix] if prefix and not perl_false else total_words
        weights[ngram] = -math.log(count / denominator) / math.log(2)
    return weights


def nist_length_penalty(length_ratio: float) -> float:
    """NIST's brevity factor: 1 from the reference length up, 0.5 at two thirds of it."""
    if length_ratio >= 1:
        return 1.0
    if length_ratio <= 0:
        return 0.0
    beta = -math.log(0.5) / math.log(1.5) / math.log(1.5)
    return math.exp(-beta * math.log(length_ratio) * math.log(length_ratio))


def nist_reference_length(references: Sequence[Sequence[Sequence[str]]], *, variant: str = "pymteval") -> float:
    """The length the hypotheses' word count is compared with, in the chosen implementation.

    "pymteval": the sum over MRs of each MR's mean reference length. "mteval": the total reference word count
    divided by the mean number of (non-empty) references per MR.
    """
    _check_variant(variant)
    if variant == "pymteval":
        return sum(sum(len(reference) for reference in group) / len(group) for group in references)
    reference_words = sum(len(reference) for group in references for reference in group)
    nonempty_references = sum(1 for group in references for reference in group if reference)
    return reference_words / (nonempty_references / len(references))


def corpus_nist(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[Sequence[str]]],
    *,
    variant: str = "pymteval",
) -> float:
    """Corpus NIST-5 of tokenised hypotheses against all references of each MR.

    Args:
        hypotheses: one token list per MR (`pymteval_tokenize` for "pymteval", `mteval_tokenize` for
            "mteval").
        references: for each MR, the token lists of all its references (same tokenizer).
        variant: "pymteval" (`measure_scores.py -p`, LoRA's command; the default) or "mteval"
            (`measure_scores.py`, mteval-v13a-sig.pl). See the module docstring for how they differ.
    """
    _check_variant(variant)
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference groups")
    weights = information_weights(references, variant=variant)
    information = [0.0] * (NIST_MAX_N + 1)
    totals = [0] * (NIST_MAX_N + 1)
    for hypothesis, group in zip(hypotheses, references, strict=True):
        reference_maxima = max_reference_counts(ngram_counts(reference, NIST_MAX_N) for reference in group)
        for ngram, count in clipped_matches(ngram_counts(hypothesis, NIST_MAX_N), reference_maxima).items():
            information[len(ngram)] += weights[ngram] * count
        for n in range(1, NIST_MAX_N + 1):
            # The Python implementation adds len - n + 1 even where that is negative.
            totals[n] += ngrams_of_order(len(hypothesis), n) if variant == "mteval" else len(hypothesis) - n + 1
    reference_length = nist_reference_length(references, variant=variant)
    if reference_length == 0:
        raise ValueError("the references hold no words after tokenisation; NIST needs reference text")
    if variant == "mteval":
        score = sum(information[n] / max(totals[n], 1) for n in range(1, NIST_MAX_N + 1))
    else:
        # An order with no n-gram at all would stop the Python implementation with a division by zero;
        # here it adds nothing, as in the Perl.
        score = sum(information[n] / totals[n] for n in range(1, NIST_MAX_N + 1) if totals[n] != 0)
    return score * nist_length_penalty(totals[1] / reference_length)


def _check_variant(variant: str) -> None:
    if variant not in NIST_VARIANTS:
        raise ValueError(f"unknown NIST variant {variant!r}; choose one of {', '.join(NIST_VARIANTS)}")
