#!/usr/bin/env bash
# Issue 19's measurements, run alone on the machine, from the checkout with kerasmnist installed (`python` on
# PATH is the venv's): variants of measure.py in rotating order (round 1: A B C, round 2: B C A, ...), each run
# its own process, 10 epochs of 10,000 full-MNIST images.
#   bash reports/tf-two-speeds/ab.sh ROUNDS OUT [NAME=OPTIONS ...]
# Without variants: Keras's default against --fit-steps-per-epoch, then the native loop and a sleep between
# epochs once each (the 2026-12-02 runs). Example with variants (the 2026-12-03 runs):
#   bash reports/tf-two-speeds/ab.sh 3 /tmp/tf-feeds graph= python-tf.data=--feed=python-tf.data \
#       python-numpy=--feed=python-numpy
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"  # the comment above
  exit 0
fi
cd "$(dirname "$0")/../.."
rounds=${1:-3}
out=${2:-/tmp/tf-speeds}
shift $(( $# < 2 ? $# : 2 ))
run() {  # NAME [measure.py options]
  local name=$1; shift
  echo "== $name $(date -u +%H:%M:%S)"
  python reports/tf-two-speeds/measure.py --epochs 10 --limit-train 10000 \
    --data-dir ../shared/data/mnist --out "$out/$name" "$@" >"$out/$name.log" 2>&1
  grep -m1 -A1 "wall" "$out/$name/threads.md" || true
}
mkdir -p "$out"
# Two variants in rotating order alternate (A B, then B A, ...).
variants=("$@")
(( $# )) || variants=(default= steps=--fit-steps-per-epoch)
for round in $(seq 1 "$rounds"); do
  for i in $(seq 0 $(( ${#variants[@]} - 1 ))); do
    variant=${variants[$(( (i + round - 1) % ${#variants[@]} ))]}
    # NAME=OPTIONS: the options split on spaces (none contains one).
    run "${variant%%=*}-$round" ${variant#*=}
  done
done
if (( $# == 0 )); then
  run native --implementation native
  run sleep-1s --sleep 1.0
fi
