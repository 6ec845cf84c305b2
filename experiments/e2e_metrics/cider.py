"""CIDEr-D as the COCO caption code computes it, with document frequencies from the scored corpus."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from experiments.e2e_metrics.ngrams import NGram, ngram_counts

CIDER_MAX_N = 4
CIDER_SIGMA = 6.0


def _tfidf_vectors(
    counts: Counter[NGram], idf: dict[NGram, float], unseen_idf: float
) -> tuple[list[dict[NGram, float]], list[float]]:
    """Per-order tf-idf vectors (raw counts times idf) and their Euclidean norms."""
    vectors: list[dict[NGram, float]] = [{} for _ in range(CIDER_MAX_N)]
    for ngram, count in counts.items():
        vectors[len(ngram) - 1][ngram] = count * idf.get(ngram, unseen_idf)
    norms = [math.sqrt(sum(value * value for value in vector.values())) for vector in vectors]
    return vectors, norms


def _bigram_count(counts: Counter[NGram]) -> int:
    """The "length" the COCO code's Gaussian penalty compares: the number of bigrams, not of words."""
    return sum(count for ngram, count in counts.items() if len(ngram) == 2)


def corpus_cider(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D (0-10 scale) of tokenised hypotheses, one per MR, against all references of each.

    Inverse document frequencies count, for each n-gram (n = 1..4), the MRs whose references hold it; a
    hypothesis n-gram counts min(hypothesis, reference) tf-idf in the cosine, and a length difference d
    scales each order by exp(-d^2 / 2 sigma^2) with sigma = 6. The corpus score is the mean over MRs.
    """
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"{len(hypotheses)} hypotheses and {len(references)} reference groups; need equal, >0")
    reference_counts = [[ngram_counts(r.split(), CIDER_MAX_N) for r in group] for group in references]
    document_frequency: Counter[NGram] = Counter()
    for group in reference_counts:
        document_frequency.update(set().union(*group))
    log_corpus_size = math.log(float(len(references)))
    # An n-gram no reference holds counts as if one MR held it (the COCO code's max(1, df)).
    idf = {ngram: log_corpus_size - math.log(max(1.0, df)) for ngram, df in document_frequency.items()}
    unseen_idf = log_corpus_size - math.log(1.0)

    total = 0.0
    for hypothesis, group in zip(hypotheses, reference_counts, strict=True):
        counts = ngram_counts(hypothesis.split(), CIDER_MAX_N)
        vectors, norms = _tfidf_vectors(counts, idf, unseen_idf)
        length = _bigram_count(counts)
        per_order = [0.0] * CIDER_MAX_N
        for reference in group:
            reference_vectors, reference_norms = _tfidf_vectors(reference, idf, unseen_idf)
            penalty = math.e ** (-((length - _bigram_count(reference)) ** 2) / (2 * CIDER_SIGMA**2))
            for n in range(CIDER_MAX_N):
                overlap = sum(
                    min(value, reference_vectors[n].get(ngram, 0.0)) * reference_vectors[n].get(ngram, 0.0)
                    for ngram, value in vectors[n].items()
                )
                if norms[n] != 0 and reference_norms[n] != 0:
                    overlap /= norms[n] * reference_norms[n]
                per_order[n] += overlap * penalty
        total += sum(per_order) / CIDER_MAX_N / len(group) * 10.0
    return total / len(hypotheses)
