"""A tiny classifier in pure Python: logistic regression (hidden = 0) or a one-hidden-layer
tanh MLP, trained by plain SGD on binary cross-entropy. Shared by train.py and evaluate.py."""

from __future__ import annotations

import json
import math
import os
import random


def init(n_in: int, hidden: int, rng: random.Random) -> dict:
    if hidden == 0:
        return {"hidden": 0, "w": [0.0] * n_in, "b": 0.0}
    scale = 1.0 / math.sqrt(n_in)
    return {
        "hidden": hidden,
        "W1": [[rng.uniform(-scale, scale) for _ in range(n_in)] for _ in range(hidden)],
        "b1": [0.0] * hidden,
        "w": [rng.uniform(-0.5, 0.5) for _ in range(hidden)],
        "b": 0.0,
    }


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _hidden(model: dict, x: list[float]) -> list[float]:
    if model["hidden"] == 0:
        return x
    return [math.tanh(sum(w * xi for w, xi in zip(row, x)) + b) for row, b in zip(model["W1"], model["b1"])]


def predict_proba(model: dict, x: list[float]) -> float:
    h = _hidden(model, x)
    return _sigmoid(sum(w * hi for w, hi in zip(model["w"], h)) + model["b"])


def sgd_epoch(model: dict, rows: list[list[float]], lr: float, rng: random.Random) -> None:
    """One pass over rows ([*features, label]) in a seeded random order."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    for i in order:
        *x, y = rows[i]
        h = _hidden(model, x)
        p = _sigmoid(sum(w * hi for w, hi in zip(model["w"], h)) + model["b"])
        g = p - y  # d(BCE)/d(logit)
        if model["hidden"]:
            for j, hj in enumerate(h):
                gh = g * model["w"][j] * (1.0 - hj * hj)
                row = model["W1"][j]
                for k, xk in enumerate(x):
                    row[k] -= lr * gh * xk
                model["b1"][j] -= lr * gh
        for j, hj in enumerate(h):
            model["w"][j] -= lr * g * hj
        model["b"] -= lr * g


def evaluate(model: dict, rows: list[list[float]]) -> dict:
    correct, loss = 0, 0.0
    for *x, y in rows:
        p = min(max(predict_proba(model, x), 1e-12), 1 - 1e-12)
        correct += (p >= 0.5) == (y == 1)
        loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
    return {"acc": round(correct / len(rows), 4), "loss": round(loss / len(rows), 4)}


def write_json(path: str, obj) -> None:
    """Write atomically, so make never sees a half-written target."""
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)
