"""BLEU and NIST against MT-Eval v13a: sacrebleu, hand calculations and the official script (Perl and -p)."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from experiments.e2e_metrics import corpus_bleu, corpus_nist, mteval_tokenize, pymteval_tokenize
from experiments.e2e_metrics.bleu import bleu_from_statistics, closest_reference_length
from experiments.e2e_metrics.nist import information_weights, nist_length_penalty, nist_reference_length

E2E_LIKE_SENTENCES = [
    "Blue Spice is a coffee shop in the city centre, near Avalon.",
    "Prices are £20-25; customer rating: 3 out of 5 (average).",
    "It costs 3.50, or 1,000 for a group - or about 20.5!",
    "The Vaults isn't family-friendly... but it's cheap & cheerful?",
    'He said "great" <br> {ok} [yes] a/b c\\d e|f ~g^h_i`j @k #l $m %n *o +p =q',
    "Numbers: 1-2, 3.4.5, 6,7,8; end.",
]


@pytest.mark.parametrize("sentence", E2E_LIKE_SENTENCES)
def test_tokenizer_matches_sacrebleu_13a(sentence: str) -> None:
    """sacrebleu's 13a tokenizer re-implements the same Perl rules independently."""
    assert mteval_tokenize(sentence) == Tokenizer13a()(sentence.lower()).split()


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Prices are £20-25.", ["prices", "are", "£20", "-", "25", "."]),
        ("It costs 3.50, or 1,000!", ["it", "costs", "3.50", ",", "or", "1,000", "!"]),
        ("A &amp; B &quot;C&quot; &amp;lt;", ["a", "&", "b", '"', "c", '"', "<"]),
        ("it's family-friendly", ["it's", "family-friendly"]),
        ("<skipped> CAFÉ Brazil", ["cafÉ", "brazil"]),  # tr/A-Z/a-z/ lowercases ASCII only
        ("  \t ", []),
        ("a\u00a0b\x1cc", ["a", "b\x1cc"]),  # Perl's \s has no-break space but not \x1c
    ],
)
def test_tokenizer_follows_the_perl_rules(text: str, tokens: list[str]) -> None:
    assert mteval_tokenize(text) == tokens


@pytest.mark.parametrize(
    ("hypothesis_length", "reference_lengths", "expected"),
    [
        (7, [11, 8, 6, 7], 7),  # the example in mteval-v13a.pl's comments
        (7, [11, 8, 6], 6),  # 8 and 6 are equally close: the shorter wins
        (7, [11, 8], 8),
        (5, [9, 0, 4], 4),  # empty (padding) references are skipped
        (0, [3, 5], 3),
    ],
)
def test_closest_reference_length(hypothesis_length: int, reference_lengths: list[int], expected: int) -> None:
    assert closest_reference_length(hypothesis_length, reference_lengths) == expected


def test_bleu_smoothing_by_hand() -> None:
    # Orders 3 and 4 have no match: they count 1 / (2 * 3) and 1 / (4 * 2); the lengths are equal.
    expected = math.exp((math.log(4 / 5) + math.log(2 / 4) + math.log(1 / 6) + math.log(1 / 8)) / 4)
    assert bleu_from_statistics([0, 4, 2, 0, 0], [0, 5, 4, 3, 2], 5) == pytest.approx(expected, rel=1e-14)


def test_bleu_skips_orders_the_hypotheses_are_too_short_for() -> None:
    # Three words, all matched: orders 1-3 are perfect, order 4 has no n-gram and counts as 1; only the
    # brevity penalty (reference length 4) is left.
    assert bleu_from_statistics([0, 3, 2, 1, 0], [0, 3, 2, 1, 0], 4) == pytest.approx(math.exp(1 - 4 / 3))


def test_bleu_of_no_words_is_zero() -> None:
    assert bleu_from_statistics([0] * 5, [0] * 5, 4) == 0.0


def _tokenized(hypotheses: list[str], references: list[list[str]]) -> tuple[list, list]:
    return [mteval_tokenize(h) for h in hypotheses], [[mteval_tokenize(r) for r in group] for group in references]


def test_bleu_matches_sacrebleu_with_two_references() -> None:
    hypotheses = [
        "Blue Spice is a coffee shop in the city centre.",
        "The Vaults is a cheap pub near Café Adriatic, rated 5 out of 5.",
        "Zizzi serves Italian food; it's not family-friendly.",
    ]
    references = [
        [
            "Blue Spice is a coffee shop in city centre.",
            "In the city centre there is a coffee shop, Blue Spice.",
        ],
        ["Near Café Adriatic, The Vaults is a cheap pub rated 5 out of 5.", "The Vaults pub is cheap."],
        ["Zizzi is an Italian restaurant that is not family-friendly.", "Zizzi serves Italian food."],
    ]
    streams = [[group[k] for group in references] for k in range(2)]
    expected = sacrebleu.corpus_bleu(hypotheses, streams, smooth_method="none", lowercase=True, tokenize="13a")
    assert corpus_bleu(*_tokenized(hypotheses, references)) == pytest.approx(expected.score / 100, rel=1e-12)


def test_bleu_smoothing_matches_sacrebleu_exp() -> None:
    # No 4-gram matches anywhere: mteval's default smoothing is sacrebleu's "exp" method.
    hypotheses = ["the cat sat in a red mat", "a dog ran far away"]
    references = [["the cat sat on the mat"], ["the dog ran away"]]
    expected = sacrebleu.corpus_bleu(hypotheses, [[r[0] for r in references]], smooth_method="exp")
    assert expected.counts[3] == 0
    assert corpus_bleu(*_tokenized(hypotheses, references)) == pytest.approx(expected.score / 100, rel=1e-12)


def test_nist_by_hand_single_reference() -> None:
    # Reference "a b c": info(a) = info(b) = log2(3 / 1); info(a b) = log2(count(a) / count(a b)) = 0.
    # Unigrams: 2 log2(3) / 2; bigram: 0 / 1; orders 3-5: nothing. Length 2 / 3: penalty exactly 0.5.
    # With one reference per MR both implementations agree.
    for variant in ("pymteval", "mteval"):
        score = corpus_nist([["a", "b"]], [[["a", "b", "c"]]], variant=variant)
        assert score == pytest.approx(math.log2(3) * 0.5, rel=1e-14)


def test_nist_length_penalty_uses_the_mean_reference_length() -> None:
    # References of 3 and 5 words: unigram counts a, b, c = 2 and d, e = 1 of 8 words, so
    # info(a) = info(b) = 2 and info(a b) = 0. The penalty compares 2 words with the mean reference
    # length 4 (ratio 0.5), not with the closest length 3 that BLEU would take.
    for variant in ("pymteval", "mteval"):
        score = corpus_nist([["a", "b"]], [[["a", "b", "c"], ["a", "b", "c", "d", "e"]]], variant=variant)
        assert score == pytest.approx(2 * nist_length_penalty(0.5), rel=1e-14)
    assert nist_length_penalty(2 / 3) == pytest.approx(0.5, rel=1e-14)
    assert nist_length_penalty(1.2) == 1.0


def test_nist_weighs_bigrams_after_the_token_0_like_perl() -> None:
    # Perl tests the prefix string "0" for truth and finds it false: info("0 stars") uses the word total.
    weights = information_weights([[["0", "stars", "0", "stars", "x"]]], variant="mteval")
    assert weights[("0", "stars")] == pytest.approx(math.log2(5 / 2))
    assert weights[("stars", "0")] == pytest.approx(math.log2(2 / 1))
    # The Python implementation has no such quirk: count("0") / count("0 stars") = 2 / 2.
    assert information_weights([[["0", "stars", "0", "stars", "x"]]])[("0", "stars")] == 0.0


# Two MRs: "a b" with one reference, "c d e f g" with three. 17 reference words; info(a) = info(b) = log2(17),
# info(c) .. info(g) = log2(17 / 3), every longer n-gram 0 (it always follows its prefix). Both hypotheses are
# word for word a reference: 7 words, unigram information 2 log2(17) + 5 log2(17 / 3).
TWO_MRS_HYPOTHESES = [["a", "b"], ["c", "d", "e", "f", "g"]]
TWO_MRS_REFERENCES = [[["a", "b"]], [["c", "d", "e", "f", "g"]] * 3]
TWO_MRS_INFORMATION = (2 * math.log2(17) + 5 * math.log2(17 / 3)) / 7


def test_nist_reference_length_is_the_sum_of_per_mr_means_as_measure_scores_p() -> None:
    # measure_scores.py -p (LoRA's command): the reference length is 2 + 5 = 7, the sum of each MR's mean
    # reference length; the hypotheses have 7 words, so there is no length penalty. (The official Python
    # code gives 2.955346769306657 here.)
    assert nist_reference_length(TWO_MRS_REFERENCES) == 7
    score = corpus_nist(TWO_MRS_HYPOTHESES, TWO_MRS_REFERENCES)
    assert score == pytest.approx(TWO_MRS_INFORMATION, rel=1e-14)
    assert score == pytest.approx(2.955346769306657, rel=1e-14)


def test_nist_reference_length_of_the_perl_divides_by_the_mean_reference_count() -> None:
    # mteval-v13a-sig.pl: 17 words / (4 references / 2 MRs) = 8.5 words, so 7 words are penalised.
    assert nist_reference_length(TWO_MRS_REFERENCES, variant="mteval") == 8.5
    score = corpus_nist(TWO_MRS_HYPOTHESES, TWO_MRS_REFERENCES, variant="mteval")
    assert score == pytest.approx(TWO_MRS_INFORMATION * nist_length_penalty(7 / 8.5), rel=1e-14)


def test_nist_of_measure_scores_p_counts_n_grams_as_length_minus_n_plus_1() -> None:
    # "x" is one word: the Python code counts 1 - n + 1 of its n-grams, negative from n = 3 on, so the
    # 2-gram total is 0 + 1 and the 3-gram total -1 + 2. The Perl counts none (0 + 1, 0 + 2).
    hypotheses, references = [["x"], ["p", "q", "r", "s"]], [[["x"]], [["p", "q", "r", "s"]]]
    # info: x, p .. s = log2(5); every longer n-gram 0. Unigrams 5 log2(5) / 5; the rest add nothing.
    for variant in ("pymteval", "mteval"):
        assert corpus_nist(hypotheses, references, variant=variant) == pytest.approx(math.log2(5), rel=1e-14)
    # An empty output is one empty word there: it lowers the unigram precision and the length ratio.
    assert pymteval_tokenize("") == [""]
    assert pymteval_tokenize("  ") == [""]
    score = corpus_nist([[""], ["p", "q", "r", "s"]], references)
    assert score == pytest.approx(4 * math.log2(5) / 5, rel=1e-14)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Prices are £20-25.", ["prices", "are", "£20", "-", "25", "."]),
        ("A &amp; B &quot;C&quot; &amp;lt;", ["a", "&", "b", '"', "c", '"', "<"]),
        ("<skipped> CAFÉ Brazil", ["café", "brazil"]),  # every cased letter is lowercased
        ("a\u00a0b\x1fc", ["a", "b", "c"]),  # Python's whitespace includes \x1f
    ],
)
def test_pymteval_tokenizer(text: str, tokens: list[str]) -> None:
    assert pymteval_tokenize(text) == tokens


def test_nist_rejects_an_unknown_variant() -> None:
    with pytest.raises(ValueError, match="unknown NIST variant 'perl'"):
        corpus_nist([["a"]], [[["a"]]], variant="perl")


# The official script (tuetschek/e2e-metrics @ 1b9c4d8, mteval/mteval-v13a-sig.pl, run by measure_scores.py on
# these texts written as HYP and REF files) prints BLEU and NIST with 4 decimals; the values below come from a
# copy of that script whose final printf was widened from %.4f to %.12f, nothing else changed. The unmodified
# script prints the rounded values given in the comments. The last value is NIST as `measure_scores.py -p`
# computes it: its `run_pymteval` (unmodified code) called on the same texts.
OFFICIAL_MTEVAL_CASES = [
    pytest.param(
        ["0 stars for you", "it costs 0 pounds", "the the the"],
        [["0 stars for the cafe", "a cafe with 0 stars"], ["it is free, 0 pounds"], ["the cat"]],
        0.27555863429,  # 0.2756
        2.870787261213,  # 2.8708
        2.471266869190713,
        id="token-0-and-no-4-gram-match",
    ),
    pytest.param(
        ["a b c", "b a"],
        [["a b c d"], ["b a c", "b"]],
        1.0,  # 1.0000
        3.101050548836,  # 3.1011
        2.743273113781539,
        id="too-short-for-4-grams",
    ),
]


@pytest.mark.parametrize(("hypotheses", "references", "bleu", "nist", "nist_p"), OFFICIAL_MTEVAL_CASES)
def test_bleu_and_nist_match_the_official_script(
    hypotheses: list[str], references: list[list[str]], bleu: float, nist: float, nist_p: float
) -> None:
    tokens = _tokenized(hypotheses, references)
    assert corpus_bleu(*tokens) == pytest.approx(bleu, abs=1e-11)
    assert corpus_nist(*tokens, variant="mteval") == pytest.approx(nist, abs=1e-11)
    python_tokens = [pymteval_tokenize(h) for h in hypotheses], [[pymteval_tokenize(r) for r in g] for g in references]
    assert corpus_nist(*python_tokens) == pytest.approx(nist_p, abs=1e-11)


def test_corpus_functions_reject_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference groups"):
        corpus_bleu([["a"], ["b"]], [[["a"]]])
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference groups"):
        corpus_nist([["a"], ["b"]], [[["a"]]])
