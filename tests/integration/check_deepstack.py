#!/usr/bin/env python3
"""Check DeepStack-shaped replies of POST /v1/vision/detection, and make test images.

Each subcommand exits 0 when the check holds, else prints what differs and
exits 1.
"""
import argparse
import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def check_success(args):
    reply = load(args.reply)
    problems = []
    if reply.get("success") is not True:
        problems.append(f"success is {reply.get('success')!r}, expected true")
    predictions = reply.get("predictions")
    if not isinstance(predictions, list):
        return [f"predictions is {predictions!r}, expected a list"]
    if reply.get("count") != len(predictions):
        problems.append(f"count is {reply.get('count')!r}, list has {len(predictions)}")
    for key in ("inferenceMs", "processMs"):
        value = reply.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"{key} is {value!r}, expected an integer >= 0")
    if reply.get("processMs", 0) < reply.get("inferenceMs", 0):
        problems.append("processMs is less than inferenceMs")

    confidences = [p.get("confidence") for p in predictions]
    if confidences != sorted(confidences, reverse=True):
        problems.append(f"predictions not sorted by confidence: {confidences}")
    for i, p in enumerate(predictions):
        if set(p) != {"label", "confidence", "x_min", "y_min", "x_max", "y_max"}:
            problems.append(f"prediction {i} has keys {sorted(p)}")
            continue
        if not isinstance(p["label"], str) or not p["label"] or p["label"] != p["label"].lower():
            problems.append(f"prediction {i} label {p['label']!r} is not a lowercase name")
        if not args.min_confidence <= p["confidence"] <= 1:
            problems.append(f"prediction {i} confidence {p['confidence']} is outside "
                            f"[{args.min_confidence}, 1]")
        edges = [p["x_min"], p["y_min"], p["x_max"], p["y_max"]]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in edges):
            problems.append(f"prediction {i} box {edges} is not integers")
            continue
        if not (0 <= p["x_min"] <= p["x_max"] <= args.width and
                0 <= p["y_min"] <= p["y_max"] <= args.height):
            problems.append(f"prediction {i} box {edges} is outside {args.width}x{args.height}")
    return problems


def check_count(args):
    reply = load(args.reply)
    found = sum(1 for p in reply.get("predictions", []) if p.get("label") == args.label)
    if found < args.min or (args.max is not None and found > args.max):
        return [f"{found} predictions labelled {args.label!r}, expected "
                f"{args.min}..{args.max if args.max is not None else 'any'}"]
    return []


def check_error(args):
    reply = load(args.reply)
    problems = []
    if set(reply) != {"success", "error", "code"}:
        problems.append(f"keys are {sorted(reply)}, expected code, error, success")
    if reply.get("success") is not False:
        problems.append(f"success is {reply.get('success')!r}, expected false")
    if reply.get("code") != args.status:
        problems.append(f"code is {reply.get('code')!r}, expected {args.status}")
    message = reply.get("error")
    if not isinstance(message, str) or args.contains.lower() not in message.lower():
        problems.append(f"error {message!r} does not contain {args.contains!r}")
    return problems


def make_square_ppm(args):
    """Crops the centre square of a binary PPM (P6, maxval 255) and scales it by nearest neighbour."""
    with open(args.source, "rb") as f:
        data = f.read()
    fields = []
    pos = 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        start = pos
        while not data[pos:pos + 1].isspace():
            pos += 1
        fields.append(data[start:pos])
    pos += 1
    if fields[0] != b"P6" or fields[3] != b"255":
        return [f"{args.source}: not a binary PPM with maxval 255"]
    width, height = int(fields[1]), int(fields[2])
    pixels = data[pos:]
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    out = bytearray()
    for y in range(args.size):
        row = (top + y * side // args.size) * width
        for x in range(args.size):
            i = 3 * (row + left + x * side // args.size)
            out += pixels[i:i + 3]
    with open(args.output, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (args.size, args.size) + bytes(out))
    return []


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("success", help="a well-formed success reply")
    p.add_argument("reply")
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--height", type=int, required=True)
    p.add_argument("--min-confidence", type=float, default=0.0)
    p.set_defaults(run=check_success)

    p = sub.add_parser("count", help="number of predictions with a label")
    p.add_argument("reply")
    p.add_argument("--label", required=True)
    p.add_argument("--min", type=int, default=1)
    p.add_argument("--max", type=int)
    p.set_defaults(run=check_count)

    p = sub.add_parser("error", help="a DeepStack error reply")
    p.add_argument("reply")
    p.add_argument("--status", type=int, required=True)
    p.add_argument("--contains", required=True)
    p.set_defaults(run=check_error)

    p = sub.add_parser("square-ppm", help="crop the centre square of a PPM and scale it")
    p.add_argument("source")
    p.add_argument("output")
    p.add_argument("--size", type=int, required=True)
    p.set_defaults(run=make_square_ppm)

    args = parser.parse_args()
    problems = args.run(args)
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
