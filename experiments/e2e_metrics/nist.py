"""Corpus NIST-5 as the E2E challenge's copy of mteval-v13a.pl computes it."""

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


def information_weights(references: Sequence[Sequence[Sequence[str]]]) -> dict[NGram, float]:
    """Each reference n-gram's information, log2(count(prefix) / count(n-gram)), over all references."""
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
        denominator = counts[prefix] if prefix and prefix != ("0",) else total_words
        weights[ngram] = -math.log(count / denominator) / math.log(2)
    return weights


def nist_length_penalty(length_ratio: float) -> float:
    """NIST's brevity factor: 1 from the average reference length up, 0.5 at two thirds of it."""
    if length_ratio >= 1:
        return 1.0
    if length_ratio <= 0:
        return 0.0
    beta = -math.log(0.5) / math.log(1.5) / math.log(1.5)
    return math.exp(-beta * math.log(length_ratio) * math.log(length_ratio))


def corpus_nist(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]) -> float:
    """Corpus NIST-5 of tokenised hypotheses against all references of each MR.

    The length penalty compares the hypotheses' word count with the corpus' mean reference length times
    the number of MRs (the E2E script's adaptation to a varying number of references).

    Args:
        hypotheses: one token list per MR (see `mteval_tokenize`).
        references: for each MR, the token lists of all its references.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference groups")
    weights = information_weights(references)
    information = [0.0] * (NIST_MAX_N + 1)
    totals = [0] * (NIST_MAX_N + 1)
    reference_words = 0
    nonempty_references = 0
    for hypothesis, group in zip(hypotheses, references, strict=True):
        reference_maxima = max_reference_counts(ngram_counts(reference, NIST_MAX_N) for reference in group)
        for ngram, count in clipped_matches(ngram_counts(hypothesis, NIST_MAX_N), reference_maxima).items():
            information[len(ngram)] += weights[ngram] * count
        for n in range(1, NIST_MAX_N + 1):
            totals[n] += ngrams_of_order(len(hypothesis), n)
        reference_words += sum(len(reference) for reference in group)
        nonempty_references += sum(1 for reference in group if reference)
    if reference_words == 0:
        raise ValueError("the references hold no words after tokenisation; NIST needs reference text")
    references_per_mr = nonempty_references / len(hypotheses)
    score = sum(information[n] / max(totals[n], 1) for n in range(1, NIST_MAX_N + 1))
    return score * nist_length_penalty(totals[1] / (reference_words / references_per_mr))
