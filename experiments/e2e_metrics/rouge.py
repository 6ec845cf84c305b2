"""ROUGE-L as the COCO caption code defines it: LCS F-measure with beta 1.2, best precision and recall."""

from __future__ import annotations

from collections.abc import Sequence

ROUGE_L_BETA = 1.2


def lcs_length(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences."""
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for index, other in enumerate(second):
            current.append(previous[index] + 1 if token == other else max(previous[index + 1], current[index]))
        previous = current
    return previous[-1]


def sentence_rouge_l(candidate: str, references: Sequence[str]) -> float:
    """ROUGE-L of one tokenised candidate against its references.

    Precision and recall are each the best over the references (not those of one best reference), and
    tokens are split on single spaces, so an empty candidate is one empty token: both as in the COCO code.
    """
    if not references:
        raise ValueError("ROUGE-L needs at least one reference")
    candidate_tokens = candidate.split(" ")
    precision = recall = 0.0
    for reference in references:
        reference_tokens = reference.split(" ")
        common = lcs_length(reference_tokens, candidate_tokens)
        precision = max(precision, common / len(candidate_tokens))
        recall = max(recall, common / len(reference_tokens))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + ROUGE_L_BETA**2) * precision * recall / (recall + ROUGE_L_BETA**2 * precision)


def corpus_rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean sentence ROUGE-L (0-1) of tokenised hypotheses, one per MR, against all of its references."""
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"{len(hypotheses)} hypotheses and {len(references)} reference groups; need equal, >0")
    scores = [sentence_rouge_l(h, group) for h, group in zip(hypotheses, references, strict=True)]
    return sum(scores) / len(scores)
