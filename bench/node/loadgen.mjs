// The Node.js amqplib load generator of `bench run --generator node` (bench/nodegen.py).
//
// One producer connection and one consumer connection in this one process, as the LavinMQ
// comparison was first made. Bodies carry a sequence number and a send time (one clock,
// performance.now(), for producer and consumer), so the consumer
// counts lost and duplicated messages and measures latency. Prints one JSON summary line on
// stdout (the keys of `bench run --json` that scripts/compare reads) and exits 0; a failure
// prints the summary with "errors" filled in and exits 1. amqplib comes from tests/node
// (`npm ci --prefix tests/node`).
//
// Usage: node loadgen.mjs '{"uri": ..., "queue": ..., ...}'   (see bench/nodegen.py)
import { createRequire } from "node:module";

const require = createRequire(new URL("../../tests/node/package.json", import.meta.url));
const amqplib = require("amqplib");

const cfg = JSON.parse(process.argv[2]);
const queues = cfg.fanout > 0
  ? Array.from({ length: cfg.fanout }, (_, i) => `${cfg.queue}-${i}`)
  : [cfg.queue];
const exchange = cfg.fanout > 0 ? `${cfg.queue}-x` : "";
const errors = [];
const now = () => performance.now(); // ms, double, one clock for producer and consumer
let t0 = now(); // reset when publishing starts
const sinceStart = (t) => (t - t0) / 1000;
const hardStop = Number(cfg.time_limit) * 1000;

// Latency histogram in 10 us buckets up to 10 s, then one overflow bucket.
const BUCKETS = 1_000_000;
const hist = new Uint32Array(BUCKETS + 1);
let maxLatency = 0;
function record(latencyMs) {
  const us10 = Math.floor(latencyMs * 100);
  hist[us10 < BUCKETS ? us10 : BUCKETS] += 1;
  if (latencyMs > maxLatency) maxLatency = latencyMs;
}
function percentile(p, total) {
  if (!total) return null;
  const want = Math.ceil((total * p) / 100);
  let seen = 0;
  for (let i = 0; i <= BUCKETS; i++) {
    seen += hist[i];
    if (seen >= want) return (i + 1) / 100; // ms
  }
  return null;
}

// One bitmap of sequence numbers per queue: lost = sent - distinct seen.
const seen = queues.map(() => new Uint8Array(1 << 20));
const distinct = queues.map(() => 0);
let duplicated = 0;
let received = 0;
let lastReceive = t0;
function mark(q, seq) {
  let map = seen[q];
  if (seq >= map.length * 8) {
    const bigger = new Uint8Array(Math.max(map.length * 2, (seq >> 3) + 1));
    bigger.set(map);
    seen[q] = map = bigger;
  }
  const bit = 1 << (seq & 7);
  if (map[seq >> 3] & bit) duplicated += 1;
  else {
    map[seq >> 3] |= bit;
    distinct[q] += 1;
  }
}

async function main() {
  const pconn = await amqplib.connect(cfg.uri);
  const cconn = await amqplib.connect(cfg.uri);
  for (const conn of [pconn, cconn]) conn.on("error", (e) => errors.push(String(e)));
  const setup = await pconn.createChannel();
  if (exchange) await setup.assertExchange(exchange, "fanout", { durable: cfg.persistent });
  for (const q of queues) {
    await setup.assertQueue(q, { durable: cfg.persistent, autoDelete: false });
    await setup.purgeQueue(q);
    if (exchange) await setup.bindQueue(q, exchange, "");
  }
  await setup.close();

  // Consumers: one channel per queue on the consumer connection.
  const consumerChannels = [];
  for (let qi = 0; qi < queues.length; qi++) {
    const ch = await cconn.createChannel();
    if (cfg.prefetch) await ch.prefetch(cfg.prefetch);
    let unacked = 0;
    await ch.consume(
      queues[qi],
      (msg) => {
        const body = msg.content;
        const t = now();
        record(t - body.readDoubleLE(8));
        mark(qi, body.readUInt32LE(0));
        received += 1;
        lastReceive = t;
        if (!cfg.auto_ack) {
          unacked += 1;
          if (unacked >= (cfg.multi_ack_every || 1)) {
            ch.ack(msg, unacked > 1);
            unacked = 0;
          }
        }
      },
      { noAck: cfg.auto_ack },
    );
    consumerChannels.push(ch);
  }

  // Producer.
  const pch = cfg.confirm ? await pconn.createConfirmChannel() : await pconn.createChannel();
  const body = Buffer.alloc(Math.max(16, cfg.size));
  const options = { persistent: cfg.persistent };
  const target = exchange || "";
  const key = exchange ? "" : queues[0];
  let sent = 0;
  let confirmed = 0;
  let nacked = 0;
  let outstanding = 0;
  let lastConfirm = t0;
  let wake = null;
  const wakeUp = () => {
    if (wake) {
      const w = wake;
      wake = null;
      w();
    }
  };
  pch.on("drain", wakeUp);
  t0 = now();
  lastReceive = lastConfirm = t0;
  const publishEndAt = t0 + cfg.duration * 1000;
  const perMs = cfg.rate > 0 ? cfg.rate / 1000 : 0;
  const onConfirm = (err) => {
    if (err) nacked += 1;
    else confirmed += 1;
    outstanding -= 1;
    lastConfirm = now();
    if (outstanding <= cfg.confirm / 2) wakeUp();
  };
  while (now() < publishEndAt && !errors.length) {
    let batch = 1000;
    if (perMs) {
      const due = Math.floor(sinceStart(now()) * 1000 * perMs);
      batch = due - sent;
      if (batch <= 0) {
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
    }
    let writable = true;
    for (let i = 0; i < batch && writable; i++) {
      if (cfg.confirm && outstanding >= cfg.confirm) break;
      body.writeUInt32LE(sent, 0);
      body.writeDoubleLE(now(), 8);
      if (cfg.confirm) {
        outstanding += 1;
        writable = pch.publish(target, key, body, options, onConfirm);
      } else {
        writable = pch.publish(target, key, body, options);
      }
      sent += 1;
    }
    if (!writable || (cfg.confirm && outstanding >= cfg.confirm)) {
      await new Promise((r) => {
        wake = r;
      });
    } else {
      await new Promise((r) => setImmediate(r));
    }
  }
  const publishEnd = now();
  const expected = sent * queues.length;

  // Drain: until everything arrived, nothing arrived for drain_timeout s, or the time limit.
  let last = -1;
  let lastChange = Date.now();
  const drainStart = Date.now();
  while (received < expected || (cfg.confirm && outstanding > 0)) {
    await new Promise((r) => setTimeout(r, 20));
    const progress = received + confirmed + nacked;
    if (progress !== last) {
      last = progress;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > cfg.drain_timeout * 1000) {
      errors.push(`stalled: ${expected - received} messages not delivered`);
      break;
    }
    if (Date.now() - drainStart > cfg.drain_max * 1000) {
      errors.push(`drain cap ${cfg.drain_max} s reached: ${expected - received} not delivered`);
      break;
    }
  }
  const drainSeconds = (Date.now() - drainStart) / 1000;
  const rate = (count, end) => {
    const span = sinceStart(end);
    return count && span > 0 ? Math.round((count / span) * 10) / 10 : 0;
  };
  const lost = queues.reduce((sum, _, qi) => sum + (sent - distinct[qi]), 0);
  const summary = {
    generator: "node-amqplib",
    publish_seconds: sinceStart(publishEnd),
    drain_seconds: drainSeconds,
    sent,
    sent_rate: rate(sent, publishEnd),
    confirmed,
    nacked,
    confirm_rate: cfg.confirm ? rate(confirmed, lastConfirm) : 0,
    received,
    receive_rate: rate(received, lastReceive),
    expected,
    lost,
    duplicated,
    latency_ms: {
      p50: percentile(50, received),
      p95: percentile(95, received),
      p99: percentile(99, received),
      max: received ? maxLatency : null,
    },
    errors,
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  try {
    const ch = await pconn.createChannel();
    for (const q of queues) await ch.deleteQueue(q);
    if (exchange) await ch.deleteExchange(exchange);
  } catch (e) {
    // Cleanup is best effort.
  }
  await Promise.allSettled([pconn.close(), cconn.close()]);
  return errors.length ? 1 : 0;
}

const limit = setTimeout(() => {
  errors.push(`time limit ${cfg.time_limit} s reached`);
  process.stdout.write(`${JSON.stringify({ generator: "node-amqplib", received, errors })}\n`);
  process.exit(1);
}, hardStop);
main().then(
  (code) => {
    clearTimeout(limit);
    process.exit(code);
  },
  (error) => {
    clearTimeout(limit);
    errors.push(String(error && error.stack ? error.stack : error));
    process.stdout.write(`${JSON.stringify({ generator: "node-amqplib", received, errors })}\n`);
    process.exit(1);
  },
);
