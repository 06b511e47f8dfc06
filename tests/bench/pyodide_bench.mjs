// Times the benchmark inside Pyodide: (1) the core's request path, (2) the whole worker fetch through the
// real SDK (Request in, Response out) with KV values already in memory. Prints JSON on stdout.
// Usage: node tests/bench/pyodide_bench.mjs SPEC.json N WARMUP
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT, loadWorkerPython, writeBundle } from "../runtime/pyodide.mjs";

const [specPath, n, warmup] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const spec = JSON.parse(fs.readFileSync(specPath, "utf8"));
const values = new Map(Object.entries(spec.records).map(([k, v]) => [k, Buffer.from(v, "base64")]));
// In-memory stand-in for the binding, named like workerd's so the SDK wraps it as in production.
class KvNamespace {
  async get(key) {
    const b = values.get(key);
    return b === undefined ? null : b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  }
}
// The event queue's producer: accepts at once, as a healthy queue does (the send is awaited by the worker).
class WorkerQueue {
  constructor() { this.sent = 0; }
  async send() { this.sent++; }
}
const env = { PZ_SIGNING_KEYS: spec.key, PERSONALIZATION: new KvNamespace(), EVENTS: new WorkerQueue() };
const bundleDir = writeBundle(path.join(fs.mkdtempSync(path.join(os.tmpdir(), "pz-bench-")), "bundle"));
const py = await loadWorkerPython({ bundleDir, env });
py.FS.writeFile("/session/core_bench.py", fs.readFileSync(path.join(ROOT, "tests/bench/core_bench.py")));
py.FS.writeFile("/session/spec.json", fs.readFileSync(specPath));
py.runPython(`import sys; sys.path.insert(0, "/session")`);
const core = (await py.runPythonAsync(`
import core_bench
await core_bench.run_core("/session/spec.json", ${n}, ${warmup})
`)).toJs();

const fetchOne = await py.runPythonAsync(`
import entry, workers, core_bench
_records, _users, _key = core_bench.load("/session/spec.json")
JAR = core_bench.cookies(_users, _key)
JAR_S = core_bench.session_cookies(_users, _key, _records)
async def fetch_one(js_request, ctx, env):
    response = await entry.Default(ctx, env).fetch(workers.Request(js_request))
    return response.js_object
fetch_one
`);
const jar = py.globals.get("JAR").toJs();
const jarSession = py.globals.get("JAR_S").toJs();
const ctx = { waitUntil() {}, passThroughOnException() {} };
const worker = [];
for (let i = 0; i < warmup + n; i++) {
  const request = new Request(`http://127.0.0.1/v1/page?slots=hero,home,recent`,
    { headers: { cookie: jar[i % jar.length] } });
  const t0 = performance.now();
  const response = await fetchOne(request, ctx, env);
  const t1 = performance.now();
  if (response.status !== 200 || !response.headers.get("x-pz-tier").includes("home=user"))
    throw new Error(`unexpected answer ${response.status} ${response.headers.get("x-pz-tier")}`);
  if (i >= warmup) worker.push(t1 - t0);
}
// The same page with a session state (pz_s: 4 items just viewed, 1 in the cart), interleaved with the page
// without one so both see the same isolate and heap: the cost of real time on the read path.
const withSession = [], withoutSession = [];
for (let i = 0; i < warmup + n; i++) {
  for (const [cookieJar, out] of [[jarSession, withSession], [jar, withoutSession]]) {
    const request = new Request(`http://127.0.0.1/v1/page?slots=hero,home,recent`,
      { headers: { cookie: cookieJar[i % cookieJar.length] } });
    const t0 = performance.now();
    const response = await fetchOne(request, ctx, env);
    const t1 = performance.now();
    if (response.status !== 200 || (out === withSession && !response.headers.get("x-pz-tier").includes("recent=user")))
      throw new Error(`unexpected answer ${response.status} ${response.headers.get("x-pz-tier")}`);
    if (i >= warmup) out.push(t1 - t0);
  }
}

// POST /v1/events with a beacon of 10 events (views, an impression, a click, a cart add), interleaved with
// nothing else: the worker's own time per beacon, through the same SDK fetch path as the page above.
const beacon = [];
const now = Date.now() / 1000;
for (let i = 0; i < warmup + n; i++) {
  const events = [];
  for (let j = 0; j < 7; j++) events.push({ id: `e${i}-${j}`, type: "view", ts: now, item: `p0000${j + 1}` });
  events.push({ id: `e${i}-7`, type: "impression", ts: now, slot: "home", tier: "user", generation: "g1",
                items: ["p00001", "p00002", "p00003", "p00004", "p00005", "p00006"] });
  events.push({ id: `e${i}-8`, type: "click", ts: now, slot: "home", item: "p00002", position: 1 });
  events.push({ id: `e${i}-9`, type: "add_to_cart", ts: now, item: "p00002", quantity: 1 });
  const request = new Request("http://127.0.0.1/v1/events", { method: "POST", body: JSON.stringify({ events }),
    headers: { cookie: jar[i % jar.length], "content-type": "text/plain;charset=UTF-8",
               "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0" } });
  const t0 = performance.now();
  const response = await fetchOne(request, ctx, env);
  const t1 = performance.now();
  const body = await response.json();
  if (response.status !== 202 || body.stored !== 10) throw new Error(`unexpected beacon answer ${response.status}`);
  if (i >= warmup) beacon.push(t1 - t0);
}
if (env.EVENTS.sent !== warmup + n) throw new Error("not every beacon was queued");
console.log(JSON.stringify({ core, worker, beacon, withSession, withoutSession }));
