"""ROUGE-L, CIDEr-D and PTB tokenisation against the COCO caption code and hand calculations."""

from __future__ import annotations

import math
import random
import shutil

import pytest
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge, my_lcs

from experiments.e2e_metrics import corpus_cider, corpus_rouge_l, ptb_tokenize
from experiments.e2e_metrics.rouge import lcs_length, sentence_rouge_l

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="Java is not installed")


def _random_corpus(seed: int, size: int) -> tuple[list[str], list[list[str]]]:
    """Tokenised E2E-like hypotheses and 1-5 references per MR, with overlapping vocabulary."""
    rng = random.Random(seed)
    vocabulary = ["a", "the", "pub", "shop", "food", "city", "centre", "riverside", "near", "rated", "is"]
    vocabulary += ["cheap", "blue", "spice", "5", "out", "of"]
    hypotheses, references = [], []
    for _ in range(size):
        group = [" ".join(rng.choices(vocabulary, k=rng.randint(3, 16))) for _ in range(rng.randint(1, 5))]
        words = [w for w in group[0].split() if rng.random() < 0.7] + rng.choices(vocabulary, k=rng.randint(0, 4))
        hypotheses.append(" ".join(words))
        references.append(group)
    return hypotheses, references


def _as_coco(hypotheses: list[str], references: list[list[str]]) -> tuple[dict, dict]:
    """The {id: [references]} and {id: [hypothesis]} dicts the COCO scorers take."""
    return dict(enumerate(references)), {i: [h] for i, h in enumerate(hypotheses)}


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (["a", "b", "c", "d"], ["a", "c", "d", "e", "f"], 3),
        ([], ["a", "b"], 0),
        (["a", "b", "a"], ["b", "a", "b"], 2),
    ],
)
def test_lcs_length_by_hand(first: list[str], second: list[str], expected: int) -> None:
    assert lcs_length(first, second) == expected == lcs_length(second, first)


def test_lcs_length_matches_coco() -> None:
    rng = random.Random(0)
    for _ in range(200):
        first, second = (rng.choices("abcde", k=rng.randint(0, 12)) for _ in range(2))
        assert lcs_length(first, second) == my_lcs(first, second)


def test_rouge_l_by_hand() -> None:
    # LCS("a b c d", "a c d e f") = 3: precision 3/4, recall 3/5, beta 1.2.
    expected = (1 + 1.2**2) * 0.75 * 0.6 / (0.6 + 1.2**2 * 0.75)
    assert sentence_rouge_l("a b c d", ["a c d e f"]) == pytest.approx(expected, rel=1e-14)


def test_rouge_l_takes_best_precision_and_recall_separately() -> None:
    # "a b c d e f" gives precision 1, recall 2/6; "a x" gives recall 1/2. COCO combines 1 and 1/2.
    expected = (1 + 1.2**2) * 1.0 * 0.5 / (0.5 + 1.2**2 * 1.0)
    assert sentence_rouge_l("a b", ["a b c d e f", "a x"]) == pytest.approx(expected, rel=1e-14)
    assert sentence_rouge_l("", ["a b"]) == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_rouge_l_matches_coco(seed: int) -> None:
    hypotheses, references = _random_corpus(seed, size=50)
    expected, _ = Rouge().compute_score(*_as_coco(hypotheses, references))
    assert corpus_rouge_l(hypotheses, references) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cider_matches_coco(seed: int) -> None:
    hypotheses, references = _random_corpus(seed, size=60)
    hypotheses[3] = ""  # an empty output scores 0 and must not break the corpus score
    expected, _ = Cider().compute_score(*_as_coco(hypotheses, references))
    assert corpus_cider(hypotheses, references) == pytest.approx(expected, rel=1e-12)


def test_cider_of_identical_texts_with_distinct_vocabularies_is_ten() -> None:
    # Each n-gram is in one of the two MRs: idf = log 2 everywhere, the tf-idf vectors are equal (cosine 1
    # at every order), the lengths are equal (no penalty): 10 * mean(1, 1, 1, 1) per MR.
    texts = ["alpha bravo charlie delta echo", "foxtrot golf hotel india"]
    assert corpus_cider(texts, [[text] for text in texts]) == pytest.approx(10.0, rel=1e-14)


def test_cider_of_a_single_mr_is_zero() -> None:
    # With one MR every reference n-gram has idf log(1) - log(1) = 0: nothing is informative.
    assert corpus_cider(["a b c"], [["a b c"]]) == 0.0


def test_cider_by_hand_with_length_penalty() -> None:
    # Two MRs, references "x" and "y": idf = log 2 for every n-gram. MR 2 ("y") scores 10 * mean(1, 0, 0, 0).
    # MR 1 ("x x"): unigram tf-idf 2 log 2 against log 2 gives clipped cosine (log 2)^2 / (2 log 2 * log 2)
    # = 1/2; its bigram has no counterpart; one bigram of length difference costs exp(-1 / (2 * 6^2)).
    mr_1 = 10 * 0.5 * math.exp(-1 / 72) / 4
    assert corpus_cider(["x x", "y"], [["x"], ["y"]]) == pytest.approx((mr_1 + 10 / 4) / 2, rel=1e-14)


@needs_java
def test_ptb_tokenize_lowercases_and_drops_coco_punctuation() -> None:
    sentences = [
        'Prices are £20-25, it\'s "great" (really)!',
        "",
        "Café Brazil: 5 out of 5; cheap -- OK...",
        "a\nb\rc\u2028d",
        "e\x85f\x1cg",  # the tokenizer reads NEL as "..." and \x1c as a space
    ]
    assert ptb_tokenize(sentences) == [
        "prices are # 20-25 it 's great -lrb- really -rrb-",  # brackets survive: the COCO list has -LRB-
        "",
        "café brazil 5 out of 5 cheap ok",
        "a b c d",
        "e f g",
    ]
