#!/usr/bin/env bash
# Tables and report of the CIFAR-10 JPEG q75 ResNet-20 study from the committed cells
# (run from the repository root; reads only results/cifar10jpeg-resnet20/*/eval and */clean).
set -euo pipefail
D=results/cifar10jpeg-resnet20
T=$D/tables
cells() { for a in "$@"; do ls -d $D/resnet20-$a-s*/eval 2>/dev/null; done; }
# A: LayerAct against ReLU and against SiLU (conventional order)
actbench compare $(cells relu-conventional silu-conventional la_silu-conventional la_hardsilu-conventional) \
  --reference relu --out $T/A-vs-relu
actbench compare $(cells relu-conventional silu-conventional la_silu-conventional la_hardsilu-conventional) \
  --reference silu --out $T/A-vs-silu
# B: tanh with BatchNorm before (conventional) and after (swapped) the activation
actbench compare $(cells tanh-conventional tanh-swapped) --by order --reference conventional --out $T/B-tanh-order
# C: ANAct-normalised SiLU against SiLU
actbench compare $(cells silu-conventional an_silu-conventional) --reference silu --out $T/C-anact
# clean accuracy of every cell on the whole 10,000-image test set
actbench compare $(ls -d $D/resnet20-*-s*/clean) --by activation+order --reference relu/conventional \
  --out $T/clean-10k
# everything in one report (figures + tables + report.html)
actbench report $(ls -d $D/resnet20-*-s*/eval) --by activation+order --reference relu/conventional \
  --out $D/report
