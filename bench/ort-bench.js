// Times ONNX Runtime (CPU provider) on one model and one input tensor, the
// way `yolod bench --json` times yolod, and prints one JSON line.
// Usage: node ort-bench.js MODEL.onnx INPUT.f32 THREADS RUNS [WARMUP]
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, inputPath, threadsText, runsText, warmupText] = process.argv.slice(2);
  if (!model || !inputPath || !threadsText || !runsText) {
    console.error('usage: node ort-bench.js MODEL.onnx INPUT.f32 THREADS RUNS [WARMUP]');
    process.exit(2);
  }
  const threads = Number(threadsText);
  const runs = Number(runsText);
  const warmup = warmupText === undefined ? 3 : Number(warmupText);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const bytes = fs.readFileSync(inputPath);
  const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const size = Math.round(Math.sqrt(data.length / 3));
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, [1, 3, size, size])};

  for (let i = 0; i < warmup; i++) await session.run(feeds);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  const median = times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
  console.log(JSON.stringify({model, threads, runs, median_ms: median, min_ms: times[0]}));
}

main().catch((e) => {
  console.error(`ort-bench: ${e.message}`);
  process.exit(1);
});
