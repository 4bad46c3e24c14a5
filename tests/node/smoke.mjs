// Smoke test of the Node.js clients amqplib and @cloudamqp/amqp-client against a broker.
//
// Usage: node smoke.mjs amqp://guest:guest@127.0.0.1:5672/%2F NAME
// For each client: connect, open a channel, declare a queue, publish with confirms, consume
// every message back, then close the connection while publishes are still in flight (the
// close must complete, not hang or fail with EPIPE/ECONNRESET). Prints one "ok <client>"
// line per client and exits 0; any failure or a stuck step exits 1 with the reason.
import amqplib from "amqplib";
import { AMQPClient } from "@cloudamqp/amqp-client";

const [url, name] = process.argv.slice(2);
const COUNT = 200;
const IN_FLIGHT = 2000;

function deadline(ms, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

async function step(what, promise, ms = 5000) {
  const limit = deadline(ms, what);
  try {
    return await Promise.race([promise, limit.promise]);
  } finally {
    limit.cancel();
  }
}

async function withAmqplib() {
  const queue = `${name}-amqplib`;
  const conn = await step("amqplib connect", amqplib.connect(url));
  const errors = [];
  conn.on("error", (error) => errors.push(error));
  const ch = await step("amqplib channel", conn.createConfirmChannel());
  await step("amqplib declare", ch.assertQueue(queue, { autoDelete: false }));
  const received = [];
  const all = new Promise((resolve) => {
    ch.consume(queue, (msg) => {
      if (msg === null) return; // basic.cancel from the broker: the queue was deleted
      received.push(msg.content.toString());
      ch.ack(msg);
      if (received.length === COUNT) resolve();
    });
  });
  for (let i = 0; i < COUNT; i++) ch.sendToQueue(queue, Buffer.from(`m${i}`), { persistent: true });
  await step("amqplib confirms", ch.waitForConfirms());
  await step("amqplib consume", all);
  if (received[0] !== "m0" || received[COUNT - 1] !== `m${COUNT - 1}`) {
    throw new Error(`amqplib: out of order: ${received.slice(0, 3)}`);
  }
  await step("amqplib delete", ch.deleteQueue(queue));
  // Close with publishes still queued in the client and on the wire.
  const busy = await step("amqplib channel 2", conn.createChannel());
  for (let i = 0; i < IN_FLIGHT; i++) busy.publish("amq.fanout", "", Buffer.alloc(512));
  await step("amqplib close with publishes in flight", conn.close());
  if (errors.length) throw new Error(`amqplib: ${errors[0]}`);
  console.log("ok amqplib");
}

async function withAmqpClient() {
  const queueName = `${name}-amqp-client`;
  const client = new AMQPClient(url);
  const conn = await step("amqp-client connect", client.connect());
  const ch = await step("amqp-client channel", conn.channel());
  await step("amqp-client confirm", ch.confirmSelect());
  const q = await step("amqp-client declare", ch.queue(queueName, { autoDelete: false }));
  const received = [];
  let done;
  const all = new Promise((resolve) => (done = resolve));
  await step(
    "amqp-client subscribe",
    q.subscribe({ noAck: false }, async (msg) => {
      received.push(msg.bodyToString());
      await msg.ack();
      if (received.length === COUNT) done();
    }),
  );
  const confirms = [];
  for (let i = 0; i < COUNT; i++) confirms.push(q.publish(`m${i}`, { deliveryMode: 2 }));
  await step("amqp-client confirms", Promise.all(confirms));
  await step("amqp-client consume", all);
  if (received[0] !== "m0" || received[COUNT - 1] !== `m${COUNT - 1}`) {
    throw new Error(`amqp-client: out of order: ${received.slice(0, 3)}`);
  }
  await step("amqp-client delete", q.delete());
  const busy = await step("amqp-client channel 2", conn.channel());
  const pending = [];
  for (let i = 0; i < IN_FLIGHT; i++) {
    pending.push(busy.basicPublish("amq.fanout", "", new Uint8Array(512)).catch(() => {}));
  }
  await step("amqp-client close with publishes in flight", conn.close());
  console.log("ok amqp-client");
}

try {
  await withAmqplib();
  await withAmqpClient();
  process.exit(0);
} catch (error) {
  console.error(`FAILED: ${error.stack || error}`);
  process.exit(1);
}
