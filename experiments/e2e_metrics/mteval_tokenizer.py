"""MT-Eval v13a normalisation: the tokens that BLEU and NIST count in the E2E challenge.

The rules are those of `tokenization` in mteval-v13a.pl (its default, non-international mode, lowercasing),
applied to a segment after the script's SGML reader has joined its whitespace into single spaces.
"""

from __future__ import annotations

import re
import string

# Perl's \s on Unicode strings; Python's \s also counts the separators \x1c-\x1f, which Perl does not.
_PERL_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_PERL_SPACE_RUN = re.compile(f"[{_PERL_SPACE}]+")

# The entities mteval-v13a.pl decodes, in its order (so "&amp;lt;" becomes "<" as it does there).
_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))

# `tr/[A-Z]/[a-z]/`: ASCII letters only; "É" stays upper-case.
_ASCII_LOWERCASE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

_SPLIT_RULES = (
    # Punctuation and symbols of the ASCII range except ' , - . and digits.
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    # Period and comma, unless preceded by a digit ...
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    # ... and unless followed by a digit: "3.5" and "1,000" stay whole.
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    # A dash after a digit: "20-25" becomes "20 - 25".
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
)


def mteval_tokenize(text: str) -> list[str]:
    """The lowercased tokens mteval-v13a.pl scores in one segment, so BLEU and NIST match it exactly."""
    text = _PERL_SPACE_RUN.sub(" ", text)  # the SGML reader's `s/[\s\n\r]+/ /g`
    text = text.replace("<skipped>", "")
    for entity, character in _ENTITIES:
        text = text.replace(entity, character)
    text = f" {text} ".translate(_ASCII_LOWERCASE)
    for pattern, replacement in _SPLIT_RULES:
        text = pattern.sub(replacement, text)
    text = _PERL_SPACE_RUN.sub(" ", text).strip(" ")  # every Perl space is a plain space by now
    return text.split(" ") if text else []


_PYTHON_SPACE_RUN = re.compile(r"\s+")


def pymteval_tokenize(text: str) -> list[str]:
    """The tokens the official scorer's Python MT-Eval (`measure_scores.py -p`) counts in one segment.

    The same splitting rules as `mteval_tokenize`, with three differences of that re-implementation: every
    cased letter is lowercased (not only A-Z), whitespace is Python's (which includes \\x1c-\\x1f), and an
    empty segment is one empty token, so an empty output still counts one word.
    """
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, character in _ENTITIES:
        text = text.replace(entity, character)
    text = f" {text} "
    for pattern, replacement in _SPLIT_RULES:
        text = pattern.sub(replacement, text)
    text = _PYTHON_SPACE_RUN.sub(" ", text).strip()
    return [token.lower() for token in text.split(" ")]
