#!/usr/bin/env python3
"""Check yolod JSON replies for the integration tests.

Each subcommand exits 0 when the check holds, else prints what differs and
exits 1. Detections are compared as sets: matched by class and best IoU, not
by list position, because near-equal confidences may swap order.
"""
import argparse
import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def normalize(detections):
    """Returns (class_id, confidence, [x1, y1, x2, y2]) for golden or API detections."""
    out = []
    for d in detections:
        box = d["box"]
        if isinstance(box, dict):
            box = [box["x1"], box["y1"], box["x2"], box["y2"]]
        out.append((d["class_id"], d["confidence"], [float(v) for v in box]))
    return out


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(expected, actual, min_iou, conf_tol, threshold, margin):
    """Lists the differences between two detection sets.

    A detection within `margin` of the confidence threshold may be missing
    on either side, because a one-step change of a few input pixels moves it
    across the threshold.
    """
    problems = []
    unmatched = list(range(len(actual)))
    for cls, conf, box in sorted(expected, key=lambda d: -d[1]):
        best, best_iou = None, -1.0
        for i in unmatched:
            if actual[i][0] == cls and iou(box, actual[i][2]) > best_iou:
                best, best_iou = i, iou(box, actual[i][2])
        optional = abs(conf - threshold) <= margin
        if best is None or best_iou < min_iou:
            if not optional:
                problems.append(f"missing class {cls} conf {conf:.4f} box {[round(v, 2) for v in box]}"
                                f" (best IoU {best_iou:.3f})")
            continue
        if abs(actual[best][1] - conf) > conf_tol:
            problems.append(f"class {cls} box {[round(v, 2) for v in box]}: confidence"
                            f" {actual[best][1]:.4f}, expected {conf:.4f} +- {conf_tol}")
        unmatched.remove(best)
    for i in unmatched:
        cls, conf, box = actual[i]
        if abs(conf - threshold) > margin:
            problems.append(f"unexpected class {cls} conf {conf:.4f} box {[round(v, 2) for v in box]}")
    return problems


def report(problems):
    for p in problems:
        print(p)
    return 1 if problems else 0


def cmd_error(args):
    body = load(args.file)
    err = body.get("error")
    problems = []
    if not isinstance(err, dict):
        return report([f"no 'error' object in {json.dumps(body)[:300]}"])
    if err.get("code") != args.code:
        problems.append(f"error code {err.get('code')!r}, expected {args.code!r}")
    message = err.get("message", "")
    for word in args.contains or []:
        if word.lower() not in message.lower():
            problems.append(f"error message {message!r} does not contain {word!r}")
    return report(problems)


def scaled(detections, sx, sy):
    return [(c, s, [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]) for c, s, b in detections]


def cmd_golden(args):
    body = load(args.file)
    golden = normalize(load(args.golden))
    problems = []
    if args.size:
        width, height = (int(v) for v in args.size.split("x"))
        got = (body["image"]["width"], body["image"]["height"])
        if got != (width, height):
            problems.append(f"image size {got[0]}x{got[1]}, expected {width}x{height}")
        if args.scale_from:
            from_w, from_h = (int(v) for v in args.scale_from.split("x"))
            golden = scaled(golden, width / from_w, height / from_h)
    problems += match(golden, normalize(body["detections"]), args.iou, args.conf_tol,
                      args.threshold, args.margin)
    return report(problems)


def cmd_same(args):
    body = load(args.file)
    reference = load(args.reference)
    problems = []
    for key in ("width", "height"):
        if body["image"][key] != reference["image"][key]:
            problems.append(f"image {key} {body['image'][key]}, expected {reference['image'][key]}")
    problems += match(normalize(reference["detections"]), normalize(body["detections"]),
                      args.iou, args.conf_tol, args.threshold, args.margin)
    return report(problems)


def cmd_size(args):
    body = load(args.file)
    width, height = (int(v) for v in args.size.split("x"))
    got = (body["image"]["width"], body["image"]["height"])
    if got != (width, height):
        return report([f"image size {got[0]}x{got[1]}, expected {width}x{height}"])
    return 0


def cmd_count(args):
    body = load(args.file)
    n = sum(1 for d in body["detections"] if d["label"] == args.label)
    if n < args.min or (args.max is not None and n > args.max):
        return report([f"{n} detections labelled {args.label!r}, expected {args.min}"
                       f" to {args.max if args.max is not None else 'any'}"])
    return 0


def cmd_total(args):
    body = load(args.file)
    n = len(body["detections"])
    if n < args.min or (args.max is not None and n > args.max):
        return report([f"{n} detections, expected {args.min} to {args.max}"])
    return 0


def cmd_shape(args):
    body = load(args.file)
    problems = []
    for key, kind in (("model", str), ("variant", str), ("version", str), ("image", dict),
                      ("detections", list), ("timings_ms", dict)):
        if not isinstance(body.get(key), kind):
            problems.append(f"field {key!r} missing or not {kind.__name__}")
    if problems:
        return report(problems)
    if args.model and body["model"] != args.model:
        problems.append(f"model {body['model']!r}, expected {args.model!r}")
    for key in ("decode", "preprocess", "inference", "postprocess", "total"):
        if not isinstance(body["timings_ms"].get(key), (int, float)):
            problems.append(f"timings_ms.{key} missing")
    width, height = body["image"].get("width"), body["image"].get("height")
    for d in body["detections"]:
        for key in ("class_id", "label", "confidence", "box"):
            if key not in d:
                problems.append(f"detection without {key!r}: {d}")
        b = d.get("box", {})
        if not (0 <= b.get("x1", -1) <= b.get("x2", -1) <= width
                and 0 <= b.get("y1", -1) <= b.get("y2", -1) <= height):
            problems.append(f"box outside the {width}x{height} image: {b}")
        if not 0 < d.get("confidence", -1) <= 1:
            problems.append(f"confidence out of range: {d}")
    confidences = [d.get("confidence", 0) for d in body["detections"]]
    if confidences != sorted(confidences, reverse=True):
        problems.append(f"detections not sorted by confidence: {confidences}")
    if args.classes is not None:
        allowed = {int(c) for c in args.classes.split(",") if c}
        for d in body["detections"]:
            if d["class_id"] not in allowed:
                problems.append(f"class {d['class_id']} outside the requested {sorted(allowed)}")
    if args.min_conf is not None:
        for d in body["detections"]:
            if d["confidence"] <= args.min_conf:
                problems.append(f"confidence {d['confidence']} not above {args.min_conf}")
    return report(problems)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def tolerances(p, iou_default, conf_default):
        p.add_argument("--iou", type=float, default=iou_default, help="minimum IoU of a match")
        p.add_argument("--conf-tol", type=float, default=conf_default, help="max confidence difference")
        p.add_argument("--threshold", type=float, default=0.25, help="confidence threshold used")
        p.add_argument("--margin", type=float, default=0.01,
                       help="detections this close to the threshold are optional")

    p = sub.add_parser("error", help="an error reply with a code and message words")
    p.add_argument("file")
    p.add_argument("--code", required=True)
    p.add_argument("--contains", action="append")
    p.set_defaults(run=cmd_error)

    p = sub.add_parser("golden", help="detections equal to a golden detections file")
    p.add_argument("file")
    p.add_argument("golden")
    p.add_argument("--size", help="expected image size WxH")
    p.add_argument("--scale-from", help="golden image size WxH; boxes are scaled to --size")
    tolerances(p, 0.98, 0.01)
    p.set_defaults(run=cmd_golden)

    p = sub.add_parser("same", help="detections equal to another reply's")
    p.add_argument("file")
    p.add_argument("reference")
    tolerances(p, 0.95, 0.03)
    p.set_defaults(run=cmd_same)

    p = sub.add_parser("size", help="the reported image size")
    p.add_argument("file")
    p.add_argument("size", help="WxH")
    p.set_defaults(run=cmd_size)

    p = sub.add_parser("count", help="number of detections with a label")
    p.add_argument("file")
    p.add_argument("--label", required=True)
    p.add_argument("--min", type=int, default=1)
    p.add_argument("--max", type=int)
    p.set_defaults(run=cmd_count)

    p = sub.add_parser("total", help="number of detections")
    p.add_argument("file")
    p.add_argument("--min", type=int, default=0)
    p.add_argument("--max", type=int)
    p.set_defaults(run=cmd_total)

    p = sub.add_parser("shape", help="a well-formed detection reply")
    p.add_argument("file")
    p.add_argument("--model")
    p.add_argument("--classes", help="comma-separated class ids every detection must be in")
    p.add_argument("--min-conf", type=float, help="every confidence must be above this")
    p.set_defaults(run=cmd_shape)

    args = parser.parse_args()
    try:
        return args.run(args)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"cannot check {getattr(args, 'file', '?')}: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
