#!/usr/bin/env bash
# Issue 19's measurements, run alone on the machine, from the checkout: Keras's default against
# --fit-steps-per-epoch in alternating pairs (A B, then B A, ...), then the native loop and a sleep between
# epochs once each. Each run: measure.py's 10 epochs of 10,000 full-MNIST images, its own process.
#   bash reports/tf-two-speeds/ab.sh ROUNDS OUT   (e.g. 3 /tmp/tf-speeds)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
out=${2:-/tmp/tf-speeds}
run() {  # NAME [measure.py options]
  local name=$1; shift
  echo "== $name $(date -u +%H:%M:%S)"
  PYTHONPATH=$PWD python reports/tf-two-speeds/measure.py --epochs 10 --limit-train 10000 \
    --data-dir ../shared/data/mnist --out "$out/$name" "$@" >"$out/$name.log" 2>&1
  grep -m1 -A1 "wall" "$out/$name/threads.md" || true
}
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
  if (( round % 2 )); then
    run "default-$round"; run "steps-$round" --fit-steps-per-epoch
  else
    run "steps-$round" --fit-steps-per-epoch; run "default-$round"
  fi
done
run native --implementation native
run sleep-1s --sleep 1.0
