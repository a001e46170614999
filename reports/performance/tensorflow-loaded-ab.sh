#!/usr/bin/env bash
# A/B, 6 pairs in alternating order: plain_fit.py under torch (CNN) with TensorFlow loadable (set_random_seed loads it) vs made unimportable.
# Output: reports/performance/tensorflow-loaded-ab.log (pair, mode, plain_fit.py JSON); ratio with kerasmnist.report.stats.ratio.
#   bash reports/performance/tensorflow-loaded-ab.sh > reports/performance/tensorflow-loaded-ab.log
# Takes no options; uses the checkout's .venv and the MNIST files in ../shared/data/mnist.
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^if /{/^#/s/^# \{0,1\}//p}' "$0"  # the comment above
  exit 0
fi
cd "$(dirname "$0")/../.." && . .venv/bin/activate
for i in 1 2 3 4 5 6; do
  if [ $((i % 2)) = 1 ]; then order="loaded blocked"; else order="blocked loaded"; fi
  for mode in $order; do
    if [ $mode = loaded ]; then
      out=$(KERAS_BACKEND=torch python reports/performance/plain_fit.py --model cnn --data-dir ../shared/data/mnist 2>/dev/null | tail -1)
    else
      out=$(KERAS_BACKEND=torch python -c "import sys, runpy; sys.modules['tensorflow'] = None; sys.argv = ['plain_fit.py', '--model', 'cnn', '--data-dir', '../shared/data/mnist']; runpy.run_path('reports/performance/plain_fit.py', run_name='__main__')" 2>/dev/null | tail -1)
    fi
    echo "$i $mode $out"
  done
done
