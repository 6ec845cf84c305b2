"""Conditional LM pieces on a tiny GPT-2: loss only on the text, q/v-slice LoRA, beam search settings."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch
from transformers import AutoTokenizer, GPT2LMHeadModel

import lora
from experiments.lm import (
    IGNORE_INDEX,
    GeneratedNoRepeatNGram,
    encode_prompt_target,
    generate,
    lm_collate,
    lm_loss_sum,
    target_tokens,
)
from experiments.synthetic import e2e_vocabulary, write_e2e_folder, write_tiny_gpt2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("lm")
    data = write_e2e_folder(root / "data")
    model_dir = write_tiny_gpt2(root / "model", e2e_vocabulary(data))
    return AutoTokenizer.from_pretrained(str(model_dir)), model_dir


def test_labels_cover_only_the_target(tiny) -> None:
    tokenizer, _ = tiny
    item = encode_prompt_target(tokenizer, "name : Alpha | Type : pub ||", " Alpha is a pub .", 64)
    prompt_len = 1 + 8  # bos + 8 words
    assert item["labels"][:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert item["labels"][prompt_len:] == item["input_ids"][prompt_len:]
    assert item["input_ids"][-1] == tokenizer.eos_token_id and target_tokens(item) == 5 + 1


def test_truncation_keeps_the_prompt(tiny) -> None:
    tokenizer, _ = tiny
    item = encode_prompt_target(tokenizer, "name : Alpha ||", " Alpha is a pub in the centre .", 8)
    assert len(item["input_ids"]) == 8 and target_tokens(item) == 8 - 5
    with pytest.raises(ValueError, match="no room in max_seq_length=3"):
        encode_prompt_target(tokenizer, "name : Alpha ||", " x", 3)


def test_loss_sum_equals_cross_entropy_over_target_tokens_only(tiny) -> None:
    tokenizer, model_dir = tiny
    model = GPT2LMHeadModel.from_pretrained(str(model_dir)).eval()
    items = [
        encode_prompt_target(tokenizer, "name : Alpha ||", " Alpha is a pub .", 64),
        encode_prompt_target(tokenizer, "name : Bravo | food : Thai ||", " Bravo serves Thai food .", 64),
    ]
    batch = lm_collate(tokenizer.eos_token_id)(items)
    for smoothing in (0.0, 0.1):
        with torch.no_grad():
            ours = lm_loss_sum(smoothing)(model, batch)
            expected = torch.zeros(())
            for item in items:  # unpadded, one position at a time: the prompt never contributes
                ids = torch.tensor([item["input_ids"]])
                log_probs = model(input_ids=ids).logits[0].log_softmax(-1)
                for pos, label in enumerate(item["labels"]):
                    if pos > 0 and label != IGNORE_INDEX:
                        nll, uniform = -log_probs[pos - 1, label], -log_probs[pos - 1].mean()
                        expected += (1 - smoothing) * nll + smoothing * uniform
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-4)


def test_qv_slice_lora_trains_only_the_q_and_v_slices(tiny) -> None:
    tokenizer, model_dir = tiny
    model = GPT2LMHeadModel.from_pretrained(str(model_dir))
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    lora.inject_lora(model, ["Wq", "Wv"], r=2, lora_alpha=4)
    lora.mark_only_lora_as_trainable(model)
    model.train()  # from_pretrained returns eval mode, in which LoRA layers are merged
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = lm_collate(tokenizer.eos_token_id)(
        [encode_prompt_target(tokenizer, "name : Alpha ||", " Alpha is a pub .", 64)]
    )
    for _ in range(3):
        lm_loss_sum(0.1)(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
    hidden = 32
    for block in model.transformer.h:
        delta = block.attn.c_attn.delta_weight()  # (in, out): columns are q | k | v
        assert delta[:, :hidden].abs().sum() > 0 and delta[:, 2 * hidden :].abs().sum() > 0
        assert torch.count_nonzero(delta[:, hidden : 2 * hidden]) == 0
    for name, param in model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, base[name]), f"{name} changed"


def test_batched_beam_search_equals_one_prompt_at_a_time(tiny) -> None:
    tokenizer, model_dir = tiny
    torch.manual_seed(0)
    model = GPT2LMHeadModel.from_pretrained(str(model_dir)).eval()
    prompts = [
        "name : Alpha | Type : pub ||",
        "name : Bravo | Type : cafe | food : Thai | area : centre ||",
        "name : Gusto ||",
    ]
    settings = {"num_beams": 4, "length_penalty": 0.9, "max_new_tokens": 12}
    with torch.no_grad():
        batched = generate(
            model, tokenizer, prompts, torch.device("cpu"), batch_size=3, no_repeat_ngram_size=4, **settings
        )
        for prompt, text in zip(prompts, batched, strict=True):
            ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]])
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                early_stopping=True,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.eos_token_id,
                logits_processor=[GeneratedNoRepeatNGram(4, ids.shape[1])],
                **settings,
            )
            assert text == tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def test_no_repeat_ngram_setting_is_applied(tiny) -> None:
    tokenizer, model_dir = tiny
    model = GPT2LMHeadModel.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        texts = generate(
            model,
            tokenizer,
            ["name : Alpha ||"],
            torch.device("cpu"),
            num_beams=2,
            length_penalty=1.0,
            no_repeat_ngram_size=2,
            max_new_tokens=30,
            batch_size=1,
        )
    words = texts[0].split()
    bigrams = list(itertools.pairwise(words))
    assert len(bigrams) == len(set(bigrams))


def _repeats_an_ngram(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_banned_tokens_are_exactly_those_that_would_repeat_an_ngram(n: int) -> None:
    rule = GeneratedNoRepeatNGram(n, prompt_length=0)
    generator = torch.Generator().manual_seed(n)
    for _ in range(200):
        length = int(torch.randint(0, 12, (), generator=generator))
        tokens = torch.randint(0, 4, (length,), generator=generator).tolist()
        if _repeats_an_ngram(tokens, n):
            continue  # a continuation the rule itself would never have produced
        brute_force = {t for t in range(4) if _repeats_an_ngram([*tokens, t], n)}
        assert rule.banned_tokens(tokens) == brute_force, tokens


def test_prompt_ngrams_are_not_banned_but_generated_ones_are() -> None:
    prompt = [5, 6, 7, 8]  # "5 out of 5" in the MR: the text must be able to copy it
    rule = GeneratedNoRepeatNGram(4, prompt_length=len(prompt))
    copying = rule(torch.tensor([[*prompt, 5, 6, 7]]), torch.zeros(1, 10))
    assert torch.isfinite(copying).all()
    repeating = rule(torch.tensor([[*prompt, 5, 6, 7, 8, 1, 5, 6, 7]]), torch.zeros(1, 10))
    assert repeating[0, 8] == -float("inf") and torch.isfinite(repeating[0, :8]).all()


def test_beam_search_can_copy_a_four_gram_of_the_prompt(tiny) -> None:
    """Hugging Face's no_repeat_ngram_size bans the copy; the continuation-only ban lets it through."""
    tokenizer, model_dir = tiny
    model = GPT2LMHeadModel.from_pretrained(str(model_dir)).eval()
    a, b, c, d = (tokenizer.convert_tokens_to_ids(w) for w in ("Alpha", "Bravo", "Cobalt", "riverside"))
    ids = torch.tensor([[tokenizer.bos_token_id, a, b, c, d, tokenizer.convert_tokens_to_ids("||")]])
    # Steer the model to write the prompt's 4-gram: a, then b after a, c after b, d after c.
    steer = {(a,): 50.0, (a, b): 100.0, (b, c): 100.0, (c, d): 100.0}
    common = {"num_beams": 2, "max_new_tokens": 4, "do_sample": False, "sequence_bias": steer}
    common |= {"attention_mask": torch.ones_like(ids), "pad_token_id": tokenizer.eos_token_id}
    with torch.no_grad():
        ours = model.generate(ids, logits_processor=[GeneratedNoRepeatNGram(4, ids.shape[1])], **common)
        theirs = model.generate(ids, no_repeat_ngram_size=4, **common)
    assert ours[0, ids.shape[1] :].tolist() == [a, b, c, d]
    assert theirs[0, ids.shape[1] :].tolist() != [a, b, c, d]  # the prompt's 4-gram cannot be written


def test_generate_hides_the_false_missing_mask_alarm_only_there(tiny, caplog, monkeypatch) -> None:
    from transformers.utils import logging as transformers_logging

    tokenizer, model_dir = tiny
    model = GPT2LMHeadModel.from_pretrained(str(model_dir)).eval()
    monkeypatch.setattr(transformers_logging.get_logger(), "propagate", True)  # so caplog sees transformers
    prompt = "name : Alpha ||"
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]])
    settings = {"num_beams": 2, "max_new_tokens": 3}
    filters = list(logging.getLogger("transformers.modeling_utils").filters)

    def alarms() -> list[str]:
        return [r.getMessage() for r in caplog.records if "`attention_mask`" in r.getMessage()]

    with caplog.at_level(logging.WARNING), torch.no_grad():
        logging.Logger.warning_once.cache_clear()  # transformers shows it once per process
        model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=tokenizer.eos_token_id, **settings
        )
        assert alarms(), "transformers no longer raises the false alarm: drop the filter in generate"
        caplog.clear()
        logging.Logger.warning_once.cache_clear()
        generate(
            model,
            tokenizer,
            [prompt],
            torch.device("cpu"),
            length_penalty=1.0,
            no_repeat_ngram_size=0,
            batch_size=1,
            **settings,
        )
        assert not alarms()
    assert logging.getLogger("transformers.modeling_utils").filters == filters
