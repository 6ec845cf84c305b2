"""All five metrics beside the official E2E scorer, run on generated data in both of its NIST modes.

Opt-in: set E2E_METRICS_DIR to a checkout of tuetschek/e2e-metrics whose jars are present (METEOR 1.5 with its
paraphrase table, Stanford CoreNLP 3.4.1; pycocoevalcap's copies can be placed there), and E2E_METRICS_PYTHON
to an interpreter that can run its measure_scores.py (numpy, future, matplotlib, scikit-image; default: this
one). Java and Perl (with XML::Twig) are needed too. Everything the script writes goes under tmp_path.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.e2e_metrics import METRIC_NAMES, E2EScorer, write_hypotheses, write_references

OFFICIAL_DIR = os.environ.get("E2E_METRICS_DIR", "")
OFFICIAL_PYTHON = os.environ.get("E2E_METRICS_PYTHON", sys.executable)
REQUIRED_FILES = (
    "measure_scores.py",
    "mteval/mteval-v13a-sig.pl",
    "pycocoevalcap/meteor/meteor-1.5.jar",
    "pycocoevalcap/meteor/data/paraphrase-en.gz",
    "pycocoevalcap/tokenizer/stanford-corenlp-3.4.1.jar",
)


def _why_not_runnable() -> str | None:
    if not OFFICIAL_DIR:
        return "E2E_METRICS_DIR is not set (point it at a checkout of tuetschek/e2e-metrics)"
    for relative in REQUIRED_FILES:
        path = Path(OFFICIAL_DIR) / relative
        if not path.is_file() or path.stat().st_size == 0:
            return f"E2E_METRICS_DIR lacks {relative} (or it is empty)"
    for tool in ("java", "perl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed; the official script needs it"
    if subprocess.run(["perl", "-MXML::Twig", "-e", "1"], capture_output=True).returncode != 0:
        return "Perl's XML::Twig is missing (Debian: libxml-twig-perl); mteval-v13a-sig.pl needs it"
    probe = "import numpy, future, matplotlib, skimage"
    if subprocess.run([OFFICIAL_PYTHON, "-c", probe], capture_output=True).returncode != 0:
        return f"{OFFICIAL_PYTHON} cannot import the official script's dependencies; set E2E_METRICS_PYTHON"
    return None


requires_official = pytest.mark.skipif(_why_not_runnable() is not None, reason=str(_why_not_runnable()))

NAMES = ["The Vaults", "Blue Spice", "Zizzi", "The Eagle", "Café Brazil", "Cotto", "Fitzbillies", "Loch Fyne"]
FOODS = ["English", "French", "Italian", "Japanese", "Chinese", "Indian", "fast food"]
AREAS = ["city centre", "riverside"]
PRICES = ["less than £20", "£20-25", "more than £30", "cheap", "high"]
RATINGS = ["1 out of 5", "3 out of 5", "5 out of 5", "low", "average", "high"]
CLAUSES = [
    "{name} is a {food} restaurant in the {area}",
    "it serves {food} food at {price} prices",
    "customers rate {name} {rating}",
    "it is family-friendly and near the {area}",
    "prices are {price}",
    "you can find {name} in the {area}",
]


def generated_corpus(num_mrs: int = 240) -> tuple[list[str], list[list[str]]]:
    """E2E-like MRs whose references grow longer and more numerous with the number of fields, as in E2E."""
    rng = random.Random(20210617)
    hypotheses, references = [], []
    for _ in range(num_mrs):
        slots = {
            "name": rng.choice(NAMES),
            "food": rng.choice(FOODS),
            "area": rng.choice(AREAS),
            "price": rng.choice(PRICES),
            "rating": rng.choice(RATINGS),
        }
        fields = rng.randint(1, 5)
        group = []
        for _ in range(rng.randint(1, 2 * fields)):
            clauses = rng.sample(CLAUSES, fields)
            group.append(". ".join(clause.format(**slots) for clause in clauses).capitalize() + ".")
        kept = rng.sample(CLAUSES, max(1, fields - rng.randint(0, 2)))
        hypotheses.append(", and ".join(clause.format(**slots) for clause in kept) + " .")
        references.append(group)
    return hypotheses, references


def run_official(tmp_path: Path, ref: Path, hyp: Path, *, python_mteval: bool) -> dict[str, float]:
    """The official script's five scores (4 decimals) from a symlinked copy of it inside tmp_path."""
    copy = tmp_path / ("official-p" if python_mteval else "official")
    # Symlinked files: the PTB tokenizer writes its temporary file beside its own (unresolved) path.
    shutil.copytree(OFFICIAL_DIR, copy, copy_function=os.symlink, ignore=shutil.ignore_patterns(".git"))
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [OFFICIAL_PYTHON, "measure_scores.py", "-t", *(["-p"] if python_mteval else []), str(ref), str(hyp)]
    done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    values = done.stdout.strip().splitlines()[-1].split("\t")[1:]
    return dict(zip(METRIC_NAMES, map(float, values), strict=True))


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("corpus")
    hypotheses, references = generated_corpus()
    write_hypotheses(directory / "hyp.txt", hypotheses)
    write_references(directory / "ref.txt", references)
    yield directory / "hyp.txt", directory / "ref.txt"


@requires_official
@pytest.mark.parametrize(("nist", "python_mteval"), [("mteval", False), ("pymteval", True)])
def test_all_five_metrics_match_the_official_script(
    corpus_files: tuple[Path, Path], tmp_path: Path, nist: str, python_mteval: bool
) -> None:
    hyp, ref = corpus_files
    hypotheses, references = generated_corpus()
    with E2EScorer(nist=nist) as scorer:
        ours = scorer.score(hypotheses, references)
    official = run_official(tmp_path, ref, hyp, python_mteval=python_mteval)
    # The official script prints 4 decimals; NIST is held to the same rounding, not only the 0.01 asked for.
    for name in METRIC_NAMES:
        assert ours[name] == pytest.approx(official[name], abs=5.1e-5), (name, ours[name], official[name])


def test_the_two_nist_modes_differ_on_this_corpus() -> None:
    """The corpus exercises the difference: MRs with more references have longer ones."""
    from experiments.e2e_metrics import corpus_nist, mteval_tokenize, pymteval_tokenize

    hypotheses, references = generated_corpus()
    perl = corpus_nist(
        [mteval_tokenize(h) for h in hypotheses],
        [[mteval_tokenize(r) for r in g] for g in references],
        variant="mteval",
    )
    python = corpus_nist(
        [pymteval_tokenize(h) for h in hypotheses], [[pymteval_tokenize(r) for r in g] for g in references]
    )
    assert abs(perl - python) > 0.05
