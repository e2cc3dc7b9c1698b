"""Synthetic triples and pairs with a learnable signal, for the training tests.

Loved responses carry "enthusiastic" words, the others neutral or negative ones, so a model
that learns anything separates them; contexts have several turns so truncation matters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LOVED = ["thanks this is great and very helpful", "amazing answer perfect and clear", "wonderful best answer thanks",
         "brilliant and helpful the example is perfect"]
OTHER = ["here is the answer", "the file has an error", "run the code and read the data", "this is wrong and boring",
         "it is okay i think", "the weather in paris is rain", "write a test for the model"]
QUESTIONS = ["how do i fix this bug", "what is the capital of france", "explain the python code please",
             "can you write a recipe for cake", "why does the test fail"]


def make_triples(n: int = 64, *, rate: float = 0.2, seed: int = 0, splits: tuple[float, float] = (0.75, 0.25),
                 noise: float = 0.0) -> pd.DataFrame:
    """Rows in the feature-store contract; about ``rate`` of them loved.

    ``splits`` gives the train/validation shares (the rest is test). ``noise`` flips that share of labels.
    """
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < rate).astype(int)
    labels[0], labels[1] = 1, 0  # both classes, always
    rows = []
    cut_train, cut_val = splits[0], splits[0] + splits[1]
    for i, y in enumerate(labels):
        q = QUESTIONS[rng.integers(len(QUESTIONS))]
        context = [{"role": "user", "content": "hello"},
                   {"role": "assistant", "content": "hi how can i help"},
                   {"role": "user", "content": q}]
        response = (LOVED if y else OTHER)[rng.integers(len(LOVED) if y else len(OTHER))]
        label = int(y) if rng.random() >= noise else 1 - int(y)
        u = (i + 0.5) / n
        rows.append({
            "response_id": f"r{i}", "conversation_id": f"c{i}", "user_id": f"u{i % 7}", "context": context,
            "response": response, "label": label, "weight": 1.0 if i % 5 else 0.5,
            "split": "train" if u < cut_train else ("validation" if u < cut_val else "test"),
            "window_closed_at": pd.Timestamp("2026-11-01T00:00:00Z") + pd.Timedelta(minutes=i),
            "policy_version": "policy-v1",
        })
    return pd.DataFrame(rows)


def make_pairs(n: int = 32, *, seed: int = 0) -> pd.DataFrame:
    """Preference pairs: the chosen response is an enthusiastic one."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rows.append({
            "pair_id": f"p{i}",
            "context": [{"role": "user", "content": QUESTIONS[rng.integers(len(QUESTIONS))]}],
            "chosen": LOVED[rng.integers(len(LOVED))],
            "rejected": OTHER[rng.integers(len(OTHER))],
            "split": "train" if i < int(0.75 * n) else "validation",
        })
    return pd.DataFrame(rows)
