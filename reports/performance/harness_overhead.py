"""The harness's own cost: `kerasmnist train` against the plain script `plain_fit.py`, in paired rounds.

Each round runs, for every backend and model, both programs adjacent in time (the order alternating from
round to round), each in a fresh process, with the same data size, batch size and epochs and no validation.
The overhead is kerasmnist's steady epoch over the plain script's, paired by round, with the report's own
95% interval (kerasmnist.report.stats.ratio). Results go to harness-overhead.jsonl (one line per run, added
as they finish) and harness-overhead.md beside this file.

    python reports/performance/harness_overhead.py --rounds 4 --data-dir ../shared/data/mnist
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy import stats

from kerasmnist.report.stats import ratio

HERE = Path(__file__).parent
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--rounds", type=int, default=4)
parser.add_argument("--backends", default="tensorflow,torch,jax")
parser.add_argument("--models", default="cnn,ffn")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--limit-train", type=int, default=8192)
parser.add_argument("--data-dir", required=True)
args = parser.parse_args()
settings = ["--epochs", str(args.epochs), "--limit-train", str(args.limit_train)]


def kerasmnist_train(backend: str, model: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "kerasmnist", "train", "--backend", backend, "--model", model,
                        *settings, "--validation-size", "0", "--progress", "none", "--data-dir", args.data_dir,
                        "--out", out], check=True, capture_output=True)
        (record,) = Path(out).glob("*.json")
        return json.loads(record.read_text())["steady_epoch_seconds"]


def plain_fit(backend: str, model: str) -> float:
    child = subprocess.run([sys.executable, str(HERE / "plain_fit.py"), "--model", model, *settings,
                            "--data-dir", args.data_dir], check=True, capture_output=True, text=True,
                           env=os.environ | {"KERAS_BACKEND": backend})
    return json.loads(child.stdout.strip().splitlines()[-1])["steady_epoch_seconds"]


log = HERE / "harness-overhead.jsonl"
invocation = time.strftime("%Y%m%dT%H%M%S")  # rounds of every invocation are pooled, never confused
for round_number in range(args.rounds):
    for index, (backend, model) in enumerate((b, m) for b in args.backends.split(",") for m in args.models.split(",")):
        programs = [("kerasmnist", kerasmnist_train), ("plain", plain_fit)]
        for program, run in programs if (round_number + index) % 2 == 0 else reversed(programs):
            seconds = run(backend, model)
            with log.open("a") as lines:
                lines.write(json.dumps({"round": f"{invocation} #{round_number + 1}", "backend": backend, "model": model,
                                        "program": program, "steady_epoch_seconds": seconds}) + "\n")
            print(round_number, backend, model, program, f"{seconds:.3f} s", flush=True)



def rounds_for(found, half_width: float = 0.03) -> str:
    """About how many rounds would bring the interval within ± half_width, at this spread."""
    if not found or not found.log_sd:
        return "n/a"
    needed = next((n for n in range(2, 10_001)
                   if stats.t.ppf(0.975, n - 1) * found.log_sd / math.sqrt(n) < math.log(1 + half_width)), None)
    return f"{needed:,}" if needed else "over 10,000"


runs = [json.loads(line) for line in log.read_text().splitlines()]
table = ["| backend | model | kerasmnist train / plain model.fit, steady epoch [95%] | rounds | rounds for ±3% |",
         "| --- | --- | --- | --- | --- |"]
for backend, model in sorted({(run["backend"], run["model"]) for run in runs}):
    times = {program: {run["round"]: run["steady_epoch_seconds"] for run in runs
                       if (run["backend"], run["model"], run["program"]) == (backend, model, program)}
             for program in ("kerasmnist", "plain")}
    found = ratio(times["kerasmnist"], times["plain"])
    table.append(f"| {backend} | {model} | {found.text(3) if found else 'n/a'} | {found.rounds if found else 0} "
                 f"| {rounds_for(found)} |")
(HERE / "harness-overhead.md").write_text(
    "# The harness's own cost\n\n`python reports/performance/harness_overhead.py --data-dir ../shared/data/mnist "
    "[--rounds N --backends B --models M]`, every invocation's rounds pooled (harness-overhead.jsonl); epochs "
    f"{args.epochs}, {args.limit_train:,} training images, batch 128, no validation. A ratio above 1 is time "
    "kerasmnist adds; each round runs the two programs adjacent, in alternating order.\n\n" + "\n".join(table) + "\n")
print("\n".join(table))
