// BullMQ's side of benchmarks/bench_wait_latency.py (run by it with NODE_PATH set to a bullmq
// install in .cache/; not meant to be run by hand).
//
//   node bullmq_wait.js work <redis-url> <queue>
//       one Worker, concurrency 1, whose processor returns the time it ends (ms, the
//       machine's monotonic clock); runs until killed
//   node bullmq_wait.js wait <redis-url> <queue> <count>
//       <count> times, one after the other: add a job, await job.waitUntilFinished(queueEvents)
//       (BullMQ's completion event: QueueEvents blocks on the queue's events stream), note when
//       it returned; prints {"latencies_ms": [woken - job end, ...]}
'use strict';

const { Queue, QueueEvents, Worker } = require('bullmq');

function connection(url) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port), db: Number(u.pathname.slice(1) || 0), maxRetriesPerRequest: null };
}

// CLOCK_MONOTONIC (libuv's hrtime): one clock for every process of the machine, so the
// worker's and the waiter's readings compare (performance.timeOrigin differs per process)
const now = () => Number(process.hrtime.bigint()) / 1e6;

async function work(url, name) {
  const worker = new Worker(name, async () => now(), { connection: connection(url), concurrency: 1 });
  await worker.waitUntilReady();
  process.stdout.write('ready\n');
  await new Promise(() => {});  // until killed
}

async function wait(url, name, count) {
  const queue = new Queue(name, { connection: connection(url) });
  const events = new QueueEvents(name, { connection: connection(url) });
  await queue.waitUntilReady();
  await events.waitUntilReady();
  const latencies = [];
  for (let i = 0; i < count; i++) {
    const job = await queue.add('stamp', {});
    const ended = await job.waitUntilFinished(events);
    latencies.push(now() - ended);
  }
  await events.close();
  await queue.close();
  return { latencies_ms: latencies };
}

async function main() {
  const [cmd, url, name, count] = process.argv.slice(2);
  if (cmd === 'work') return work(url, name);
  const out = await wait(url, name, Number(count));
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}

main().catch(err => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
