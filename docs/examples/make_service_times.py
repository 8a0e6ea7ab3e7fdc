"""Write docs/examples/service_times.csv: a SYNTHETIC service-time log for `cvxalloc fit`.

No per-query service times are published with the data in cvxalloc/data, only one decode
speed per model. This script simulates 30 queries per task on the line of the built-in
example: seconds = base + 0.0122 * tokens, with 0.0122 s/token = Qwen3-8B BF16 on 1xH20,
batch 1 (qwen-speed-benchmark, cvxalloc/data/published_decode_latency.csv) and the bases of
cvxalloc/data/example.toml; each query's time is gamma-distributed around the line with
squared coefficient of variation 0.3. Thinking tokens are uniform over each task's box.

Run from the repository root: python docs/examples/make_service_times.py
"""

from pathlib import Path

import numpy as np

PER_TOKEN = 0.0122
SCV = 0.3
TASKS = {  # task: (base seconds, max tokens)
    "chat": (2.0, 8192),
    "code": (0.5, 16384),
    "math": (1.0, 16384),
    "olympiad": (0.5, 32768),
    "science": (1.0, 16384),
}


def main() -> None:
    rng = np.random.default_rng(20261127)
    lines = [
        "# SYNTHETIC service times (see docs/examples/make_service_times.py): seconds =",
        "# base + 0.0122 * tokens (Qwen3-8B BF16, qwen-speed-benchmark) with gamma noise, scv 0.3",
        "task,tokens,seconds",
    ]
    for task, (base, hi) in TASKS.items():
        tokens = np.round(rng.uniform(0, hi, 30))
        mean = base + PER_TOKEN * tokens
        seconds = rng.gamma(1 / SCV, SCV * mean)
        lines += [f"{task},{t:.0f},{s:.3f}" for t, s in zip(tokens, seconds)]
    out = Path(__file__).with_name("service_times.csv")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
