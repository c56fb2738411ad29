#!/usr/bin/env bash
# Tables and report of the CIFAR-10 JPEG q75 ResNet-20 study from the committed cells
# (run from the repository root; reads only results/cifar10jpeg-resnet20/*/eval, */clean and,
# for study C's training table, */train/train_log.csv and manifest.json).
# A study whose cells are not all evaluated (not there yet, or diverged) is compared on the
# groups that are (at least two), and says so; one with fewer than two groups is skipped
# with a line on stderr.
set -euo pipefail
D=results/cifar10jpeg-resnet20
T=$D/tables
# the finished folders (<sub>: eval or clean) of the cells of the given activation-order stems
cells() { local sub=$1; shift; for a in "$@"; do ls -d $D/resnet20-$a-s*/$sub 2>/dev/null || true; done; }
# study OUT REF BY REF_STEM STEM...: compare the cells of the stems against REF (the group of
# REF_STEM), if REF_STEM and at least one other stem have cells
study() {
  local out=$1 ref=$2 by=$3 ref_stem=$4; shift 4
  if [ -z "$(cells eval "$ref_stem")" ]; then
    echo "skip $out: the reference cells ($ref_stem) are not there yet" >&2; return 0
  fi
  local have=() missing=()
  for a in "$@"; do
    if [ -n "$(cells eval "$a")" ]; then have+=("$a"); else missing+=("$a"); fi
  done
  if [ ${#have[@]} -lt 2 ]; then
    echo "skip $out: no evaluated cells of ${missing[*]} (not there yet, or diverged)" >&2; return 0
  fi
  [ ${#missing[@]} -eq 0 ] || echo "$out: without ${missing[*]} (no evaluated cells)" >&2
  actbench compare $(cells eval "${have[@]}") --by "$by" --reference "$ref" --out "$T/$out"
}
A=(relu-conventional silu-conventional la_silu-conventional la_hardsilu-conventional)
# A: LayerAct against ReLU and against SiLU (conventional order)
study A-vs-relu relu activation relu-conventional "${A[@]}"
study A-vs-silu silu activation silu-conventional "${A[@]}"
# B: tanh with BatchNorm before (conventional) and after (swapped) the activation
study B-tanh-order conventional order tanh-conventional tanh-conventional tanh-swapped
# C: ANAct-normalised SiLU against SiLU
study C-anact silu activation silu-conventional silu-conventional an_silu-conventional
# C's training, epoch by epoch, next to silu's (an_silu cells that diverged have no eval/):
# seed, epochs run, last finished epoch's loss and training accuracy, where it diverged
mkdir -p $T/C-anact-training
python - "$D" "$T/C-anact-training" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
root, out = Path(sys.argv[1]), Path(sys.argv[2])
rows, datasets = [], []
for act in ("silu", "an_silu"):
    for cell in sorted(root.glob(f"resnet20-{act}-conventional-s*")):
        log = pd.read_csv(cell / "train" / "train_log.csv")
        man = json.loads((cell / "train" / "manifest.json").read_text())
        first = log.iloc[0]
        datasets.append(man["dataset"])
        at = man.get("diverged_at")
        rows.append({"activation": act, "seed": man["seed"], "status": man.get("status", "done"),
                     "epochs finished": int(log["epoch"].max()),
                     "epoch 1 loss": round(float(first["loss"]), 3),
                     "epoch 1 train acc %": round(float(first["train_acc"]), 2),
                     "diverged at": f"epoch {at['epoch']} iteration {at['iteration']}" if at else "-"})
table = pd.DataFrame(rows)
table.to_csv(out / "training.csv", index=False)
data = {f"{m['name']} ({m['split']} split, {m['size']} images)" for m in datasets}
lines = [f"Training on {' / '.join(sorted(data))}; from each cell's train/train_log.csv and manifest.json.", ""]
lines += ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
(out / "training.md").write_text("\n".join(lines) + "\n")
print(f"wrote {out / 'training.md'}")
PY
# clean accuracy of every cell on the whole 10,000-image test set
actbench compare $(ls -d $D/resnet20-*-s*/clean) --by activation+order --reference relu/conventional \
  --out $T/clean-10k
# everything in one report (figures + tables + report.html)
actbench report $(ls -d $D/resnet20-*-s*/eval) --by activation+order --reference relu/conventional \
  --out $D/report
