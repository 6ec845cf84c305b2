"""E2E NLG on GPT-2 (the paper's Table 3): LoRA vs full fine-tuning vs BitFit, beam search, five metrics.

    python -m experiments.e2e model=gpt2-medium method=lora
    python -m experiments.e2e model=smollm2-135m data.dir=../shared/data/e2e method=full_ft

:func:`run_e2e` is the plain function behind the Hydra command. It shares the training loop, methods,
run directories and result files with the GLUE runner.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import hydra
import torch
import torch.nn as nn
from omegaconf import DictConfig

from experiments.distributed import setup_distributed
from experiments.e2e_data import E2EPair, load_e2e
from experiments.e2e_metrics.formats import group_references_by_mr, write_hypotheses, write_references
from experiments.glue import train_settings
from experiments.lm import encode_prompt_target, generate, lm_collate, lm_loss_sum, target_tokens
from experiments.methods import apply_method
from experiments.models import load_causal_lm, load_tokenizer
from experiments.recipes import e2e_recipe, register_resolvers
from experiments.results import config_hash, write_result
from experiments.runner import (
    hydra_output_dir,
    plain_config,
    prepare_run_dir,
    remove_checkpoint,
    run_hydra_job,
    run_record,
    save_trained,
)
from experiments.training import fit

__all__ = ["main", "run_e2e"]

register_resolvers()


def _encode(pairs: Sequence[E2EPair], tokenizer: Any, separator: str, max_length: int) -> list[dict]:
    return [encode_prompt_target(tokenizer, f"{p.mr}{separator}", f" {p.text}", max_length) for p in pairs]


def _valid_loss(items: list[dict], collate, batch_size: int, device: torch.device):
    """Per-epoch validation: mean next-token loss on the validation texts (no smoothing) and perplexity."""
    loss_sum = lm_loss_sum(0.0)
    tokens = sum(target_tokens(item) for item in items)

    def evaluate(model: nn.Module, epoch: int) -> dict[str, Any]:
        total = 0.0
        for start in range(0, len(items), batch_size):
            batch = {k: v.to(device) for k, v in collate(items[start : start + batch_size]).items()}
            total += float(loss_sum(model, batch))
        mean = total / max(tokens, 1)
        return {"valid_loss": mean, "valid_perplexity": float(torch.exp(torch.tensor(mean)))}

    return evaluate


def run_e2e(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Fine-tune one (model, method, seed) on E2E, decode the test MRs, score them; write ``result.json``."""
    from experiments.e2e_metrics import JavaNotFoundError, JavaToolNotFoundError, score_e2e

    if cfg["task"].get("family") != "e2e":  # before resolving: GLUE tasks have no E2E recipe
        raise ValueError(f"task={cfg['task']['name']} is not E2E; run GLUE tasks with python -m experiments.glue")
    plain = plain_config(cfg)
    task, method, model_cfg, train = plain["task"], plain["method"], plain["model"], plain["train"]
    settings = train_settings(train, plain["seed"], eval_every_epoch=True)
    ctx = setup_distributed(plain["device"])
    run_dir, finished = prepare_run_dir(plain, "e2e")
    if finished is not None:
        if ctx.is_main:
            print(f"already complete: {run_dir / 'result.json'} (overwrite=true to rerun)", flush=True)
        return finished

    started = time.perf_counter()
    tokenizer = load_tokenizer(model_cfg["name_or_path"], model_cfg.get("gguf_file"))
    data = load_e2e(task, plain["data"])
    torch.manual_seed(plain["seed"])
    model = load_causal_lm(
        model_cfg["name_or_path"], model_cfg["dtype"], model_cfg.get("attn_implementation"), model_cfg.get("gguf_file")
    )
    applied = apply_method(model, method, model_cfg["head_modules"])
    model.to(ctx.device)

    separator, max_len = task["prompt_separator"], train["max_seq_length"]
    train_items = _encode(data.train, tokenizer, separator, max_len)
    valid_items = _encode(data.valid, tokenizer, separator, max_len)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collate = lm_collate(pad_id)
    counts = applied.counts
    if ctx.is_main:
        detail = f" r={method['r']} alpha={method['lora_alpha']:g}" if method["name"] == "lora" else ""
        print(
            f"== E2E | {model_cfg['name']} | {method['name']}{detail} | seed {plain['seed']}\n"
            f"   trainable {counts.trainable:,} of {counts.total:,} ({100 * counts.trainable_fraction:.3f}%); "
            f"{len(train_items):,} train pairs; global batch {settings.batch_size}; {settings.epochs} epochs\n"
            f"   run dir {run_dir}",
            flush=True,
        )
    outcome = fit(
        model,
        train_items,
        collate,
        lm_loss_sum(train["label_smoothing"]),
        _valid_loss(valid_items, collate, train["eval_batch_size"], ctx.device),
        settings,
        run_dir,
        ctx,
        fingerprint=f"{config_hash(plain)}-seed{plain['seed']}",
        item_count=target_tokens,
    )
    if not ctx.is_main:
        return {}

    mrs, references = group_references_by_mr([(p.mr, p.text) for p in data.test])
    if plain["data"].get("max_eval_mrs"):
        mrs, references = mrs[: plain["data"]["max_eval_mrs"]], references[: plain["data"]["max_eval_mrs"]]
    decode = plain["decode"]
    decode_started = time.perf_counter()
    model.eval()
    amp = torch.autocast(ctx.device.type, dtype=torch.bfloat16) if outcome.precision == "bf16" else nullcontext()
    with torch.no_grad(), amp:
        hypotheses = generate(
            model,
            tokenizer,
            [f"{mr}{separator}" for mr in mrs],
            ctx.device,
            num_beams=decode["num_beams"],
            length_penalty=decode["length_penalty"],
            no_repeat_ngram_size=decode["no_repeat_ngram_size"],
            max_new_tokens=decode["max_new_tokens"],
            batch_size=decode["batch_size"],
        )
    decode_time = time.perf_counter() - decode_started
    hyp_path, ref_path = run_dir / "predictions.txt", run_dir / "references.txt"
    write_hypotheses(hyp_path, hypotheses)
    write_references(ref_path, references)
    try:
        scores: dict[str, float] | None = score_e2e(hypotheses, references)
    except (JavaNotFoundError, JavaToolNotFoundError) as error:  # e.g. a GPU machine without a JRE
        scores = None
        print(f"scoring pending ({error}); score later with python -m experiments.e2e_eval --run {run_dir}")
    recipe = e2e_recipe(model_cfg["recipe"], method["name"], plain["preset"]["name"])
    result = run_record(plain, "e2e", "e2e", settings, applied, outcome, ctx, run_dir, started)
    result["hyperparameters"].update(label_smoothing=train["label_smoothing"], **decode)
    result.update(
        recipe=recipe.as_dict(),
        main_metric=task["main_metric"],
        main_metric_value=scores.get(task["main_metric"]) if scores else None,
        metrics={
            "per_epoch": outcome.history,
            "test": scores,
            "best": scores,
            "last": scores,
            "best_epoch": outcome.history[-1]["epoch"] if outcome.history else None,
        },
        scoring_pending=scores is None,
        data={
            "source": data.source,
            "train_pairs": len(train_items),
            "valid_pairs": len(valid_items),
            "test_mrs": len(mrs),
            "test_references": sum(len(r) for r in references),
        },
        outputs={"predictions": str(hyp_path), "references": str(ref_path)},
        decode_time_s=round(decode_time, 2),
    )
    result["saved"] = save_trained(
        model, method, run_dir, [], {"task": "e2e", "model": model_cfg["name"], "seed": plain["seed"]}
    )
    hydra_dir = hydra_output_dir()
    write_result(run_dir, result, (hydra_dir,) if hydra_dir else ())
    remove_checkpoint(run_dir)
    line = " ".join(f"{k} {v:.4f}" for k, v in (scores or {}).items())
    print(
        f"e2e {method['name']} seed {plain['seed']}: {line}; trainable {counts.trainable:,}; "
        f"{result['wall_time_s']:.0f}s; {run_dir / 'result.json'}",
        flush=True,
    )
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="e2e")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: one job, or each job of a ``--multirun`` sweep."""
    return run_hydra_job(run_e2e, cfg, "e2e")


if __name__ == "__main__":
    main()
