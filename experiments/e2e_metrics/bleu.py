"""Corpus BLEU-4 as MT-Eval's mteval-v13a.pl reports it for the E2E challenge."""

from __future__ import annotations

import math
from collections.abc import Sequence

from experiments.e2e_metrics.ngrams import (
    clipped_matches,
    max_reference_counts,
    ngram_counts,
    ngrams_of_order,
)

BLEU_MAX_N = 4


def closest_reference_length(hypothesis_length: int, reference_lengths: Sequence[int]) -> int:
    """The reference length of the brevity penalty: mteval's closest length, ties to the shorter.

    As in the E2E copy of mteval-v13a.pl, empty references (the padding for MRs with fewer references)
    are skipped after the first one.
    """
    best = reference_lengths[0]
    for length in reference_lengths[1:]:
        if length == 0:
            continue
        distance, best_distance = abs(hypothesis_length - length), abs(hypothesis_length - best)
        if distance < best_distance or (distance == best_distance and length < best):
            best = length
    return best


def bleu_from_statistics(matches: Sequence[int], totals: Sequence[int], reference_length: int) -> float:
    """mteval-v13a.pl's BLEU-4 from corpus counts, indexed by n-gram order (index 0 unused).

    Its default smoothing applies: an order with no match counts 1 / (2^k * total) for the k-th such order,
    and an order the hypotheses are too short to have is skipped.
    """
    hypothesis_length = totals[1]
    if hypothesis_length == 0:
        return 0.0
    brevity_penalty = math.exp(min(0.0, 1 - reference_length / hypothesis_length))
    log_precision_sum = 0.0
    smoothing = 1
    for n in range(1, BLEU_MAX_N + 1):
        if totals[n] == 0:
            log_precision = 0.0
        elif matches[n] == 0:
            smoothing *= 2
            log_precision = math.log(1 / (smoothing * totals[n]))
        else:
            log_precision = math.log(matches[n] / totals[n])
        log_precision_sum += log_precision
    return math.exp(log_precision_sum / BLEU_MAX_N) * brevity_penalty


def corpus_bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]) -> float:
    """Corpus BLEU-4 of tokenised hypotheses against all references of each MR, on the 0-1 scale.

    Args:
        hypotheses: one token list per MR (see `mteval_tokenize`).
        references: for each MR, the token lists of all its references.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference groups")
    matches = [0] * (BLEU_MAX_N + 1)
    totals = [0] * (BLEU_MAX_N + 1)
    reference_length = 0
    for hypothesis, group in zip(hypotheses, references, strict=True):
        reference_maxima = max_reference_counts(ngram_counts(reference, BLEU_MAX_N) for reference in group)
        for ngram, count in clipped_matches(ngram_counts(hypothesis, BLEU_MAX_N), reference_maxima).items():
            matches[len(ngram)] += count
        for n in range(1, BLEU_MAX_N + 1):
            totals[n] += ngrams_of_order(len(hypothesis), n)
        reference_length += closest_reference_length(len(hypothesis), [len(reference) for reference in group])
    return bleu_from_statistics(matches, totals, reference_length)
