"""Small learnable datasets in the real file formats, and tiny models with word-level tokenizers.

They let the whole pipeline (data files -> tokenizer -> model -> training -> results) run offline on
a CPU in seconds: for ``make glue-quick`` / ``make e2e-quick`` and for the tests. The numbers they
produce check the plumbing, not the paper.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "VOCABULARY",
    "e2e_vocabulary",
    "write_e2e_folder",
    "write_glue_folder",
    "write_tiny_bert",
    "write_tiny_gpt2",
    "write_tiny_roberta",
    "write_word_tokenizer",
]

_POSITIVE = ("good", "great", "fine", "lovely", "superb", "bright", "warm", "fun")
_NEGATIVE = ("bad", "poor", "dull", "awful", "grim", "cold", "weak", "sad")
_NEUTRAL = (
    "the",
    "a",
    "film",
    "plot",
    "cast",
    "story",
    "music",
    "scene",
    "it",
    "was",
    "and",
    "very",
    "quite",
    "with",
    "this",
    "that",
    "of",
    "end",
    "day",
    "city",
)
VOCABULARY: tuple[str, ...] = _POSITIVE + _NEGATIVE + _NEUTRAL
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # RoBERTa's ids 0..4


def _sentiment_rows(rng: random.Random, n: int) -> list[tuple[str, int]]:
    """Sentences whose label says whether positive words outnumber negative ones (ties excluded)."""
    rows: list[tuple[str, int]] = []
    while len(rows) < n:
        words = [rng.choice(_NEUTRAL) for _ in range(rng.randint(3, 8))]
        pos, neg = rng.randint(0, 3), rng.randint(0, 3)
        if pos == neg:
            continue
        words += [rng.choice(_POSITIVE) for _ in range(pos)] + [rng.choice(_NEGATIVE) for _ in range(neg)]
        rng.shuffle(words)
        rows.append((" ".join(words), int(pos > neg)))
    return rows


def _similarity_rows(rng: random.Random, n: int) -> list[tuple[str, str, float]]:
    """Sentence pairs scored 0-5 by the overlap (Jaccard) of their word sets."""
    rows = []
    for _ in range(n):
        first = rng.sample(VOCABULARY, rng.randint(4, 8))
        keep = rng.randint(0, len(first))
        second = first[:keep] + rng.sample(VOCABULARY, rng.randint(1, 5))
        rng.shuffle(second)
        overlap = len(set(first) & set(second)) / len(set(first) | set(second))
        rows.append((" ".join(first), " ".join(second), round(5.0 * overlap, 3)))
    return rows


def _write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_glue_folder(root: str | Path, n_train: int = 400, n_dev: int = 100, seed: int = 0) -> Path:
    """SST-2- and STS-B-shaped tasks in the GLUE TSV layout (``<root>/SST-2/train.tsv``, ...)."""
    root = Path(root)
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("dev", n_dev)):
        _write_tsv(root / "SST-2" / f"{split}.tsv", ("sentence", "label"), _sentiment_rows(rng, n))
        header = (
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
            "score",
        )
        rows = [
            (i, "synthetic", "none", "2026", i, "none", "none", a, b, s)
            for i, (a, b, s) in enumerate(_similarity_rows(rng, n))
        ]
        _write_tsv(root / "STS-B" / f"{split}.tsv", header, rows)
    return root


_NAMES = ("Alpha", "Bravo", "Cobalt", "Delta", "Ember", "Fable", "Gusto", "Harbor")
_TYPES = ("pub", "restaurant", "cafe")
_FOODS = ("Thai", "Italian", "French", "Indian", "English")
_AREAS = ("riverside", "centre")
_TEMPLATES = (
    "{name} is a {type} serving {food} food in the {area} .",
    "In the {area} , {name} is a {type} that serves {food} food .",
    "{name} serves {food} food . It is a {type} in the {area} .",
)


def _e2e_lines(slots: Sequence[tuple[str, str, str, str]], rng: random.Random, refs_per_mr: int) -> list[str]:
    """``MR||text`` lines in the LoRA authors' format; the text follows from the MR by template."""
    lines = []
    for name, kind, food, area in slots:
        mr = f"name : {name} | Type : {kind} | food : {food} | area : {area}"
        for template in rng.sample(_TEMPLATES, refs_per_mr):
            lines.append(f"{mr}||{template.format(name=name, type=kind, food=food, area=area)} ")
    return lines


def write_e2e_folder(root: str | Path, n_train: int = 60, n_valid: int = 10, n_test: int = 12, seed: int = 0) -> Path:
    """``train.txt``, ``valid.txt``, ``test.txt`` in the authors' ``MR||text`` format (test: 2 refs per MR)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    combinations = list(itertools.product(_NAMES, _TYPES, _FOODS, _AREAS))
    rng.shuffle(combinations)  # distinct MRs, and no test MR seen in training
    if n_train + n_valid + n_test > len(combinations):
        raise ValueError(f"at most {len(combinations)} distinct synthetic MRs")
    splits = (
        ("train", combinations[:n_train], 1),
        ("valid", combinations[n_train : n_train + n_valid], 1),
        ("test", combinations[n_train + n_valid : n_train + n_valid + n_test], 2),
    )
    for name, slots, refs in splits:
        (root / f"{name}.txt").write_text("\n".join(_e2e_lines(slots, rng, refs)) + "\n", encoding="utf-8")
    return root


def e2e_vocabulary(folder: str | Path) -> list[str]:
    """Every whitespace-separated token of an E2E folder, plus the prompt separator."""
    words: dict[str, None] = {"||": None}
    for name in ("train.txt", "valid.txt", "test.txt"):
        for line in (Path(folder) / name).read_text(encoding="utf-8").splitlines():
            words.update(dict.fromkeys(line.replace("||", " ").split()))
    return list(words)


def write_word_tokenizer(directory: str | Path, words: Sequence[str], style: str) -> object:
    """A word-level fast tokenizer saved with ``save_pretrained``; ``style`` is ``roberta`` or ``gpt2``.

    RoBERTa style wraps sequences as ``<s> A </s></s> B </s>`` with pad id 1; GPT-2 style has one
    ``<|endoftext|>`` token (id 0) serving as bos, eos and pad.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = SPECIAL_TOKENS if style == "roberta" else ("<|endoftext|>", "<unk>")
    vocab = {token: i for i, token in enumerate([*specials, *dict.fromkeys(words)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if style == "roberta":
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", 0), ("</s>", 2)],
        )
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=core,
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            unk_token="<unk>",
            mask_token="<mask>",
            cls_token="<s>",
            sep_token="</s>",
            model_input_names=["input_ids", "attention_mask"],
        )
    else:
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=core,
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            pad_token="<|endoftext|>",
            unk_token="<unk>",
            model_input_names=["input_ids", "attention_mask"],
        )
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def _write_tiny_encoder(directory: str | Path, words: Sequence[str], seed: int, dropout: float, bert: bool) -> Path:
    """An encoder of hidden 32 and 2 layers with random weights and a word-level tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

    directory = Path(directory)
    tokenizer = write_word_tokenizer(directory, words, "roberta")
    shape = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 66,
        "pad_token_id": 1,
        "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout,
    }
    torch.manual_seed(seed)
    if bert:
        model = BertModel(BertConfig(**shape, type_vocab_size=2), add_pooling_layer=True)
    else:
        config = RobertaConfig(**shape, type_vocab_size=1, bos_token_id=0, eos_token_id=2)
        model = RobertaModel(config, add_pooling_layer=False)
    model.save_pretrained(str(directory))
    return directory


def write_tiny_roberta(
    directory: str | Path, words: Sequence[str] = VOCABULARY, seed: int = 0, dropout: float = 0.1
) -> Path:
    """A RoBERTa of hidden 32 and 2 layers with random weights and a word-level tokenizer."""
    return _write_tiny_encoder(directory, words, seed, dropout, bert=False)


def write_tiny_bert(
    directory: str | Path, words: Sequence[str] = VOCABULARY, seed: int = 0, dropout: float = 0.1
) -> Path:
    """A BERT of hidden 32 and 2 layers with a pretrained-style pooler (as MiniLM has), random weights."""
    return _write_tiny_encoder(directory, words, seed, dropout, bert=True)


def write_tiny_gpt2(directory: str | Path, words: Sequence[str], seed: int = 0) -> Path:
    """A GPT-2 of hidden 32 and 2 layers with random weights and a word-level tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    directory = Path(directory)
    tokenizer = write_word_tokenizer(directory, words, "gpt2")
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(str(directory))
    return directory
