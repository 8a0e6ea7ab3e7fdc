"""Route one request with a cvxalloc policy: classify, read the rate, look up the budget.

Run::

    cvxalloc policy --output policy.json                      # the built-in example
    python docs/examples/route_request.py --policy policy.json --type math --rate 0.05
    python docs/examples/route_request.py --policy policy.json --text "Prove that ..." \\
        --rate 0.12 --queue 4
    python docs/examples/route_request.py --type olympiad --rate 0.02   # builds the policy

    # Anthropic's Messages API takes no thinking budget below 1,024 tokens: a menu policy
    cvxalloc policy docs/examples/example_menu.toml --output policy_menu.json
    python docs/examples/route_request.py --policy policy_menu.json --type math --rate 0.05 \\
        --format anthropic

It prints the budget, the proven gap at that rate, and the request a router would send:
``--format vllm`` (the default) for a self-hosted model behind vLLM's OpenAI-compatible
server (``thinking_token_budget``, any whole number of tokens), ``--format anthropic`` for
the Messages API (``thinking.budget_tokens``: 0 means thinking off, else at least 1,024; a
budget in between cannot be sent, and the script says to build the policy from a menu).
The pieces are small on purpose: a router replaces ``classify`` with its own classifier and
``RateMeter`` with its own counters; the policy look-up is the part cvxalloc provides
(see docs/deploy.md).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import deque
from pathlib import Path

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


#: The smallest thinking budget Anthropic's Messages API accepts (``budget_tokens``).
ANTHROPIC_MIN_BUDGET = 1024
#: Where the example's menu scenario is (budgets 0 or >= 1,024), beside this script.
MENU_SCENARIO = Path(__file__).resolve().parent / "example_menu.toml"


class BudgetError(ValueError):
    """A budget the request format cannot carry."""


def request_body(text: str, budget: int, fmt: str = "vllm", answer_tokens: int = 1024) -> dict:
    """The request a router sends: the budget as the request's thinking budget.

    ``vllm``: a self-hosted reasoning model behind vLLM's OpenAI-compatible server,
    started with ``--reasoning-parser`` and ``--reasoning-config`` (docs/deploy.md);
    ``thinking_token_budget`` caps the thinking, and 0 turns thinking off through the
    chat template (``enable_thinking``, as Qwen3's). ``anthropic``: the Messages API;
    0 is thinking disabled, any other budget must be at least
    :data:`ANTHROPIC_MIN_BUDGET`. Thinking counts against ``max_tokens`` in both, so
    ``max_tokens`` is the budget plus the answer's allowance.
    """
    messages = [{"role": "user", "content": text}]
    if fmt == "vllm":
        if budget == 0:
            return {
                "messages": messages,
                "max_tokens": answer_tokens,
                "chat_template_kwargs": {"enable_thinking": False},
            }
        return {
            "messages": messages,
            "max_tokens": budget + answer_tokens,
            "thinking_token_budget": budget,
        }
    if budget == 0:
        return {"messages": messages, "max_tokens": answer_tokens, "thinking": {"type": "disabled"}}
    if budget < ANTHROPIC_MIN_BUDGET:
        raise BudgetError(
            f"budget {budget} tokens is below the Messages API's smallest thinking budget "
            f"({ANTHROPIC_MIN_BUDGET:,}): build the policy from a scenario whose budgets are 0 "
            f"or at least {ANTHROPIC_MIN_BUDGET:,} (cvxalloc policy docs/examples/"
            f"{MENU_SCENARIO.name} --output ...), or serve with --format vllm"
        )
    return {
        "messages": messages,
        "max_tokens": budget + answer_tokens,
        "thinking": {"type": "enabled", "budget_tokens": budget},
    }


def _policy(path: str | None, fmt: str):
    """The policy file, or one built from the built-in example (its menu for anthropic)."""
    if path:
        return cvxalloc.load_policy(path)
    from cvxalloc.policy import build_policy

    sc = cvxalloc.load_scenario(MENU_SCENARIO) if fmt == "anthropic" else None
    return build_policy(sc or cvxalloc.example_scenario())


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
    parser.add_argument(
        "--format",
        choices=("vllm", "anthropic"),
        default="vllm",
        help="the request to print: vLLM's OpenAI-compatible server (default) or Anthropic's "
        "Messages API",
    )
    parser.add_argument(
        "--answer-tokens", type=int, default=1024, help="the answer's allowance in max_tokens"
    )
    args = parser.parse_args(argv)
    policy = _policy(args.policy, args.format)
    task = args.task or classify(args.text, policy.names)
    if task not in policy.names:
        print(
            f"unknown task type {task!r}; the policy has {', '.join(policy.names)}", file=sys.stderr
        )
        return 2
    rate = planning_rate(args.rate, args.queue, args.window, args.floor)
    budget, ans, used = lookup(policy, task, rate)
    try:
        body = request_body(args.text, budget, args.format, args.answer_tokens)
    except BudgetError as exc:
        print(f"route_request: {exc}", file=sys.stderr)
        return 2
    held = "" if used == rate else f" (held at the policy's top {used:.6g})"
    print(f"task {task}: plan for {rate:.6g} queries/s{held}")
    print(
        f"thinking budget {budget} tokens; proven gap {ans.gap:.3g} ({ans.relative_gap:.1e} "
        f"of |U|) at that rate"
    )
    print(json.dumps(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
