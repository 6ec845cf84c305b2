"""METEOR 1.5 through its jar, scored as the E2E script does: corpus statistics pooled, not averaged."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import IO

from experiments.e2e_metrics.java_tools import (
    METEOR_JAR,
    METEOR_PARAPHRASES,
    pycocoevalcap_file,
    require_java,
)

# The command line of the COCO caption code: English, with METEOR's own normalisation.
METEOR_OPTIONS = ("-", "-", "-stdio", "-l", "en", "-norm")


def _protocol_safe(text: str) -> str:
    """Text without the "|||" field separator of METEOR's stdio protocol, as the COCO wrapper sends it."""
    return text.replace("|||", "").replace("  ", " ")


class MeteorScorer:
    """A running METEOR 1.5 process, started once (it loads for seconds) and reused for many corpora.

    Use it as a context manager, or call `close`. The process starts loading at construction, so other work
    can run meanwhile.
    """

    def __init__(self, *, java: str = "java", max_heap: str = "2G") -> None:
        java_path = require_java(java)
        jar = pycocoevalcap_file(METEOR_JAR)
        pycocoevalcap_file(METEOR_PARAPHRASES)  # the jar reads it from beside itself; fail early if absent
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._process = subprocess.Popen(
            [java_path, "-jar", f"-Xmx{max_heap}", str(jar), *METEOR_OPTIONS],
            cwd=jar.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )

    def _send(self, lines: Sequence[str]) -> None:
        """Write protocol lines to the process; if it has stopped, the reader reports why."""
        assert self._process.stdin is not None
        try:
            for line in lines:
                self._process.stdin.write(f"{line}\n".encode())
            self._process.stdin.flush()
        except BrokenPipeError:
            pass

    def _read(self) -> str:
        """Read one answer line, or fail with what the process wrote to stderr."""
        assert self._process.stdout is not None
        answer = self._process.stdout.readline().decode("utf-8").strip()
        if not answer:
            raise RuntimeError(f"METEOR stopped without an answer: {self._error_text()}")
        return answer

    def _error_text(self) -> str:
        """The tail of the process' stderr, for error messages."""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", errors="replace").strip()[-2000:] or "(no stderr)"

    def corpus_score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """Corpus METEOR (0-1) of tokenised hypotheses against all references of each MR.

        Each MR's match statistics are pooled into one corpus score (METEOR's EVAL over all segments), which
        is what the E2E script reports, not the mean of segment scores.
        """
        if len(hypotheses) != len(references):
            raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference groups")
        score_lines = [
            " ||| ".join(["SCORE", *(_protocol_safe(reference) for reference in group), _protocol_safe(hypothesis)])
            for hypothesis, group in zip(hypotheses, references, strict=True)
        ]
        # A writer thread feeds the lines while this one reads the answers: no round trip per line, and no
        # deadlock on full pipes.
        writer = threading.Thread(target=self._send, args=(score_lines,))
        writer.start()
        try:
            statistics = [self._read() for _ in score_lines]
        finally:
            writer.join()
        self._send([" ||| ".join(["EVAL", *statistics])])
        for _ in hypotheses:  # the segment scores come first, then the corpus score
            self._read()
        return float(self._read())

    def close(self) -> None:
        """Stop the METEOR process and close its pipes."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        assert self._process.stdin is not None and self._process.stdout is not None
        with contextlib.suppress(BrokenPipeError):  # input the stopped process never read
            self._process.stdin.close()
        self._process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
