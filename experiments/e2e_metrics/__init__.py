"""The E2E NLG challenge metrics (BLEU, NIST, METEOR, ROUGE-L, CIDEr) as the official script computes them.

`score_e2e(hypotheses, references)` scores one system; `E2EScorer` scores several with one METEOR start.
BLEU follows MT-Eval's mteval-v13a.pl; NIST follows `measure_scores.py -p` (the command LoRA's README runs),
or mteval-v13a.pl with `nist="mteval"`; METEOR 1.5 and the Stanford PTB tokenizer run from the jars
that `pycocoevalcap` ships (Java needed); ROUGE-L and CIDEr-D follow the COCO caption code.
"""

from experiments.e2e_metrics.bleu import corpus_bleu
from experiments.e2e_metrics.cider import corpus_cider
from experiments.e2e_metrics.formats import (
    E2EFormatError,
    group_references_by_mr,
    read_hypotheses,
    read_mr_text_file,
    read_references,
    write_hypotheses,
    write_references,
)
from experiments.e2e_metrics.java_tools import JavaNotFoundError, JavaToolNotFoundError
from experiments.e2e_metrics.meteor import MeteorScorer
from experiments.e2e_metrics.mteval_tokenizer import mteval_tokenize, pymteval_tokenize
from experiments.e2e_metrics.nist import NIST_VARIANTS, corpus_nist
from experiments.e2e_metrics.ptb_tokenizer import ptb_tokenize
from experiments.e2e_metrics.rouge import corpus_rouge_l
from experiments.e2e_metrics.scorer import METRIC_NAMES, E2EScorer, check_corpus, score_e2e

__all__ = [
    "METRIC_NAMES",
    "NIST_VARIANTS",
    "E2EFormatError",
    "E2EScorer",
    "JavaNotFoundError",
    "JavaToolNotFoundError",
    "MeteorScorer",
    "check_corpus",
    "corpus_bleu",
    "corpus_cider",
    "corpus_nist",
    "corpus_rouge_l",
    "group_references_by_mr",
    "mteval_tokenize",
    "ptb_tokenize",
    "pymteval_tokenize",
    "read_hypotheses",
    "read_mr_text_file",
    "read_references",
    "score_e2e",
    "write_hypotheses",
    "write_references",
]
