"""The E2E NLG challenge metrics as the official script (tuetschek/e2e-metrics) computes them.

BLEU and NIST follow MT-Eval's mteval-v13a.pl.
"""

from experiments.e2e_metrics.bleu import corpus_bleu
from experiments.e2e_metrics.mteval_tokenizer import mteval_tokenize
from experiments.e2e_metrics.nist import corpus_nist

__all__ = ["corpus_bleu", "corpus_nist", "mteval_tokenize"]
