"""Evaluate a checkpoint directory on one split; write the metrics as a JSON object
(usable as `modelreg log --meta-file`)."""

from __future__ import annotations

import argparse
import os

import tinynet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ckpt", help="checkpoint directory (config.json, weights.json)")
    parser.add_argument("--data", required=True, help="directory holding <split>.json")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()

    model = tinynet.read_json(os.path.join(args.ckpt, "weights.json"))
    config = tinynet.read_json(os.path.join(args.ckpt, "config.json"))
    rows = tinynet.read_json(os.path.join(args.data, f"{args.split}.json"))
    metrics = tinynet.evaluate(model, rows)
    result = {f"{args.split}_acc": metrics["acc"], f"{args.split}_loss": metrics["loss"]}
    # The hyperparameters go along, so `modelreg ls --where metadata.hidden=8` works.
    result.update({k: config[k] for k in ("name", "hidden", "lr", "epochs")})
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    tinynet.write_json(args.out, result)


if __name__ == "__main__":
    main()
