"""N-gram counts and reference clipping, the statistics under BLEU, NIST and CIDEr."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

NGram = tuple[str, ...]


def ngrams(tokens: Sequence[str], max_n: int) -> Iterator[NGram]:
    """Every n-gram of order 1..max_n in one token sequence, order by order."""
    for n in range(1, max_n + 1):
        yield from zip(*(tokens[start:] for start in range(n)), strict=False)


def ngram_counts(tokens: Sequence[str], max_n: int) -> Counter[NGram]:
    """How often each n-gram of order 1..max_n occurs in one token sequence."""
    return Counter(ngrams(tokens, max_n))


def max_reference_counts(reference_counts: Iterable[Counter[NGram]]) -> Counter[NGram]:
    """The most times any one reference holds each n-gram: the cap on a hypothesis' matches."""
    maxima: Counter[NGram] = Counter()
    for counts in reference_counts:
        for ngram, count in counts.items():
            if count > maxima[ngram]:
                maxima[ngram] = count
    return maxima


def clipped_matches(hypothesis_counts: Counter[NGram], reference_maxima: Counter[NGram]) -> Counter[NGram]:
    """Hypothesis n-gram counts clipped by the reference maxima (n-grams no reference has drop out)."""
    return hypothesis_counts & reference_maxima


def ngrams_of_order(length: int, n: int) -> int:
    """How many n-grams a sequence of `length` tokens has."""
    return max(length - n + 1, 0)
