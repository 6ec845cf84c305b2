# Every target that runs Python depends on the virtual environment it needs, so each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Overrides for the paper-scale targets, e.g.  make glue ARGS="data.dir=../shared/data/glue model=minilm-l6-h384"
# Runs land in runs/ (git-ignored): runs/<family>/<model>/<task>/<method tag>/seed<k>/, which is also Hydra's
# job folder (.hydra/, <family>.log); a sweep's own record goes to runs/sweeps/<time>/. The committed reference
# runs in results/ are regenerated only on purpose: ARGS="results_dir=results", then make reference-report.
ARGS ?=
# Which runner the sweep targets drive: glue or e2e, e.g.  make sweep-rank FAMILY=e2e ARGS="model=smollm2-135m"
FAMILY ?= glue
GLUE_TASKS ?= mnli,sst2,mrpc,cola,qnli,qqp,rte,stsb
# Jobs of one multirun that share the machine (the joblib launcher), e.g. JOBS=10 for small models on one GPU.
JOBS ?= 1
PARALLEL := $(if $(filter 1,$(JOBS)),,launcher=joblib hydra.launcher.n_jobs=$(JOBS))

.PHONY: install test lint format clean glue glue-quick glue-minilm glue-minilm-long e2e e2e-quick e2e-smollm2 report reference-report analysis bench bench-quick \
	sweep-rank sweep-alpha sweep-targets sweep-seeds sweep-methods sweep-variants

install: $(STAMP)

# The CPU build of torch is installed first and pinned: an unpinned resolve would fetch a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[hf,experiments,test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check lora experiments tests benchmarks
	$(PY) -m ruff format --check lora experiments tests benchmarks

format: $(STAMP)
	$(PY) -m ruff format lora experiments tests benchmarks
	$(PY) -m ruff check --fix lora experiments tests benchmarks

# The paper's RoBERTa-base GLUE comparison (Table 2): every task x LoRA / full FT / BitFit, paper defaults.
glue: $(STAMP)
	$(PY) -m experiments.glue --multirun model=roberta-base task=$(GLUE_TASKS) method=lora,full_ft,bitfit $(ARGS)

# The same pipeline offline on CPU in a few minutes: tiny RoBERTa, synthetic SST-2/STS-B, all three methods.
glue-quick: $(STAMP)
	$(PY) -m experiments.quick glue

# Table 2 on the real stand-in here (MiniLM): the five tasks with training data x LoRA / full FT / BitFit, 5 seeds
# (3 for SST-2), the budgets of conf/experiment/minilm_*.yaml, e.g.
#   make glue-minilm JOBS=10 ARGS="data.dir=../shared/data/glue model.name_or_path=DIR"
# LoRA's successors at the same budgets: make glue-minilm METHODS=rslora,dora,pissa,loraplus ARGS=...
METHODS ?= lora,full_ft,bitfit
glue-minilm: $(STAMP)
	$(PY) -m experiments.glue --multirun experiment=minilm_rte,minilm_stsb,minilm_mrpc,minilm_cola \
		method=$(METHODS) seed=0,1,2,3,4 $(PARALLEL) $(ARGS)
	$(PY) -m experiments.glue --multirun experiment=minilm_sst2 method=$(METHODS) seed=0,1,2 $(PARALLEL) $(ARGS)

# Longer budgets where a Table 2 budget left a method short of its plateau (the dev curves in results/report.md):
# STS-B at 20 epochs for LoRA and its successors (5 seeds), SST-2 at 5 epochs for BitFit (3 seeds) and, to show
# the others' plateau, LoRA and full FT (seed 0). The report gives each budget its own row. Same ARGS as above.
glue-minilm-long: $(STAMP)
	$(PY) -m experiments.glue --multirun experiment=minilm_stsb method=lora,rslora,dora,pissa,loraplus \
		seed=0,1,2,3,4 train.epochs=20 $(PARALLEL) $(ARGS)
	$(PY) -m experiments.glue --multirun experiment=minilm_sst2 method=bitfit seed=0,1,2 train.epochs=5 $(PARALLEL) $(ARGS)
	$(PY) -m experiments.glue --multirun experiment=minilm_sst2 method=lora,full_ft seed=0 train.epochs=5 \
		$(PARALLEL) $(ARGS)

# The paper's GPT-2 medium E2E comparison (Table 3): LoRA and full fine-tuning, paper defaults.
e2e: $(STAMP)
	$(PY) -m experiments.e2e --multirun model=gpt2-medium method=lora,full_ft $(ARGS)

# Table 3 on the stand-in here (SmolLM2-135M): LoRA and full FT, 2 seeds, one epoch (conf/experiment/smollm2_e2e.yaml;
# BitFit has nothing to train in a Llama model: no biases), e.g.
#   make e2e-smollm2 ARGS="data.dir=../shared/data/e2e model.name_or_path=DIR"
e2e-smollm2: $(STAMP)
	$(PY) -m experiments.e2e --multirun experiment=smollm2_e2e method=lora,full_ft seed=0,1 $(PARALLEL) $(ARGS)

# The E2E pipeline offline on CPU: tiny GPT-2, synthetic MR||text data, beam search, the five metrics.
e2e-quick: $(STAMP)
	$(PY) -m experiments.quick e2e

# Named sweeps (conf/sweep): each runs as a Hydra multirun of $(FAMILY); ARGS adds overrides, and a comma list
# in ARGS sweeps too (ARGS="task=sst2,rte seed=0,1,2,3,4"). Failed jobs leave failure.json; the others go on.
sweep-rank: $(STAMP)
	$(PY) -m experiments.$(FAMILY) sweep=rank $(ARGS)

sweep-alpha: $(STAMP)
	$(PY) -m experiments.$(FAMILY) sweep=alpha $(ARGS)

sweep-targets: $(STAMP)
	$(PY) -m experiments.$(FAMILY) sweep=targets $(ARGS)

sweep-seeds: $(STAMP)
	$(PY) -m experiments.$(FAMILY) sweep=seeds $(ARGS)

sweep-methods: $(STAMP)
	$(PY) -m experiments.$(FAMILY) sweep=methods $(ARGS)

sweep-variants: $(STAMP)
	$(PY) -m experiments.$(FAMILY) sweep=variants $(ARGS)

# runs/report.md (+ report/: CSV, LaTeX, PNG) from every run under runs/ (runs/quick skipped);
# ARGS="runs/quick" or ARGS="--include-quick" to read the offline checks' runs.
report: $(STAMP)
	$(PY) -m experiments.report $(ARGS)

# The committed results/report.md from the committed (or staged) reference runs only: the same runs give the
# same bytes, so it changes only when they do.
reference-report: $(STAMP)
	$(PY) -m experiments.report --tracked-only results --out results

# The paper's Section 7 analyses of a pair of LoRA runs: subspace similarity of the two (7.2) and the
# amplification of each (7.3), into runs/analysis/<name>/. ARGS: the two runs (run directories, adapter
# directories, or tag folders holding one run, so shell globs work), then options: --seed K (pick seed<K>),
# --base MODEL (default: the model the run recorded), --matrices Wq Wv, --basis A|dW_left|dW_right, --top 8,
# --draws 10, --name NAME or --out DIR. For example r=8 vs r=64 on MNLI, seed 0 of each:
#   make analysis ARGS="runs/glue/roberta-base/mnli/lora_r8_* runs/glue/roberta-base/mnli/lora_r64_* --seed 0"
analysis: $(STAMP)
	$(PY) -m experiments.analysis pair $(ARGS)

# Layer and training-step benchmarks against PEFT and loralib (GPU: bf16; tables in results/bench/).
bench: $(STAMP)
	$(PY) -m benchmarks.layers $(ARGS)
	$(PY) -m benchmarks.training $(ARGS)

# The same on CPU with small shapes, for a local check; tables in runs/bench/ (git-ignored), not results/bench/.
bench-quick: $(STAMP)
	$(PY) -m benchmarks.layers --quick --out runs/bench $(ARGS)
	$(PY) -m benchmarks.training --quick --variants eager --out runs/bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
