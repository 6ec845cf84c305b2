"""Score an E2E NLG system output with the official challenge metrics.

    python -m experiments.e2e_eval --hyp HYP.txt --ref REF.txt
    python -m experiments.e2e_eval --run RUN_DIR [RUN_DIR ...]   # (re)score runs of experiments.e2e

With ``--run``, each run directory's predictions.txt and references.txt are scored and its result.json
is updated (runs decoded on a machine without Java record their scores as pending).

HYP holds one output per line, one line per MR. REF holds the references of each MR on consecutive lines
with one blank line between MRs (the official multi-reference layout; a file without blank lines is read as
one reference per MR). Prints a table, then on its last line one JSON object with the keys BLEU, NIST,
METEOR, ROUGE_L and CIDEr on the official script's scales.

NIST is that of `measure_scores.py -p` (LoRA's evaluation command) unless --nist mteval asks for the
script's default Perl mteval-v13a-sig.pl; the two differ in the reference length of NIST's length penalty.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.e2e_metrics import (
    METRIC_NAMES,
    NIST_VARIANTS,
    E2EFormatError,
    E2EScorer,
    JavaNotFoundError,
    JavaToolNotFoundError,
    read_hypotheses,
    read_references,
)

EXIT_FORMAT_ERROR = 2
EXIT_MISSING_TOOL = 3


def check_counts(hypotheses: Sequence[str], references: Sequence[Sequence[str]], hyp: str, ref: str) -> None:
    """Fail with the counts and the fix when HYP and REF do not describe the same MRs."""
    if len(hypotheses) == len(references):
        return
    hint = ""
    if hypotheses and not hypotheses[-1]:
        hint = " HYP ends with a blank line, which counts as an empty output: remove it if it is not one."
    raise E2EFormatError(
        f"HYP {hyp} has {len(hypotheses)} lines but REF {ref} has {len(references)} MR groups: give "
        "exactly one output line per MR, in the order of the REF groups (REF separates MR groups by one "
        f"blank line; a REF without blank lines holds one reference per MR).{hint}"
    )


def format_table(scores: dict[str, float], num_mrs: int, num_references: int) -> str:
    """The human-readable score table."""
    rows = [f"E2E NLG metrics over {num_mrs} MRs ({num_references} references)", f"{'metric':<8}  score"]
    rows += [f"{name:<8}  {scores[name]:.4f}" for name in METRIC_NAMES]
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: HYP and REF files, and where Java is."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.e2e_eval",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--hyp", help="system outputs, one line per MR")
    parser.add_argument("--ref", help="references, one blank line between MR groups")
    parser.add_argument("--run", nargs="+", help="run directories of experiments.e2e to score in place")
    parser.add_argument("--java", default="java", help="the java executable (default: java on PATH)")
    parser.add_argument(
        "--nist",
        choices=NIST_VARIANTS,
        default="pymteval",
        help="NIST as measure_scores.py -p computes it (pymteval, LoRA's command; default) or as its Perl\n"
        "mteval-v13a-sig.pl does (mteval, the script's default)",
    )
    args = parser.parse_args(argv)
    if bool(args.run) == bool(args.hyp or args.ref) or (not args.run and not (args.hyp and args.ref)):
        parser.error("give either --hyp and --ref, or --run RUN_DIR")
    return args


def rescore_run(run_dir: str | Path, scorer: E2EScorer) -> dict[str, float]:
    """Score a run directory's predictions against its references and update its result.json."""
    from experiments.atomic import write_json_atomic

    run_dir = Path(run_dir)
    result_path = run_dir / "result.json"
    if not result_path.is_file():
        raise E2EFormatError(f"{run_dir} has no result.json: pass the directory of a finished experiments.e2e run")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    hypotheses = read_hypotheses(run_dir / "predictions.txt")
    references = read_references(run_dir / "references.txt")
    check_counts(hypotheses, references, str(run_dir / "predictions.txt"), str(run_dir / "references.txt"))
    scores = scorer.score(hypotheses, references)
    result["metrics"].update({"test": scores, "best": scores, "last": scores})
    result["main_metric_value"] = scores[result.get("main_metric", "BLEU")]
    result.pop("scoring_pending", None)
    write_json_atomic(result_path, result)
    return scores


def main(argv: Sequence[str] | None = None, scorer: E2EScorer | None = None) -> int:
    """Run the CLI; returns the exit status. An open `scorer` may be passed to reuse its METEOR process.

    A passed `scorer` computes NIST its own way; --nist then has no effect.
    """
    args = parse_args(argv)
    if args.run:
        return _rescore_runs(args.run, args.java, args.nist, scorer)
    try:
        hypotheses = read_hypotheses(args.hyp)
        references = read_references(args.ref)
        check_counts(hypotheses, references, args.hyp, args.ref)
        if scorer is not None:
            scores = scorer.score(hypotheses, references)
        else:
            with E2EScorer(java=args.java, nist=args.nist) as own_scorer:
                scores = own_scorer.score(hypotheses, references)
    except E2EFormatError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FORMAT_ERROR
    except (JavaNotFoundError, JavaToolNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_MISSING_TOOL
    print(format_table(scores, len(references), sum(len(group) for group in references)))
    print(json.dumps({name: scores[name] for name in METRIC_NAMES}))
    return 0


def _rescore_runs(run_dirs: Sequence[str], java: str, nist: str, scorer: E2EScorer | None) -> int:
    try:
        with scorer or E2EScorer(java=java, nist=nist) as active:
            for run_dir in run_dirs:
                scores = rescore_run(run_dir, active)
                print(f"{run_dir}: " + " ".join(f"{name} {scores[name]:.4f}" for name in METRIC_NAMES))
    except E2EFormatError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FORMAT_ERROR
    except (JavaNotFoundError, JavaToolNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_MISSING_TOOL
    return 0


if __name__ == "__main__":
    sys.exit(main())
