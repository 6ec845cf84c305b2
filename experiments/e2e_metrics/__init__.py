"""The E2E NLG challenge metrics as the official script (tuetschek/e2e-metrics) computes them.

BLEU and NIST follow MT-Eval's mteval-v13a.pl; ROUGE-L and CIDEr-D follow the COCO caption code, on text
tokenised by the Stanford PTB tokenizer that `pycocoevalcap` ships (Java needed).
"""

from experiments.e2e_metrics.bleu import corpus_bleu
from experiments.e2e_metrics.cider import corpus_cider
from experiments.e2e_metrics.java_tools import JavaNotFoundError, JavaToolNotFoundError
from experiments.e2e_metrics.mteval_tokenizer import mteval_tokenize
from experiments.e2e_metrics.nist import corpus_nist
from experiments.e2e_metrics.ptb_tokenizer import ptb_tokenize
from experiments.e2e_metrics.rouge import corpus_rouge_l

__all__ = [
    "JavaNotFoundError",
    "JavaToolNotFoundError",
    "corpus_bleu",
    "corpus_cider",
    "corpus_nist",
    "corpus_rouge_l",
    "mteval_tokenize",
    "ptb_tokenize",
]
