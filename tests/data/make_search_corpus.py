"""Regenerate ``search_corpus.json`` (deterministic): ``python tests/data/make_search_corpus.py``.

Filler text from a small vocabulary, with planted messages the quality tests look for.
Planted words never appear in the filler.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

FILLER = (
    "the a today plan meeting coffee notes idea project update question answer team week "
    "call draft review later maybe please thanks morning evening list item task email "
    "report friday monday travel garden book music movie dinner lunch walk city train "
    "ticket price number small large quick slow happy simple clear next last first"
).split()

# (user, conversation index, position) -> content; planted before filler is filled in.
PLANTED: dict[tuple[str, int, int], tuple[str, str]] = {
    ("ana", 1, 3): ("user", "How does photosynthesis work in plants?"),
    ("ana", 4, 1): ("assistant", "Photosynthesis turns light into sugar."),
    ("bo", 0, 2): ("user", "explain photosynthesis like I am five"),
    ("ana", 2, 2): ("user", "I want to study machine learning next year"),
    ("ana", 3, 4): ("assistant", "a learning machine is not the same thing"),
    ("ana", 5, 2): ("user", "the machine broke; learning to fix it took a week"),
    ("ana", 6, 1): ("user", "Deploying with Kubernetes on Friday"),
    ("ana", 6, 2): ("assistant", "Run kubectl apply -f deploy.yaml first."),
    ("ana", 7, 1): ("user", "Recipe for crème brûlée please"),
    ("ana", 7, 2): ("assistant", "Crème brûlée needs cream, sugar and eggs."),
    ("chen", 0, 1): ("user", "我 喜欢 编程 和 音乐"),
    ("chen", 0, 2): ("assistant", "编程 很 有趣"),
    ("chen", 1, 1): ("user", "東京 タワー の 写真"),
    ("chen", 2, 1): ("user", "I love pizza 🍕🍕 so much 🎉"),
    ("chen", 2, 2): ("assistant", "Pizza 🍕 is great: margherita or marinara?"),
    ("bo", 1, 1): ("user", "We should refactor the parser"),
    ("bo", 1, 2): ("assistant", "Yes, refactor it into small functions."),
    ("bo", 2, 1): ("user", "Die Straße ist lang und die Bäume sind grün"),
    ("bo", 2, 2): ("assistant", "Un café naïve à Paris, s'il vous plaît"),
    ("bo", 3, 1): ("user", "Is PostgreSQL better than SQLite for this?"),
    ("bo", 3, 2): ("assistant", "postgresql scales further; sqlite is embedded"),
    ("ana", 0, 5): ("user", "price of 3.14 e-mail plans"),
}
TITLES = {
    ("ana", 0): "Quarterly budget review",
    ("ana", 1): "Biology homework",
    ("ana", 7): "Dessert recipes",
    ("bo", 3): "Databases compared",
    ("chen", 2): "Pizza night 🍕",
}
# Tool traffic: the tool-call arguments and metadata are not indexed, the tool result is.
TOOL_TURN = [
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "zanzibar"}'},
            }
        ],
        "metadata": {"note": "secretmeta"},
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "weather result: sunny in Lisbon"},
]


def build() -> dict[str, object]:
    rng = random.Random(12)
    users = {}
    for user, n_convs in (("ana", 8), ("bo", 5), ("chen", 4)):
        convs = []
        for c in range(n_convs):
            n = rng.randint(14, 26)
            messages = []
            for pos in range(1, n + 1):
                role, content = PLANTED.get(
                    (user, c, pos),
                    (
                        "user" if pos % 2 else "assistant",
                        " ".join(rng.choice(FILLER) for _ in range(rng.randint(4, 18))),
                    ),
                )
                messages.append({"role": role, "content": content})
            if (user, c) == ("bo", 4):
                messages += TOOL_TURN
            convs.append(
                {
                    "external_id": f"{user}-{c}",
                    "title": TITLES.get((user, c), f"Chat {c}"),
                    "messages": messages,
                }
            )
        users[user] = convs
    return {"users": users}


if __name__ == "__main__":
    out = Path(__file__).with_name("search_corpus.json")
    out.write_text(json.dumps(build(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
