#!/usr/bin/env python3
"""Latency of yolod against ONNX Runtime, with each side's share of the CPU's
arithmetic ceiling, as a Markdown table (`make bench`).

Both sides run the same model on the same input tensor (the letterboxed
bus.jpg), timed without decoding or post-processing: yolod with
`yolod bench --json`, ONNX Runtime (npm onnxruntime-node, CPU provider,
intra-op threads equal to yolod's) with bench/ort-bench.js. Each round runs
every model once per side, one after the other (A, B, A, B...), each run
being a fresh process with WARMUP untimed inferences then RUNS timed ones.
A side's figure is the median of its per-round medians and the minimum of
its per-round minimums. The ratio is yolod's median over ONNX Runtime's
(below 1: yolod is faster). The round ratio is the median over rounds of
yolod's median over ONNX Runtime's in the same round: the two runs of a
round are adjacent in time, so it moves less when other processes come and
go. The machine may be shared, so only ratios from the same session mean
anything.

Share of the ceiling: the model's operations (`yolod bench` "gflops": 2 per
multiply-add of every convolution, the same count for int8, where each is an
integer multiply-add) divided by the median time, over the ceiling that
bench/peak measures for the same thread count: fp32 FMA for fp32 runs,
vpdpbusd for int8 runs. The count is that of direct convolution: an engine
that runs 3x3 layers with Winograd's algorithm does fewer multiplications,
so its share can pass 100%.

Environment: BUILD (build), SHARED (../shared), ROUNDS (7), RUNS (20),
WARMUP (3), THREADS ("1 2"), OUT (BUILD/bench/results.md), INT8 (the int8
.yolod file, default BUILD/bench/yolov8n.int8.yolod), ROWS (comma-separated
row names to run, default all: n, s, n-int8, n-int8-vs-fp32).
"""
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

BUILD = os.environ.get("BUILD", "build")
SHARED = os.environ.get("SHARED", "../shared")
ROUNDS = int(os.environ.get("ROUNDS", "7"))
RUNS = int(os.environ.get("RUNS", "20"))
WARMUP = int(os.environ.get("WARMUP", "3"))
THREADS = [int(t) for t in os.environ.get("THREADS", "1 2").split()]
OUT = os.environ.get("OUT", os.path.join(BUILD, "bench", "results.md"))
INT8 = os.environ.get("INT8", os.path.join(BUILD, "bench", "yolov8n.int8.yolod"))
YOLOD = os.path.join(BUILD, "yolod")
PEAK = os.path.join(BUILD, "bench", "peak")
INPUT = os.path.join(SHARED, "golden", "bus.input.f32")
MODELS = os.path.join(SHARED, "models")
HERE = os.path.dirname(os.path.abspath(__file__))

# Sides: (engine, model file, precision of its arithmetic).
SIDES = {
    "yolod-n": ("yolod", os.path.join(MODELS, "yolov8n.onnx"), "fp32"),
    "ort-n": ("ort", os.path.join(MODELS, "yolov8n.onnx"), "fp32"),
    "yolod-s": ("yolod", os.path.join(MODELS, "yolov8s-random.onnx"), "fp32"),
    "ort-s": ("ort", os.path.join(MODELS, "yolov8s-random.onnx"), "fp32"),
    "yolod-n-int8": ("yolod", INT8, "int8"),
    "ort-n-int8": ("ort", os.path.join(MODELS, "yolov8n-ort-int8.onnx"), "int8"),
}
# Rows: name -> (yolod side, ONNX Runtime side). The FLOPs of a row are
# those of its yolod side's model, which the ONNX Runtime side shares.
ROWS = {
    "n": ("yolod-n", "ort-n"),
    "s": ("yolod-s", "ort-s"),
    "n-int8": ("yolod-n-int8", "ort-n-int8"),
    "n-int8-vs-fp32": ("yolod-n-int8", "ort-n"),
}


def fail(message):
    print(f"compare.py: {message}", file=sys.stderr)
    sys.exit(1)


def run_json(argv):
    """Runs a command that prints one JSON object and returns it."""
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"'{' '.join(argv)}' exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        fail(f"'{' '.join(argv)}' printed no JSON: {proc.stdout[-300:]!r}")


def run_side(side, threads):
    engine, model, _ = SIDES[side]
    if engine == "yolod":
        argv = [YOLOD, "bench", "--model", model, "--input", INPUT, "--threads", str(threads),
                "--runs", str(RUNS), "--warmup", str(WARMUP), "--json"]
    else:
        argv = ["node", os.path.join(HERE, "ort-bench.js"), model, INPUT, str(threads),
                str(RUNS), str(WARMUP)]
    return run_json(argv)


def measure_ceilings():
    """Returns {(precision, threads): G ops/s} from bench/peak, and its ISAs."""
    peak = run_json([PEAK, "--json"] + [str(t) for t in THREADS])
    ceilings = {}
    for r in peak["results"]:
        if r["ceiling"]:
            ceilings[(r["kind"], r["threads"])] = r["gops"]
    return ceilings, peak


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    name = fields.get("Model name", "?").strip()
    family = fields.get("CPU family", "?").strip()
    model = fields.get("Model", "?").strip()
    return f"{name} (family {family} model {model}), {os.cpu_count()} CPUs"


def share(gflops, ms, ceiling):
    if not ceiling:
        return "n/a"
    return f"{100 * gflops / (ms / 1e3) / ceiling:.0f}%"


def main():
    rows = os.environ.get("ROWS", ",".join(ROWS)).split(",")
    for row in rows:
        if row not in ROWS:
            fail(f"unknown row '{row}' in ROWS (expected some of {', '.join(ROWS)})")
    for path in [YOLOD, PEAK, INPUT] + [SIDES[s][1] for r in rows for s in ROWS[r]]:
        if not os.path.exists(path):
            fail(f"'{path}' is missing (run `make bench`, or set BUILD and SHARED)")
    sides = sorted({s for r in rows for s in ROWS[r]}, key=list(SIDES).index)

    # The load before the bench is other work, and at the end it includes our own threads.
    load_before = float(open("/proc/loadavg").read().split()[0])
    ceilings, peak = measure_ceilings()
    gflops = {}
    samples = {(side, t): [] for side in sides for t in THREADS}
    raw_path = os.path.join(os.path.dirname(OUT), "raw.jsonl")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(raw_path, "w") as raw:
        for t in THREADS:
            for rnd in range(1, ROUNDS + 1):
                line = []
                for side in sides:
                    result = run_side(side, t)
                    samples[(side, t)].append(result)
                    raw.write(json.dumps({"side": side, "threads": t, "round": rnd, **result}) + "\n")
                    if "gflops" in result:
                        gflops[SIDES[side][1]] = result["gflops"]
                    line.append(f"{side} {result['median_ms']:.2f}")
                print(f"threads {t} round {rnd}/{ROUNDS}: " + ", ".join(line) + " ms", file=sys.stderr)

    date = datetime.date.today().isoformat()
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    lines = [
        f"yolod against ONNX Runtime, {date}, {cpu_model()}, load average at the end "
        f"{load}. {ROUNDS} alternating rounds of "
        f"{RUNS} timed runs per side ({WARMUP} warm-up runs excluded); median of the round "
        f"medians, minimum of the round minimums; ratio = yolod median / ORT median; round ratio = "
        f"median over rounds of the same ratio within a round. Ceiling "
        f"shares: model GFLOPs (2 per multiply-add of direct convolution, so Winograd layers can "
        f"take a share past 100%) / median time / bench/peak ceiling at the same threads (fp32: "
        f"{peak['fp32_isa']} FMA; int8: {peak['int8_isa'] or 'absent'} vpdpbusd).",
        "",
        "| yolod model | ORT model | threads | yolod median ms | yolod min ms | ORT median ms "
        "| ORT min ms | ratio | round ratio | yolod % of ceiling | ORT % of ceiling |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in THREADS:
        for row in rows:
            ours, theirs = ROWS[row]
            o_med = statistics.median(r["median_ms"] for r in samples[(ours, t)])
            o_min = min(r["min_ms"] for r in samples[(ours, t)])
            t_med = statistics.median(r["median_ms"] for r in samples[(theirs, t)])
            t_min = min(r["min_ms"] for r in samples[(theirs, t)])
            round_ratio = statistics.median(
                o["median_ms"] / r["median_ms"] for o, r in zip(samples[(ours, t)], samples[(theirs, t)]))
            flops = gflops[SIDES[ours][1]]
            o_ceiling = ceilings.get((SIDES[ours][2], t))
            t_ceiling = ceilings.get((SIDES[theirs][2], t))
            lines.append(
                f"| {os.path.basename(SIDES[ours][1])} | {os.path.basename(SIDES[theirs][1])} | {t} | {o_med:.2f} | "
                f"{o_min:.2f} | {t_med:.2f} | {t_min:.2f} | {o_med / t_med:.2f} | {round_ratio:.2f} | "
                f"{share(flops, o_med, o_ceiling)} | {share(flops, t_med, t_ceiling)} |")
    lines += ["", "Ceilings from bench/peak (G ops/s, each thread's operations over its own CPU time):", "",
              "| kind | isa | threads | G ops/s | wall-clock G ops/s | ceiling |",
              "|---|---|---|---|---|---|"]
    for r in peak["results"]:
        lines.append(f"| {r['kind']} | {r['isa']} | {r['threads']} | {r['gops']:.1f} | "
                     f"{r['wall_gops']:.1f} | {'yes' if r['ceiling'] else 'no'} |")
    lines += ["", "Model GFLOPs (2 per multiply-add): " +
              ", ".join(f"{os.path.basename(m)} {g:.2f}" for m, g in gflops.items()), ""]
    text = "\n".join(lines)
    with open(OUT, "w") as f:
        f.write(text)
    if load_before > 0.5 * (os.cpu_count() or 1):
        text += (f"\nWarning: the load average was {load_before:.2f} on {os.cpu_count()} CPUs before "
                 "the bench began, so other processes shared the cores and the ratios above are "
                 "unreliable (ONNX Runtime's threads suffer more than yolod's); rerun on a quiet "
                 "machine.\n")
    print(text)
    print(f"written to {OUT}; per-run JSON in {raw_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
