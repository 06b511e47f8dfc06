// Offline edge runtime: serves worker/entry.py over HTTP on 127.0.0.1 with only real parts.
//
//   real: Pyodide 0.28 (npm; the python_workers_20250116 line), the Workers Python SDK
//         (workers-runtime-sdk from PyPI, pinned in pyproject.toml), Miniflare's KV (persisted where
//         `wrangler kv ... --local` reads and writes), Miniflare's Queues (batching, retries with delays,
//         the dead-letter queue), the module set of `wrangler deploy --dry-run`, and wrangler's own reading
//         of wrangler.toml into Miniflare options (vars, KV, queue producers and consumers).
//   glue (this file, kept minimal): two small JS modules that exist only inside workerd
//         (_cloudflare_compat_flags, _pyodide_entrypoint_helper), a Node HTTP front turning requests
//         into `Request`s for the entrypoint's fetch, ctx.waitUntil, and the queue bridge: Miniflare
//         delivers each batch to a one-handler JS consumer inside workerd (QUEUE_BRIDGE below), which hands
//         it to the Python entrypoint's `queue` here and applies its ack/retry calls to the real messages.
//   stand-in: msgpack's pure-Python fallback (Pyodide's compiled msgpack is fetched from a CDN at run
//         time, unreachable offline). It is slower, so timings taken here are an upper bound.
//
// Usage: node tests/runtime/edge.mjs [--port 8787] [--persist .wrangler/state] [--seed kv-seed/out/kv.json]
//        [--vars-file .dev.vars] [--var NAME=VALUE ...]
//        [--max-retries N] [--batch-timeout S]   (tests: the event queue's retries, every consumer's wait)
//        [--config wrangler.toml] [--bundle DIR] [--options FILE | --write-options FILE]
// Prints "ready http://127.0.0.1:PORT" on stdout when it accepts requests.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { loadWorkerPython, writeBundle } from "./pyodide.mjs";
import { kvNamespaceId, loadSeed, proxyWriter } from "./kvseed.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const args = parseArgs(process.argv.slice(2));
const PORT = Number(args.port ?? 8787);
const PERSIST = path.resolve(ROOT, args.persist ?? ".wrangler/state");
// wrangler's own translation of wrangler.toml into Miniflare options, as `wrangler dev` does it.
// (--config names another file, for tests of its [vars]; the bundle is always the project's.
// --options: the part used here, as `--write-options FILE` wrote it: importing wrangler takes a second, which
// tests starting many runtimes of one wrangler.toml pay once.)
const fromToml = args.options ? JSON.parse(fs.readFileSync(args.options, "utf8")) : await tomlOptions();
if (args["write-options"]) {
  fs.writeFileSync(args["write-options"], JSON.stringify(fromToml), { mode: 0o600 });  // .dev.vars secrets in it
  process.exit(0);
}

async function tomlOptions() {
  const { unstable_getMiniflareWorkerOptions } = await import("wrangler");
  const { workerOptions: o } = unstable_getMiniflareWorkerOptions(path.resolve(ROOT, args.config ?? "wrangler.toml"));
  return { bindings: o.bindings, compatibilityDate: o.compatibilityDate, queueProducers: o.queueProducers,
           queueConsumers: o.queueConsumers };
}

function parseArgs(argv) {
  const out = { var: [] };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, "");
    if (name === "var") out.var.push(argv[i + 1]); else out[name] = argv[i + 1];
  }
  return out;
}

// .dev.vars: NAME=value lines, as wrangler reads them for local runs.
function dotenv(file) {
  const out = {};
  if (!file || !fs.existsSync(file)) return out;
  for (const raw of fs.readFileSync(file, "utf8").split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || !line.includes("=")) continue;
    const i = line.indexOf("=");
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim().replace(/^(["'])(.*)\1$/, "$2");
  }
  return out;
}
const vars = { ...fromToml.bindings, ...dotenv(path.resolve(ROOT, args["vars-file"] ?? ".dev.vars")) };
for (const kv of args.var) { const i = kv.indexOf("="); vars[kv.slice(0, i)] = kv.slice(i + 1); }

// 1. The deploy bundle, exactly: wrangler runs the [build] step and writes the upload (--bundle: one written
// that way already, e.g. once for a whole test session).
const bundleDir = args.bundle ? path.resolve(args.bundle) : writeBundle(path.join(PERSIST, "..", "bundle"));

// 2. Miniflare's KV, on the same persisted state `wrangler kv ... --local --persist-to` uses, and its
// Queues as wrangler.toml declares them. The consumer inside workerd is the bridge: it passes each batch to
// the Python `queue` handler (the PYTHON_QUEUE service, served by this process) and applies its verdicts.
const QUEUE_BRIDGE = `
export default {
  fetch() { return new Response(null, { status: 404 }) },
  async queue(batch, env) {
    const messages = batch.messages.map((m) => ({ id: m.id, timestamp: m.timestamp.getTime(), body: m.body,
                                                 attempts: m.attempts }));
    const res = await env.PYTHON_QUEUE.fetch("http://python/queue", { method: "POST",
                                              body: JSON.stringify({ queue: batch.queue, messages }) });
    const { verdicts, threw } = await res.json();
    for (const m of batch.messages) {
      const v = verdicts[m.id];
      if (v?.retry) m.retry(v.delaySeconds === undefined ? undefined : { delaySeconds: v.delaySeconds });
      else if (v?.ack) m.ack();
    }
    if (threw) throw new Error("the queue handler threw: every message it did not ack is retried");
  },
};`;
const consumers = structuredClone(fromToml.queueConsumers ?? {});
const eventsQueue = fromToml.queueProducers?.EVENTS?.queueName;
if (args["max-retries"] !== undefined && consumers[eventsQueue]) consumers[eventsQueue].maxRetries = Number(args["max-retries"]);
if (args["batch-timeout"] !== undefined) for (const c of Object.values(consumers)) c.maxBatchTimeout = Number(args["batch-timeout"]);
let pythonQueue = null;  // set once Pyodide is up; Miniflare delivers nothing before a message is sent
const mf = new Miniflare({
  modules: true, script: QUEUE_BRIDGE, compatibilityDate: fromToml.compatibilityDate,
  kvNamespaces: { PERSONALIZATION: kvNamespaceId(ROOT) }, kvPersist: path.join(PERSIST, "v3", "kv"),
  queueProducers: fromToml.queueProducers, queueConsumers: consumers,
  serviceBindings: { PYTHON_QUEUE: async (request) => Response.json(await pythonQueue(await request.json())) },
});
const kv = await mf.getKVNamespace("PERSONALIZATION");
if (args.seed) await loadSeed(proxyWriter(kv), path.resolve(ROOT, args.seed));

// The binding as workerd hands it to Python: an object whose constructor is named KvNamespace, so the
// SDK's env wrapper treats it exactly as in production. PZ_RUNTIME_FAULT=kv makes every read fail, to
// test the KV-outage path end to end.
class KvNamespace {
  constructor(inner) { this.inner = inner; }
  get(key, type) {
    if (process.env.PZ_RUNTIME_FAULT === "kv") return Promise.reject(new Error("injected KV outage"));
    return this.inner.get(key, type);
  }
  // Miniflare's proxy wants a view that owns its buffer; a view into Pyodide's heap does not. Copy.
  put(key, value, options) {
    return this.inner.put(key, ArrayBuffer.isView(value) ? value.slice() : value, options);
  }
}
// The queue producer as workerd hands it to Python (constructor named WorkerQueue, as the SDK expects).
// PZ_RUNTIME_FAULT=queue makes every send fail, to test the "not accepted" path end to end.
class WorkerQueue {
  constructor(inner) { this.inner = inner; }
  send(body, options) {
    if (process.env.PZ_RUNTIME_FAULT === "queue") return Promise.reject(new Error("injected queue outage"));
    return this.inner.send(body, options);
  }
  sendBatch(messages, options) {
    if (process.env.PZ_RUNTIME_FAULT === "queue") return Promise.reject(new Error("injected queue outage"));
    return this.inner.sendBatch(messages, options);
  }
}
const env = { ...vars, PERSONALIZATION: new KvNamespace(kv) };
if (eventsQueue) env.EVENTS = new WorkerQueue(await mf.getQueueProducer("EVENTS"));

// 3. Pyodide with the SDK, msgpack and the bundle's modules.
const py = await loadWorkerPython({ bundleDir, env });
const [dispatch, dispatchQueue] = await py.runPythonAsync(`
import entry, workers
async def dispatch(js_request, ctx, env):
    response = await entry.Default(ctx, env).fetch(workers.Request(js_request))
    return response.js_object
async def dispatch_queue(js_batch, ctx, env):
    await entry.Default(ctx, env).queue(js_batch)
[dispatch, dispatch_queue]
`).then((p) => p.toJs());

// The batch as the Python handler sees it (MessageBatch / Message: queue, messages, id, timestamp, body,
// attempts, ack(), retry({delaySeconds}), ackAll(), retryAll()); its calls become the bridge's verdicts.
class Message {
  constructor(m, verdicts) {
    Object.assign(this, { id: m.id, timestamp: new Date(m.timestamp), body: m.body, attempts: m.attempts });
    this.verdicts = verdicts;
  }
  ack() { this.verdicts[this.id] = { ack: true }; }
  retry(options) { this.verdicts[this.id] = { retry: true, delaySeconds: options?.delaySeconds }; }
}
class MessageBatch {
  constructor(queue, messages) { this.queue = queue; this.messages = messages; }
  ackAll() { for (const m of this.messages) m.ack(); }
  retryAll(options) { for (const m of this.messages) m.retry(options); }
}
pythonQueue = async ({ queue, messages }) => {
  const verdicts = {};
  const batch = new MessageBatch(queue, messages.map((m) => new Message(m, verdicts)));
  const pending = [];
  const ctx = { waitUntil: (p) => pending.push(Promise.resolve(p)), passThroughOnException() {} };
  try {
    await dispatchQueue(batch, ctx, env);
  } catch (err) {
    console.error("queue handler error:", err);
    return { verdicts, threw: true };
  } finally {
    await Promise.allSettled(pending);
  }
  return { verdicts, threw: false };
};

// A request's body as a stream read on demand. Cancelled (the worker answered without reading it all, e.g. a
// 413), the rest is read and dropped rather than the connection reset, so the answer reaches the client.
function bodyStream(req) {
  let dropped = false;
  return new ReadableStream({
    start(controller) {
      req.on("data", (chunk) => {
        if (dropped) return;
        controller.enqueue(new Uint8Array(chunk));
        if (controller.desiredSize <= 0) req.pause();
      });
      req.on("end", () => { if (!dropped) controller.close(); });
      req.on("error", (err) => { if (!dropped) controller.error(err); });
    },
    pull() { req.resume(); },
    cancel() { dropped = true; req.resume(); },
  }, { highWaterMark: 4 });
}

// 4. The HTTP front (HTTP/1.1 keep-alive, bodies streamed both ways as workerd does).
const server = http.createServer(async (req, res) => {
  const pending = [];
  // Like workerd, adopt the thenable at once (Promise.resolve calls its then in a microtask).
  const ctx = { waitUntil: (p) => pending.push(Promise.resolve(p)), passThroughOnException() {} };
  const reply = (status, code, message) => {
    res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store",
                            "x-content-type-options": "nosniff" });
    res.end(JSON.stringify({ error: { code, message } }));
  };
  // Like Cloudflare's front, only origin-form targets reach the worker ("*", "http://x/...": 400).
  if (!req.url.startsWith("/") || req.url.startsWith("//")) return reply(400, "bad_request", "bad request target");
  try {
    const headers = new Headers();
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
    // Like Cloudflare's front: the connecting address, whatever the client claimed.
    headers.set("cf-connecting-ip", req.socket.remoteAddress ?? "");
    const hasBody = !["GET", "HEAD"].includes(req.method);
    // Cloudflare's request.cf, which cannot be had offline: filled from cf-ipcountry, cf-region-code and
    // cf-timezone request headers (local only: so geo targeting can be tried with curl and tested end to end).
    const cf = {};
    for (const [header, field] of [["cf-ipcountry", "country"], ["cf-region-code", "regionCode"],
                                   ["cf-timezone", "timezone"]]) {
      if (headers.has(header)) cf[field] = headers.get(header);
    }
    let request;
    try {
      // The body streams in as it arrives, as workerd passes it (a proxied upload is never held whole).
      request = new Request(`http://127.0.0.1:${server.address().port}${req.url}`,
        { method: req.method, headers, body: hasBody ? bodyStream(req) : undefined, duplex: "half" });
    } catch {
      // A method fetch refuses to carry (TRACE, CONNECT, TRACK): like Cloudflare's front, the worker never sees it.
      return reply(501, "not_implemented", "method not supported");
    }
    Object.defineProperty(request, "cf", { value: cf });
    const response = await dispatch(request, ctx, env);
    const out = {};
    response.headers.forEach((v, k) => { if (k !== "set-cookie") out[k] = v; });
    const cookies = response.headers.getSetCookie();
    if (cookies.length) out["set-cookie"] = cookies;
    // Streamed as the worker writes it (an injected page's head goes out before its fragments exist).
    res.writeHead(response.status, out);
    if (response.body && req.method !== "HEAD") {
      // Like workerd: a client that goes away cancels the body's stream (the worker sees its writer error).
      const reader = response.body.getReader();
      res.on("close", () => { if (!res.writableFinished) reader.cancel(new Error("client went away")).catch(() => {}); });
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        res.write(value);
      }
    }
    res.end();
  } catch (err) {
    if (res.headersSent) {
      // A body the worker cut (its stream errored): the connection is aborted, as workerd does, so the client
      // sees a short page as incomplete, never as a whole one.
      console.error("response body errored:", String(err));
      res.destroy();
    } else {
      // Only the glue can fail here; the worker itself never throws for bad input or bad data. The details
      // go to the log, never into the body.
      console.error("runtime error:", err);
      reply(500, "internal_error", "internal error");
    }
  }
  for (const r of await Promise.allSettled(pending)) if (r.status === "rejected") console.error("waitUntil:", r.reason);
});
server.on("error", async (err) => {
  if (err.code !== "EADDRINUSE") throw err;
  console.error(`error: port ${PORT} on 127.0.0.1 is already in use; stop what uses it, or pick another: ` +
                `make dev PORT=${PORT + 10} (this runtime: --port)`);
  await mf.dispose();
  process.exit(2);
});
server.listen(PORT, "127.0.0.1", () => console.log(`ready http://127.0.0.1:${server.address().port}`));
const stop = async () => { server.close(); await mf.dispose(); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
