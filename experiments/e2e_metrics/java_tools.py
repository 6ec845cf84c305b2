"""Finding Java and the two Java programs the COCO caption metrics need (shipped by `pycocoevalcap`)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

PTB_TOKENIZER_JAR = "tokenizer/stanford-corenlp-3.4.1.jar"
METEOR_JAR = "meteor/meteor-1.5.jar"
METEOR_PARAPHRASES = "meteor/data/paraphrase-en.gz"


class JavaNotFoundError(RuntimeError):
    """Java, which METEOR 1.5 and the Stanford PTB tokenizer run on, is not installed or not on PATH."""


class JavaToolNotFoundError(RuntimeError):
    """A jar (METEOR 1.5, Stanford CoreNLP 3.4.1) that `pycocoevalcap` should ship is missing."""


def require_java(java: str = "java") -> str:
    """The path of a usable `java` executable, or an error that says how to get one."""
    found = shutil.which(java)
    if found is None:
        raise JavaNotFoundError(
            f"Java was not found (looked for {java!r}): METEOR, ROUGE_L and CIDEr need Java to run "
            "METEOR 1.5 and the Stanford PTB tokenizer. Install a Java runtime (e.g. "
            "`apt-get install default-jre-headless`) and put `java` on PATH, or pass its path as `java`."
        )
    return found


def pycocoevalcap_file(relative_path: str) -> Path:
    """A file shipped inside the installed `pycocoevalcap` package, found without importing it."""
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise JavaToolNotFoundError(
            "the `pycocoevalcap` package, which ships the METEOR 1.5 and Stanford PTB tokenizer jars, is not "
            "installed: `pip install pycocoevalcap` (it is in this project's `experiments` extra)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative_path
        if candidate.is_file():
            return candidate
    raise JavaToolNotFoundError(
        f"{relative_path} is missing from the installed pycocoevalcap "
        f"({', '.join(spec.submodule_search_locations)}): reinstall it with "
        "`pip install --force-reinstall pycocoevalcap`"
    )
