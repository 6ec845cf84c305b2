"""Parity with an independent reference on real GLUE data: our runner vs a plain PEFT loop, same settings.

    python -m benchmarks.parity --model-dir DIR --data-dir ../shared/data/glue [--tasks rte,mrpc,cola,stsb]
        [--seeds 0,1,2] [--epochs 10] [--jobs 8] [--out results/parity]

Each (system, task, seed) is one process (several share the GPU). "ours" is ``experiments.glue.run_glue``
with the MiniLM model config; "peft" is ``benchmarks.reference``: PEFT's LoRA (``task_type=SEQ_CLS``) and a
plain AdamW loop under the same resolved settings (lr, batch, epochs, warmup, weight decay, clipping, r,
alpha, targets, sequence length, bf16 autocast on GPU), the same tokenised data and batch order, scored per
epoch with scikit-learn/SciPy, best epoch kept as the paper does. A finished job is not repeated, so a
killed benchmark resumes. Writes ``parity.jsonl`` (one line per job) and ``parity.md`` (medians, ranges,
deltas, and the acceptance check: our median >= the reference's - 0.5 points).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

__all__ = ["main"]

TOLERANCE_POINTS = 0.5


def _overrides(args: argparse.Namespace, task: str, seed: int, results_dir: Path) -> list[str]:
    return [
        "model=minilm-l6-h384",
        f"model.name_or_path={args.model_dir}",
        f"data.dir={args.data_dir}",
        f"task={task}",
        f"seed={seed}",
        f"train.epochs={args.epochs}",
        f"results_dir={results_dir}",
        *args.override,
    ]


def _score(task: Any, predictions: list[float], labels: list[float]) -> float:
    """The task's main metric from scikit-learn / SciPy (independent of experiments.metrics)."""
    from scipy.stats import pearsonr
    from sklearn.metrics import accuracy_score, matthews_corrcoef

    metric = task.main_metric
    if metric == "pearson":
        return float(pearsonr(predictions, labels).statistic)
    if metric == "matthews_correlation":
        return float(matthews_corrcoef(labels, predictions))
    if metric == "accuracy":
        return float(accuracy_score(labels, predictions))
    raise ValueError(f"no reference scorer for {metric}")


def _reference_job(args: argparse.Namespace, task_name: str, seed: int) -> dict[str, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from benchmarks.reference import ReferenceSettings, peft_lora_model, train_reference
    from experiments.config import compose_config
    from experiments.glue_data import load_glue
    from experiments.glue_tasks import task_from_config
    from experiments.runner import plain_config
    from experiments.tasks.glue import make_collate, tokenize
    from experiments.training import epoch_batches

    plain = plain_config(compose_config("glue", _overrides(args, task_name, seed, args.out / "runs")))
    task, train, method = task_from_config(plain["task"]), plain["train"], plain["method"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    data = load_glue(task, args.data_dir, None)
    items = tokenize(data.train, tokenizer, train["max_seq_length"], task.is_regression)
    dev = tokenize(data.evals[task.main_split], tokenizer, train["max_seq_length"], task.is_regression)
    collate = make_collate(tokenizer, task.is_regression)
    batch = train["batch_size"]
    epochs = [
        [collate([items[i] for i in idx]) for idx in epoch_batches(len(items), batch, seed, e)]
        for e in range(train["epochs"])
    ]
    torch.manual_seed(seed)
    base = AutoModelForSequenceClassification.from_pretrained(
        args.model_dir, num_labels=task.num_labels, dtype=torch.float32
    )
    model = peft_lora_model(base, method["r"], method["lora_alpha"], ["query", "value"])
    scores: list[float] = []

    def evaluate(model: torch.nn.Module) -> None:
        model.eval()
        predictions, labels = [], []
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            for start in range(0, len(dev), 128):
                inputs = {k: v.to(device) for k, v in collate(dev[start : start + 128]).items()}
                labels += inputs.pop("labels").tolist()
                logits = model(**inputs).logits.float()
                predictions += (logits.squeeze(-1) if task.is_regression else logits.argmax(-1)).tolist()
        scores.append(_score(task, predictions, labels))

    settings = ReferenceSettings(
        lr=train["lr"],
        total_steps=sum(len(e) for e in epochs),
        weight_decay=train["weight_decay"],
        warmup_ratio=train["warmup_ratio"],
        max_grad_norm=train["max_grad_norm"],
        betas=(train["adam_beta1"], train["adam_beta2"]),
        eps=train["adam_eps"],
    )
    autocast = torch.bfloat16 if device.type == "cuda" else None
    train_reference(model, epochs, settings, device, autocast, after_epoch=evaluate)
    return {"best": max(scores), "per_epoch": scores, "settings": {**train, **method}}


def _ours_job(args: argparse.Namespace, task_name: str, seed: int) -> dict[str, Any]:
    from experiments.config import compose_config
    from experiments.glue import run_glue

    result = run_glue(compose_config("glue", _overrides(args, task_name, seed, args.out / "runs")))
    per_epoch = [entry[result["main_metric"]] for entry in result["metrics"]["per_epoch"]]
    return {"best": result["main_metric_value"], "per_epoch": per_epoch, "settings": result["hyperparameters"]}


def _job_path(out: Path, system: str, task: str, seed: int) -> Path:
    return out / "jobs" / f"{system}_{task}_seed{seed}.json"


def _run_one(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    job = _ours_job if args.system == "ours" else _reference_job
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    record = {"system": args.system, "task": args.task, "seed": args.seed, "epochs": args.epochs, "device": device}
    record |= job(args, args.task, args.seed)
    record["wall_time_s"] = round(time.perf_counter() - started, 1)
    path = _job_path(args.out, args.system, args.task, args.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def _summary(records: list[dict[str, Any]], tasks: list[str]) -> str:
    def cell(values: list[float]) -> str:
        return f"{100 * statistics.median(values):.1f} ({100 * min(values):.1f}–{100 * max(values):.1f})"

    lines = [
        "| task | seeds | ours: median (range) | PEFT loop: median (range) | ours − PEFT | within 0.5 |",
        "|---|---|---|---|---|---|",
    ]
    for task in tasks:
        ours = [r["best"] for r in records if r["task"] == task and r["system"] == "ours"]
        peft = [r["best"] for r in records if r["task"] == task and r["system"] == "peft"]
        if not ours or not peft:
            lines.append(f"| {task} | — | {len(ours)} runs | {len(peft)} runs | — | — |")
            continue
        delta = 100 * (statistics.median(ours) - statistics.median(peft))
        ok = "yes" if delta >= -TOLERANCE_POINTS else "**no**"
        lines.append(f"| {task} | {len(ours)}/{len(peft)} | {cell(ours)} | {cell(peft)} | {delta:+.1f} | {ok} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the missing jobs (``--jobs`` at a time), then write ``parity.jsonl`` and ``parity.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="a MiniLM (BERT) folder, e.g. minilm-l6-h384-fp16")
    parser.add_argument("--data-dir", required=True, help="GLUE TSV folder, e.g. ../shared/data/glue")
    parser.add_argument("--tasks", default="rte,mrpc,cola,stsb")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=8, help="processes at a time (they share one GPU)")
    parser.add_argument("--out", type=Path, default=Path("results/parity"))
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for both systems")
    parser.add_argument("--system", choices=["ours", "peft"], help=argparse.SUPPRESS)  # one job (internal)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.system:
        _run_one(args)
        return
    tasks, seeds = args.tasks.split(","), [int(s) for s in args.seeds.split(",")]
    todo = [
        (system, task, seed)
        for task in tasks
        for seed in seeds
        for system in ("ours", "peft")
        if not _job_path(args.out, system, task, seed).is_file()
    ]

    def launch(job: tuple[str, str, int]) -> tuple[tuple[str, str, int], int]:
        system, task, seed = job
        command = [sys.executable, "-m", "benchmarks.parity", "--model-dir", args.model_dir]
        command += ["--data-dir", args.data_dir, "--epochs", str(args.epochs), "--out", str(args.out)]
        command += ["--system", system, "--task", task, "--seed", str(seed), "--override", *args.override]
        log = args.out / "logs" / f"{system}_{task}_seed{seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as handle:
            return job, subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for job, code in pool.map(launch, todo):
            print(f"{'done' if code == 0 else f'FAILED ({code})'}: {job}", flush=True)
    records = [json.loads(path.read_text(encoding="utf-8")) for path in sorted((args.out / "jobs").glob("*.json"))]
    (args.out / "parity.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    devices = ", ".join(sorted({str(r.get("device")) for r in records}))
    epochs = ", ".join(str(e) for e in sorted({r["epochs"] for r in records}))
    table = _summary(records, tasks)
    header = (
        f"# Parity: our GLUE runner vs a plain PEFT loop\n\nMiniLM-L6-H384, real GLUE dev sets, {epochs} "
        f"epochs, best epoch per run, on {devices}; the recipe's settings for both systems (extra overrides: "
        f"{' '.join(args.override) or 'none'}). Seeds per task and system in the table; every job in "
        "`parity.jsonl`. Each system draws its own LoRA initialisation and dropout, so seeds are not paired.\n\n"
        f"Command: `python -m benchmarks.parity --model-dir DIR --data-dir DIR --tasks {args.tasks} "
        f"--seeds {args.seeds} --epochs {args.epochs}`\n\n"
    )
    (args.out / "parity.md").write_text(header + table + "\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
