"""Write a seeded synthetic dataset: two interleaving half-moons, split train/val/test.

A straight line cannot separate the moons, so hidden units (and enough epochs) matter:
the configs really do differ in accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random


def moons(n: int, noise: float, rng: random.Random) -> list[list[float]]:
    """n points as [x, y, label]; label 0 is the upper moon, 1 the lower one."""
    points = []
    for i in range(n):
        label = i % 2
        t = math.pi * rng.random()
        if label == 0:
            x, y = math.cos(t), math.sin(t)
        else:
            x, y = 1.0 - math.cos(t), 0.5 - math.sin(t)
        points.append([round(x + rng.gauss(0, noise), 6), round(y + rng.gauss(0, noise), 6), label])
    rng.shuffle(points)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="directory to write train/val/test JSON into")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.25)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    points = moons(2000, args.noise, rng)
    # train.json last: it is the make target, so an interrupted run writes them all again.
    splits = {"val": points[1200:1600], "test": points[1600:], "train": points[:1200]}
    os.makedirs(args.out, exist_ok=True)
    for split, rows in splits.items():
        path = os.path.join(args.out, f"{split}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(rows, f, separators=(",", ":"))
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
