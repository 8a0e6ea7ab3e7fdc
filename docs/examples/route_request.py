"""Route one request with a cvxalloc policy: classify, read the rate, look up the budget.

Run::

    cvxalloc policy --output policy.json                      # the built-in example
    python docs/examples/route_request.py --policy policy.json --type math --rate 0.05
    python docs/examples/route_request.py --policy policy.json --text "Prove that ..." \\
        --rate 0.12 --queue 4
    python docs/examples/route_request.py --type olympiad --rate 0.02   # builds the policy

It prints the budget, the proven gap at that rate, and the request a router would send. The
pieces are small on purpose: a router replaces ``classify`` with its own classifier and
``RateMeter`` with its own counters; the policy look-up is the part cvxalloc provides
(see docs/deploy.md).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import deque

import cvxalloc

#: Words that send a request to a task type (a stand-in for a real classifier).
KEYWORDS = {
    "olympiad": ("imo", "olympiad", "aime", "putnam"),
    "math": ("prove", "integral", "equation", "solve for", "probability"),
    "code": ("python", "function", "bug", "compile", "def ", "class "),
    "science": ("physics", "chemistry", "biology", "molecule"),
}


def classify(text: str, names: list[str], default: str = "chat") -> str:
    """The task type of a request (first keyword match, else ``default``)."""
    low = text.lower()
    for name, words in KEYWORDS.items():
        if name in names and any(w in low for w in words):
            return name
    return default if default in names else names[0]


class RateMeter:
    """Arrivals per second over a sliding window, as a router would count them."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self.stamps: deque[float] = deque()

    def arrive(self, now: float) -> None:
        self.stamps.append(now)

    def rate(self, now: float) -> float:
        while self.stamps and self.stamps[0] <= now - self.window:
            self.stamps.popleft()
        return len(self.stamps) / self.window


def planning_rate(measured: float, queue: int, window: float, floor: float) -> float:
    """The rate to plan for: never below the long-run rate, plus the backlog spread over a window.

    The same rule as ``cvxalloc control`` (docs/validation.md (g)): a quiet minute does not
    announce a quiet next one, and the queries already waiting will be served in the coming
    window on top of the new arrivals.
    """
    return max(measured, floor) + queue / window


def lookup(policy, task: str, rate: float):
    """Budget of ``task`` at ``rate`` and the proven gap there; rates above the range are
    held at its top (the budgets stable closest to saturation: shed load beyond that)."""
    low, high = policy.rate_range
    r = min(max(rate, low), high)
    ans = policy.lookup(r)
    return math.floor(ans.tokens[policy.names.index(task)]), ans, r


def request_body(text: str, budget: int) -> dict:
    """An illustrative request: the budget as the request's thinking budget.

    Serving stacks name it differently (see docs/deploy.md); a budget of 0 means "do not
    think" (turn thinking off where the stack allows it).
    """
    thinking = {"type": "enabled", "budget_tokens": budget} if budget > 0 else {"type": "disabled"}
    return {"messages": [{"role": "user", "content": text}], "thinking": thinking}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", help="policy file (default: build the built-in example's)")
    parser.add_argument("--type", dest="task", help="task type (default: classify --text)")
    parser.add_argument("--text", default="What is a good name for a cat?", help="the request")
    parser.add_argument("--rate", type=float, required=True, help="measured rate, queries/s")
    parser.add_argument("--queue", type=int, default=0, help="queries waiting now")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of the rate meter")
    parser.add_argument(
        "--floor", type=float, default=0.0, help="long-run rate planned for, queries/s"
    )
    args = parser.parse_args(argv)
    if args.policy:
        policy = cvxalloc.load_policy(args.policy)
    else:
        from cvxalloc.policy import build_policy

        policy = build_policy(cvxalloc.example_scenario())
    task = args.task or classify(args.text, policy.names)
    if task not in policy.names:
        print(
            f"unknown task type {task!r}; the policy has {', '.join(policy.names)}", file=sys.stderr
        )
        return 2
    rate = planning_rate(args.rate, args.queue, args.window, args.floor)
    budget, ans, used = lookup(policy, task, rate)
    held = "" if used == rate else f" (held at the policy's top {used:.6g})"
    print(f"task {task}: plan for {rate:.6g} queries/s{held}")
    print(
        f"thinking budget {budget} tokens; proven gap {ans.gap:.3g} ({ans.relative_gap:.1e} "
        f"of |U|) at that rate"
    )
    print(json.dumps(request_body(args.text, budget)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
