"""The five official E2E NLG challenge metrics for a system, as `measure_scores.py` reports them."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from experiments.e2e_metrics.bleu import corpus_bleu
from experiments.e2e_metrics.cider import corpus_cider
from experiments.e2e_metrics.java_tools import require_java
from experiments.e2e_metrics.meteor import MeteorScorer
from experiments.e2e_metrics.mteval_tokenizer import mteval_tokenize, pymteval_tokenize
from experiments.e2e_metrics.nist import NIST_VARIANTS, corpus_nist
from experiments.e2e_metrics.ptb_tokenizer import ptb_tokenize
from experiments.e2e_metrics.rouge import corpus_rouge_l

METRIC_NAMES = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")


def check_corpus(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    """Fail early, naming the problem, on input the official scorer could not score.

    Raises:
        ValueError: counts differ, the corpus is empty, an MR has no reference, or a text is not a string or
            a reference is blank.
    """
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise ValueError("hypotheses and references must be sequences of strings, not one string")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} reference groups: give one hypothesis "
            "per MR and, for each MR, the list of all its references"
        )
    if not hypotheses:
        raise ValueError("the corpus is empty: give at least one hypothesis and its references")
    for index, (hypothesis, group) in enumerate(zip(hypotheses, references, strict=True)):
        if not isinstance(hypothesis, str):
            raise ValueError(f"hypothesis {index} is {hypothesis!r}, not a string")
        if isinstance(group, str) or not group:
            raise ValueError(f"MR {index} has references {group!r}; expected a non-empty list of strings")
        for number, reference in enumerate(group):
            if not isinstance(reference, str) or not reference.strip():
                raise ValueError(f"reference {number} of MR {index} is {reference!r}; references must hold text")


def _ptb_tokenize_corpus(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], java: str
) -> tuple[list[str], list[list[str]]]:
    """PTB-tokenised hypotheses and grouped references, from one run of the tokenizer."""
    flat_references = [reference for group in references for reference in group]
    tokenized = iter(ptb_tokenize([*flat_references, *hypotheses], java=java))
    grouped_references = [[next(tokenized) for _ in group] for group in references]
    return list(tokenized), grouped_references


class E2EScorer:
    """Scores systems with the official E2E metrics, keeping one METEOR process for all of them.

    METEOR takes seconds to load; scoring several systems (seeds, checkpoints) through one scorer pays that
    once. Use it as a context manager, or call `close`.

    `nist` picks the official script's NIST implementation: "pymteval" (`measure_scores.py -p`, the command
    LoRA's README runs for the paper's E2E table; the default) or "mteval" (its default Perl
    mteval-v13a-sig.pl). They differ in the reference length of the length penalty (see
    `experiments.e2e_metrics.nist`); the other four metrics do not depend on the choice.
    """

    def __init__(self, *, java: str = "java", nist: str = "pymteval") -> None:
        if nist not in NIST_VARIANTS:
            raise ValueError(f"unknown NIST variant {nist!r}; choose one of {', '.join(NIST_VARIANTS)}")
        self._nist = nist
        self._java = require_java(java)
        self._meteor = MeteorScorer(java=self._java)  # loads in the background while the rest is computed

    def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
        """BLEU, NIST, METEOR, ROUGE_L and CIDEr of one hypothesis per MR against all references of each MR.

        Scales are those of the official script: BLEU, METEOR, ROUGE_L in 0-1, NIST around 8, CIDEr 0-10.
        """
        check_corpus(hypotheses, references)
        mteval_hypotheses = [mteval_tokenize(hypothesis) for hypothesis in hypotheses]
        mteval_references = [[mteval_tokenize(reference) for reference in group] for group in references]
        ptb_hypotheses, ptb_references = _ptb_tokenize_corpus(hypotheses, references, self._java)
        scores = {
            "BLEU": corpus_bleu(mteval_hypotheses, mteval_references),
            "NIST": self._corpus_nist(hypotheses, references, mteval_hypotheses, mteval_references),
            "ROUGE_L": corpus_rouge_l(ptb_hypotheses, ptb_references),
            "CIDEr": corpus_cider(ptb_hypotheses, ptb_references),
        }
        # Last, so that the rest ran while METEOR was loading.
        scores["METEOR"] = self._meteor.corpus_score(ptb_hypotheses, ptb_references)
        return {name: scores[name] for name in METRIC_NAMES}

    def _corpus_nist(
        self,
        hypotheses: Sequence[str],
        references: Sequence[Sequence[str]],
        mteval_hypotheses: list[list[str]],
        mteval_references: list[list[list[str]]],
    ) -> float:
        if self._nist == "mteval":
            return corpus_nist(mteval_hypotheses, mteval_references, variant="mteval")
        return corpus_nist(
            [pymteval_tokenize(hypothesis) for hypothesis in hypotheses],
            [[pymteval_tokenize(reference) for reference in group] for group in references],
            variant="pymteval",
        )

    def close(self) -> None:
        """Stop the METEOR process."""
        self._meteor.close()

    def __enter__(self) -> E2EScorer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def score_e2e(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], *, java: str = "java", nist: str = "pymteval"
) -> dict[str, float]:
    """The official E2E challenge metrics of one system: one hypothesis per MR, all references of each MR.

    `nist` is "pymteval" (`measure_scores.py -p`, as LoRA ran it) or "mteval" (the script's Perl default).

    Raises:
        ValueError: the corpus is malformed (see `check_corpus`).
        JavaNotFoundError: Java is not installed; METEOR and the PTB tokenizer need it.
        JavaToolNotFoundError: `pycocoevalcap`, which ships their jars, is missing or incomplete.
    """
    check_corpus(hypotheses, references)
    with E2EScorer(java=java, nist=nist) as scorer:
        return scorer.score(hypotheses, references)
