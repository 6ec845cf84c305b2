"""Stanford PTB tokenisation, the preprocessing of METEOR, ROUGE-L and CIDEr in the COCO caption code."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from experiments.e2e_metrics.java_tools import PTB_TOKENIZER_JAR, pycocoevalcap_file, require_java

# The tokens the COCO caption code drops after tokenising. The tokenizer runs with -lowerCase, so it writes
# brackets as "-lrb-" and the upper-case bracket entries never match: brackets stay, as in the official
# scores.
COCO_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# The characters the tokenizer ends a line at (checked on the jar); inside a sentence they would shift all
# later lines, so they become spaces. The COCO code replaces only "\n".
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\u2028\u2029]")


def drop_coco_punctuation(tokenized_line: str) -> str:
    """One tokenizer output line without the punctuation tokens the COCO metrics ignore."""
    return " ".join(token for token in tokenized_line.rstrip().split(" ") if token not in COCO_PUNCTUATION)


def ptb_tokenize(sentences: Sequence[str], *, java: str = "java") -> list[str]:
    """Lowercased PTB tokens of each sentence, space-joined, punctuation dropped: what COCO metrics see.

    All sentences go through one run of the tokenizer (Stanford CoreNLP 3.4.1, `-preserveLines -lowerCase`).
    """
    java_path = require_java(java)
    jar = pycocoevalcap_file(PTB_TOKENIZER_JAR)
    with tempfile.TemporaryDirectory(prefix="e2e-ptb-") as directory:
        source = Path(directory) / "sentences.txt"
        source.write_text("".join(_LINE_BREAKS.sub(" ", s) + "\n" for s in sentences), encoding="utf-8")
        command = [java_path, "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer"]
        completed = subprocess.run(
            [*command, "-preserveLines", "-lowerCase", str(source)],
            capture_output=True,
            encoding="utf-8",
            check=False,
        )
    if completed.returncode != 0:
        raise RuntimeError(
            f"the Stanford PTB tokenizer failed (exit {completed.returncode}): {completed.stderr.strip()}"
        )
    lines = completed.stdout.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(sentences):
        raise RuntimeError(
            f"the Stanford PTB tokenizer returned {len(lines)} lines for {len(sentences)} sentences; "
            "a sentence holds a character it reads as a line break"
        )
    return [drop_coco_punctuation(line) for line in lines]
