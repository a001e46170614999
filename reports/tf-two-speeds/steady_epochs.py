"""How many steady epochs a run needs when epochs toggle between two speeds (issue 19, item 4).

A simulation, not a measurement: epochs alternate between a fast and a slow speed (1.6x apart) in
stretches ("sojourns") of one speed, as `kerasmnist train --backend tensorflow --device cpu` showed
(stretches of 1 to 4 epochs). Two models of the stretch length: uniform over 1..4 epochs (the longest seen
is 4), and geometric with the same mean (2.5 epochs: every epoch switches with probability 0.4, so longer
stretches happen too). For each count n of steady epochs in a run, over many simulated runs:

- one speed only: the share of runs whose steady epochs all ran at one speed, whose figure is then
  that speed's alone and whose epochs cannot show the second speed;
- between speeds: the share of runs whose median is the mean of a fast and a slow epoch (even n), a
  figure that is neither speed;
- detected: the share of rows of two such runs (2n steady epochs pooled) where kerasmnist.report.speeds
  finds the two speeds, with 5% noise on each epoch.

Run from the checkout (kerasmnist installed; it takes no options): python reports/tf-two-speeds/steady_epochs.py
"""

from __future__ import annotations

import argparse

import numpy as np

from kerasmnist.report.speeds import detect

RUNS, ROWS, RATIO, NOISE_CV = 20_000, 200, 1.6, 0.05


def stretches_uniform(rng: np.random.Generator) -> int:
    return int(rng.integers(1, 5))


def stretches_geometric(rng: np.random.Generator) -> int:
    return int(rng.geometric(0.4))


def run(rng: np.random.Generator, epochs: int, stretch) -> np.ndarray:
    """One run's speeds (0 fast, 1 slow), starting at a random point of a random stretch."""
    speed, states = int(rng.integers(2)), []
    length = int(rng.integers(1, stretch(rng) + 1))  # the run starts somewhere inside a stretch
    while len(states) < epochs:
        states += [speed] * length
        speed, length = 1 - speed, stretch(rng)
    return np.array(states[:epochs])


def times(rng: np.random.Generator, states: np.ndarray) -> np.ndarray:
    sigma = np.sqrt(np.log(1 + NOISE_CV ** 2))
    return np.where(states == 1, RATIO, 1.0) * np.exp(rng.normal(0, sigma, len(states)))


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # no options: --help only
    print(f"{'model':>10} {'n':>3} {'one speed only':>15} {'between speeds':>15} {'detected (2 runs)':>18}")
    for name, stretch in (("uniform", stretches_uniform), ("geometric", stretches_geometric)):
        rng = np.random.default_rng(19)
        for epochs in range(2, 12):
            runs = [run(rng, epochs, stretch) for _ in range(RUNS)]
            one = np.mean([states.min() == states.max() for states in runs])
            between = np.mean([epochs % 2 == 0 and np.sort(s)[epochs // 2 - 1] != np.sort(s)[epochs // 2]
                               for s in runs])
            detected = np.mean([detect(np.concatenate([times(rng, run(rng, epochs, stretch)) for _ in range(2)]),
                                       seed).several for seed in range(ROWS)])
            print(f"{name:>10} {epochs:>3} {one:>15.1%} {between:>15.1%} {detected:>18.1%}")


if __name__ == "__main__":
    main()
