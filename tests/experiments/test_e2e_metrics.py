"""The five E2E metrics end to end (Java: METEOR 1.5 and the PTB tokenizer), pinned to the official script."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.e2e_eval import main
from experiments.e2e_metrics import (
    METRIC_NAMES,
    E2EScorer,
    corpus_nist,
    mteval_tokenize,
    write_hypotheses,
    write_references,
)

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Java is not installed")

NAMES = ["The Vaults", "Blue Spice", "Zizzi", "The Eagle", "Café Brazil", "Cotto", "Fitzbillies", "Loch Fyne"]
FOODS = ["English", "French", "Italian", "Japanese", "Chinese", "Indian", "fast food"]
AREAS = ["city centre", "riverside"]
PRICES = ["less than £20", "£20-25", "more than £30", "about £20.50", "cheap", "high"]
RATINGS = ["1 out of 5", "3 out of 5", "5 out of 5", "low", "average", "high"]
REFERENCE_TEMPLATES = [
    "{name} is a {food} restaurant in the {area}.",
    "Located in the {area}, {name} serves {food} food at {price} prices; it's rated {rating}.",
    "{name} (in the {area}) offers {food} food & drinks. Price range: {price}. Customer rating: {rating}!",
    "If you want {food} food, try {name}: it is family-friendly, costs {price} and is rated {rating}.",
    'For "{food}" cuisine near the {area}, {name} -- rated {rating} -- is a good pick.',
]
HYPOTHESIS_TEMPLATES = [
    "{name} serves {food} food in the {area} with a {rating} rating.",
    "{name} is a {price} {food} place in the {area}.",
    "There is a {food} restaurant called {name} , rated {rating}",
]


def synthetic_corpus() -> tuple[list[str], list[list[str]]]:
    """24 E2E-like MRs, 1-4 references each (60 in all), one output per MR; built without randomness."""
    hypotheses, references = [], []
    for i in range(24):
        slots = {
            "name": NAMES[i % len(NAMES)],
            "food": FOODS[(3 * i) % len(FOODS)],
            "area": AREAS[(i // 2) % len(AREAS)],
            "price": PRICES[(5 * i + 1) % len(PRICES)],
            "rating": RATINGS[(7 * i + 2) % len(RATINGS)],
        }
        group = [REFERENCE_TEMPLATES[(i + k) % len(REFERENCE_TEMPLATES)].format(**slots) for k in range(1 + i % 4)]
        if i == 5:
            hypothesis = ""  # an empty output line
        elif i == 7:
            hypothesis = group[1]  # word for word the second reference
        elif i == 11:
            hypothesis = slots["name"]
        else:
            hypothesis = HYPOTHESIS_TEMPLATES[i % len(HYPOTHESIS_TEMPLATES)].format(**slots)
        hypotheses.append(hypothesis)
        references.append(group)
    return hypotheses, references


# The official scorer on `synthetic_corpus()` written with write_hypotheses / write_references:
#   ./measure_scores.py synth_ref.txt synth_hyp.txt
# (tuetschek/e2e-metrics @ 1b9c4d8, with the METEOR 1.5 and CoreNLP 3.4.1 jars of pycocoevalcap 1.2, which are
# byte-identical to the repository's own jars) prints BLEU 0.2809, NIST 2.2004, METEOR 0.2947, ROUGE_L 0.4635,
# CIDEr 1.4486. The full-precision values: METEOR, ROUGE_L and CIDEr read from the script's own COCOEvalCap
# object (unmodified code); BLEU and NIST from its mteval-v13a-sig.pl with the final printf widened from %.4f
# to %.12f (no other change). NIST: the scorer's default follows `measure_scores.py -p` (LoRA's command), whose
# run_pymteval (unmodified code) gives 2.2108164972609727 here (-p prints 2.2108); the Perl's 2.2004 is the
# "mteval" variant.
OFFICIAL_SYNTHETIC_SCORES = {
    "BLEU": 0.280929229853,
    "NIST": 2.2108164972609727,
    "METEOR": 0.29472516235754825,
    "ROUGE_L": 0.46345975999821626,
    "CIDEr": 1.4485999827802896,
}


@pytest.fixture(scope="module")
def scorer() -> Iterator[E2EScorer]:
    """One METEOR process (it takes seconds to load) for every test of this module."""
    with E2EScorer() as shared:
        yield shared


def test_matches_the_official_script_on_a_synthetic_corpus(scorer: E2EScorer) -> None:
    scores = scorer.score(*synthetic_corpus())
    assert list(scores) == list(METRIC_NAMES)
    for name, official in OFFICIAL_SYNTHETIC_SCORES.items():
        assert scores[name] == pytest.approx(official, abs=1e-9), name


def test_nist_of_the_perl_script_on_the_synthetic_corpus() -> None:
    hypotheses, references = synthetic_corpus()
    tokens = [mteval_tokenize(h) for h in hypotheses], [[mteval_tokenize(r) for r in g] for g in references]
    assert corpus_nist(*tokens, variant="mteval") == pytest.approx(2.200431189573, abs=1e-9)


def test_identical_outputs_score_the_maximum(scorer: E2EScorer) -> None:
    # Distinct words per MR, so every n-gram has the same idf and CIDEr reaches its maximum, 10.
    texts = [
        "Alpha bravo charlie delta echo.",
        "Foxtrot, golf hotel india juliett!",
        "Kilo lima mike november",
    ]
    scores = scorer.score(texts, [[text] for text in texts])
    assert scores["BLEU"] == pytest.approx(1.0, abs=1e-12)
    assert scores["METEOR"] == pytest.approx(1.0, abs=1e-12)
    assert scores["ROUGE_L"] == pytest.approx(1.0, abs=1e-12)
    assert scores["CIDEr"] == pytest.approx(10.0, abs=1e-12)
    assert scores["NIST"] > 0


def test_cli_scores_multi_reference_groups_and_ends_with_json(
    scorer: E2EScorer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each output is word for word one reference of its own MR (not the first): perfect scores show that
    # every reference of a group is used and that groups line up with the output lines.
    references = [
        ["Blue Spice is a pub.", "The pub Blue Spice is in the riverside area near Avalon."],
        [
            "Zizzi serves cheap Italian food.",
            "Cheap Italian food at Zizzi.",
            "Zizzi is an Italian place rated 5 out of 5.",
        ],
    ]
    write_references(tmp_path / "ref.txt", references)
    write_hypotheses(tmp_path / "hyp.txt", [references[0][1], references[1][2]])
    assert main(["--hyp", str(tmp_path / "hyp.txt"), "--ref", str(tmp_path / "ref.txt")], scorer=scorer) == 0
    output = capsys.readouterr().out.splitlines()
    assert output[0] == "E2E NLG metrics over 2 MRs (5 references)"
    assert [line.split()[0] for line in output[2:7]] == list(METRIC_NAMES)
    scores = json.loads(output[-1])
    assert list(scores) == list(METRIC_NAMES)
    assert scores["BLEU"] == pytest.approx(1.0) and scores["ROUGE_L"] == pytest.approx(1.0)
    assert scores["METEOR"] == pytest.approx(1.0)

    # The same outputs against the other MR's references score far lower.
    write_hypotheses(tmp_path / "swapped.txt", [references[1][2], references[0][1]])
    assert main(["--hyp", str(tmp_path / "swapped.txt"), "--ref", str(tmp_path / "ref.txt")], scorer=scorer) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["BLEU"] < 0.2
