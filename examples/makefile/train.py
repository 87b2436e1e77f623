"""Train one config and write a checkpoint directory: config.json and weights.json."""

from __future__ import annotations

import argparse
import os
import random
import sys

import tinynet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="configs/<name>.json")
    parser.add_argument("--data", required=True, help="directory holding train.json")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    args = parser.parse_args()

    config = tinynet.read_json(args.config)
    rows = tinynet.read_json(os.path.join(args.data, "train.json"))
    rng = random.Random(config["seed"])
    model = tinynet.init(len(rows[0]) - 1, config["hidden"], rng)
    for _ in range(config["epochs"]):
        tinynet.sgd_epoch(model, rows, config["lr"], rng)

    os.makedirs(args.out, exist_ok=True)
    tinynet.write_json(os.path.join(args.out, "config.json"), config)
    # weights.json is the make target: written last, so an interrupted run retrains.
    tinynet.write_json(os.path.join(args.out, "weights.json"), model)
    train = tinynet.evaluate(model, rows)
    print(f"trained {args.out}: train_acc={train['acc']}", file=sys.stderr)


if __name__ == "__main__":
    main()
