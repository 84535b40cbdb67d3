"""The miniature world: checkable tasks, a pretraining corpus, and an UltraFeedback-schema file.

Everything is a pure function of (settings, seed), so the miniature is reproducible bit for bit.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from aft.pipeline.config import MiniatureWorld

ANSWER_RE = re.compile(r"The answer is ([^\n]+?)\.(?:\s|$)")
SYLLABLES = ["ka", "lo", "mi", "ru", "ten", "sa", "po", "vi", "del", "an", "bo", "ne", "tra", "gu", "fi"]

WORDINGS: dict[str, list[str]] = {
    "add": [
        "What is {a} plus {b}?",
        "Add {a} and {b}.",
        "Compute {a} + {b}.",
        "What is the sum of {a} and {b}?",
    ],
    "add3": ["What is {a} + {b} + {c}?", "Add {a}, {b} and {c}.", "Compute the sum of {a}, {b} and {c}."],
    "sub": ["What is {a} minus {b}?", "Subtract {b} from {a}.", "Compute {a} - {b}."],
    "max": ["What is the largest number in {lst}?", "Find the maximum of {lst}.", "Which is biggest: {lst}?"],
    "min": [
        "What is the smallest number in {lst}?",
        "Find the minimum of {lst}.",
        "Which is smallest: {lst}?",
    ],
    "sort": [
        "Sort {lst} in ascending order.",
        "Put {lst} in increasing order.",
        "Order from small to large: {lst}.",
    ],
    "reverse": ["Reverse the word {w}.", "Write {w} backwards.", "Spell {w} in reverse."],
    "count": ["How many times does the letter {c} appear in {w}?", "Count the letter {c} in {w}."],
}


@dataclass(frozen=True)
class Task:
    kind: str
    query: str
    answer: str


def format_answer(answer: str) -> str:
    """The one canonical sentence every correct miniature response ends in."""
    return f"The answer is {answer}."


def extract_answer(text: str) -> str | None:
    """The last canonical answer in a response (None when there is none)."""
    found = ANSWER_RE.findall(text + " ")
    return " ".join(found[-1].split()) if found else None


def is_correct(text: str, gold: str) -> bool:
    return extract_answer(text) == gold


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))


def _numbers(rng: random.Random, hi: int, k: int) -> list[int]:
    return [rng.randint(0, hi) for _ in range(k)]


def make_task(kind: str, rng: random.Random, max_operand: int) -> Task:
    """One task of the given kind, with a random wording."""
    if kind == "add":
        if rng.random() < 0.3:
            a, b, c = _numbers(rng, max_operand, 3)
            return Task(kind, rng.choice(WORDINGS["add3"]).format(a=a, b=b, c=c), str(a + b + c))
        a, b = _numbers(rng, max_operand, 2)
        return Task(kind, rng.choice(WORDINGS["add"]).format(a=a, b=b), str(a + b))
    if kind == "sub":
        a, b = sorted(_numbers(rng, max_operand, 2), reverse=True)
        return Task(kind, rng.choice(WORDINGS["sub"]).format(a=a, b=b), str(a - b))
    if kind in ("max", "min", "sort"):
        xs = _numbers(rng, max_operand, rng.randint(3, 5))
        lst = ", ".join(map(str, xs))
        ans = {"max": str(max(xs)), "min": str(min(xs)), "sort": ", ".join(map(str, sorted(xs)))}[kind]
        return Task(kind, rng.choice(WORDINGS[kind]).format(lst=lst), ans)
    if kind == "reverse":
        w = _word(rng)
        return Task(kind, rng.choice(WORDINGS["reverse"]).format(w=w), w[::-1])
    if kind == "count":
        w = _word(rng)
        c = rng.choice(w) if rng.random() < 0.8 else rng.choice("aeiou")
        return Task(kind, rng.choice(WORDINGS["count"]).format(c=c, w=w), str(w.count(c)))
    raise ValueError(f"unknown task kind {kind!r}; expected one of {sorted(WORDINGS)}")


def wrong_answer(task: Task, rng: random.Random) -> str:
    """A plausible mistake, never equal to the right answer."""
    ans = task.answer
    if task.kind in ("add", "sub", "count", "max", "min"):
        n = int(ans)
        delta = rng.choice([-3, -2, -1, 1, 2, 3])
        return str(n + delta if n + delta >= 0 else n - delta)
    if task.kind == "sort":
        xs = ans.split(", ")
        for _ in range(10):
            rng.shuffle(xs)
            if ", ".join(xs) != ans:
                return ", ".join(xs)
        return ", ".join(xs[:-1] + [str(int(xs[-1]) + 1)])
    chars = list(ans)  # reverse: swap two neighbours, or give the word unreversed
    i = rng.randrange(len(chars) - 1)
    chars[i], chars[i + 1] = chars[i + 1], chars[i]
    out = "".join(chars)
    return out if out != ans else ans[::-1] + "a"


def split_tasks(world: MiniatureWorld, seed: int) -> dict[str, list[Task]]:
    """Training, pretraining and evaluation tasks, with no query shared between splits.

    Each split draws from its own random stream, and the evaluation set comes last, from queries in
    neither other split: sizing the evaluation set (`n_eval`) changes the evaluation set only, never
    what the models are trained on."""
    seen: set[str] = set()
    out: dict[str, list[Task]] = {}
    for split, n in (("train", world.n_train), ("pretrain", world.n_pretrain), ("eval", world.n_eval)):
        rng = random.Random(f"{seed}:{split}")  # a str seed is hashed with SHA-512: the same everywhere
        tasks: list[Task] = []
        tries = 0
        while len(tasks) < n:
            tries += 1
            if tries > 50 * n:
                raise ValueError(
                    f"data.miniature: cannot draw {n} distinct {split} queries; raise max_operand"
                    f" (={world.max_operand}) or add tasks"
                )
            t = make_task(rng.choice(world.tasks), rng, world.max_operand)
            if t.query not in seen:
                seen.add(t.query)
                tasks.append(t)
        out[split] = tasks
    return out


def icl_block(query: str, answer_text: str | None = None) -> str:
    """The plain-text format shared by the corpus and the ICL prompt (URIAL-style)."""
    head = f"Query: {query}\nAnswer:"
    return head if answer_text is None else f"{head} {answer_text}\n\n"


def corpus_text(world: MiniatureWorld, tasks: list[Task], seed: int) -> str:
    """Pretraining text: task/answer pairs, a share of them wrong, so ICL samples a mix."""
    rng = random.Random(seed)
    parts = []
    for t in tasks:
        ans = wrong_answer(t, rng) if rng.random() < world.pretrain_wrong_fraction else t.answer
        parts.append(icl_block(t.query, format_answer(ans)))
    return "".join(parts)


STYLES = ["{a}", "Let me work it out. {a}", "Sure! {a}", "Here is my reply: {a}"]
ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def _completion(model: str, text: str, correct: bool, rng: random.Random) -> dict:
    """One completion in the published UltraFeedback schema, rated by a simulated GPT-4."""
    annotations = {}
    for aspect in ASPECTS:
        base = rng.choice([4, 5]) if correct else rng.choice([1, 2, 3])
        rating = "N/A" if rng.random() < 0.03 else str(base)
        annotations[aspect] = {"Rating": rating, "Rationale": "correct" if correct else "incorrect"}
    numeric = [int(a["Rating"]) for a in annotations.values() if a["Rating"] != "N/A"]
    fine = sum(numeric) / len(numeric) if numeric else None
    overall = float(rng.randint(7, 10) if correct else rng.randint(2, 6))
    return {
        "model": model,
        "principle": "helpfulness",
        "custom_system_prompt": "",
        "response": text,
        "annotations": annotations,
        "fine-grained_score": fine,
        "overall_score": overall,
        "critique": "The answer is right." if correct else "The answer is wrong.",
    }


def ultrafeedback_rows(world: MiniatureWorld, tasks: list[Task], seed: int) -> list[dict]:
    """An UltraFeedback-like file: one row per query, one completion per simulated model."""
    rng = random.Random(seed)
    models = [f"sim-model-{i}" for i in range(len(world.offpolicy_model_accuracies))]
    rows = []
    for t in tasks:
        completions = []
        for model, acc in zip(models, world.offpolicy_model_accuracies):
            correct = rng.random() < acc
            ans = t.answer if correct else wrong_answer(t, rng)
            # a style drawn per completion: a fixed style per model would tell an aggregator which
            # proposal comes from the most accurate model, a cue that its own samples never carry
            style = rng.choice(STYLES)
            completions.append(_completion(model, style.format(a=format_answer(ans)), correct, rng))
        rows.append(
            {
                "source": "miniature",
                "instruction": t.query,
                "models": models,
                "completions": completions,
                "correct_answers": [t.answer],
                "incorrect_answers": [],
            }
        )
    return rows
