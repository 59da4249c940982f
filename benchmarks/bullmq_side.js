// BullMQ's side of benchmarks/bench_vs_bullmq.py (run by it with NODE_PATH set to the
// bullmq install in .cache/; not meant to be run by hand).
//
//   node bullmq_side.js add  <redis-url> <queue> <count> <kind> <id-prefix>
//       addBulk of <count> jobs (explicit ids <id-prefix><i> when a prefix is given) in
//       chunks of 1,000; prints {"seconds": ...} (the addBulk calls only)
//   node bullmq_side.js work <redis-url> <queue> <concurrency> <kind>
//       one Worker; runs until the queue is drained, closes (waits for active jobs), prints
//       {"executed": n} — how many times this process ran the processor
//
// <kind>: "noop" (returns at once) or "sleep50" (awaits a 50 ms timer, an I/O wait).
'use strict';

const { Queue, Worker } = require('bullmq');

function connection(url) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port), db: Number(u.pathname.slice(1) || 0), maxRetriesPerRequest: null };
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

async function add(url, name, count, kind, prefix) {
  const queue = new Queue(name, { connection: connection(url) });
  await queue.waitUntilReady();
  const chunk = 1000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i += chunk) {
    const jobs = [];
    for (let j = i; j < Math.min(count, i + chunk); j++) {
      jobs.push({ name: kind, data: { i: j }, opts: prefix ? { jobId: `${prefix}${j}` } : {} });
    }
    await queue.addBulk(jobs);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await queue.close();
  return { seconds };
}

async function work(url, name, concurrency, kind) {
  let executed = 0;
  const processor = kind === 'sleep50'
    ? async () => { executed++; await sleep(50); }
    : async () => { executed++; };
  const worker = new Worker(name, processor, { connection: connection(url), concurrency });
  await new Promise((resolve, reject) => {
    worker.on('drained', resolve);
    worker.on('error', reject);
  });
  await worker.close();
  return { executed };
}

async function main() {
  const [cmd, url, name, a, b, c] = process.argv.slice(2);
  const out = cmd === 'add' ? await add(url, name, Number(a), b, c) : await work(url, name, Number(a), b);
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}

main().catch(err => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
