# %% [markdown]
# # alreid from a notebook: compare samplers, plot the curves, drive one cycle by hand
#
# A walk-through of the Python API on the synthetic dataset (no downloads, CPU only, about a minute
# on two cores). Each `# %%` block is a notebook cell: open the file in Jupyter/VS Code as a
# notebook (jupytext "percent" format), or run it whole:
#
#     python examples/notebook_walkthrough.py --out walkthrough      # writes walkthrough/curves.png
#
# On real data, replace the dataset spec, e.g. `embeddings:../shared/data/nyala`.

# %%
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; in Jupyter drop this line to see the figure inline
import matplotlib.pyplot as plt
import pandas as pd

import alreid

parser = argparse.ArgumentParser(description="alreid notebook walk-through")
parser.add_argument("--dataset", default="synthetic:n_images=600", help="dataset spec (default: a small synthetic set)")
parser.add_argument("--cycles", type=int, default=3, help="active-learning cycles per trial")
parser.add_argument("--seeds", type=int, default=2, help="seeds per sampler")
parser.add_argument("--out", type=Path, default=Path("walkthrough"), help="folder for the figure and the records")
args = parser.parse_args(sys.argv[1:] if "ipykernel" not in sys.modules else [])
args.out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Load a dataset
# Every adapter returns a `ReidDataset`: a metadata table (wildlife-datasets columns) and, for
# embedding datasets, a feature matrix in the same row order.

# %%
data = alreid.load_dataset(args.dataset)
print(f"{data.name}: {data.n} images of {data.metadata['identity'].nunique()} individuals, "
      f"features {data.features.shape}")

# %% [markdown]
# ## 2. Compare samplers
# `run_trial` returns one row per cycle (cycle 0 = the starting model). A sampler is a name with
# `params`, or an object from `get_sampler` (a sampler of your own works the same way).

# %%
samplers = {"none": "none", "random": "random", "aas (epsilon 0.4)": alreid.get_sampler("aas", epsilon=0.4)}
runs = []
for label, sampler in samplers.items():
    for seed in range(args.seeds):
        records = alreid.run_trial(data, method=sampler, seed=seed, cycles=args.cycles, progress=False)
        runs.append(records.assign(label=label))
records = pd.concat(runs, ignore_index=True)
records.to_csv(args.out / "records.csv", index=False)
print(records.groupby(["label", "cycle"])["mAP"].mean().unstack("cycle").mul(100).round(2))

# %% [markdown]
# ## 3. Plot mAP per cycle (mean and spread over seeds)

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
for label, group in records.groupby("label", sort=False):
    curve = group.groupby("cycle")["mAP"].agg(["mean", "min", "max"]) * 100
    ax.plot(curve.index, curve["mean"], marker="o", label=label)
    ax.fill_between(curve.index, curve["min"], curve["max"], alpha=0.2)
ax.set_xticks(range(args.cycles + 1))
ax.set_xlabel("active-learning cycle")
ax.set_ylabel("mAP (%)")
ax.set_title(f"{data.name}, {args.seeds} seeds")
ax.legend()
fig.tight_layout()
figure = args.out / "curves.png"
fig.savefig(figure, dpi=120)
print(f"figure: {figure}")

# %% [markdown]
# ## 4. One cycle by hand: ask, answer, train, evaluate
# `next_pairs` returns the pairs the sampler wants answered, with the dataset's image ids (and
# paths, for image datasets) next to the pool indices `u`, `v`. The answers can come from anyone:
# here the simulated annotator, with one answer flipped, as a tired person might.

# %%
loop = alreid.ActiveLearningLoop(data, sampler=alreid.get_sampler("aas", epsilon=0.4), trainer="head", seed=0,
                                 cycles=args.cycles)
pairs = loop.next_pairs()
print(loop)
print(pairs.head())
answers = loop.oracle_answers(pairs)
answers[0] = not answers[0]
loop.answer(pairs, answers)
metrics = loop.train_and_evaluate()
print(f"cycle {metrics['cycle']}: {metrics['pairs_asked']} answers, mAP {100 * metrics['mAP']:.2f} % "
      f"(cycle 0: {100 * loop.records['mAP'].iloc[0]:.2f} %)")
print(loop.answers.head())

# %% [markdown]
# The remaining cycles with the simulated annotator:

# %%
finished = loop.run(progress=False)
print(finished[["cycle", "pairs_asked", "pairs_cum", "mAP"]])
