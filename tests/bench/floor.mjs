// The hot path against its floor, side by side in one Pyodide (issue 12), and the worker's cold start.
//
// Four Workers on the same SDK, each called the way the runtime calls the entrypoint (a JS Request in,
// `WorkerEntrypoint.fetch`, the Response's JS object out), with KV values held in memory by a binding named
// like workerd's (so the SDK wraps it as in production):
//   constant  returns a constant body of the page's size with the page's headers: the floor of any answer;
//   kv-echo   reads the keys the page worker itself reads from KV for that request (recorded once per kind of
//             request, in a steady isolate) and returns their bytes: the floor of a worker that must read
//             them;
//   kv-decode kv-echo, and each value decoded as the page decodes it (codec.decode: the v1 envelope with
//             pure-Python msgpack, a packed payload's JSON) but not parsed into records nor used: the floor of a
//             worker that must read this contract's records;
//   page      the project's worker (worker/entry.py).
// The floors are as lean as the page where they do the same thing: they answer through the page's own
// `entry.respond`, kv-echo reads through the page's KV port and its header straight from the JS Headers.
// Requests of every kind are interleaved, round after round, so all see the same isolate and heap.
// Cold start: in fresh processes (Pyodide from the same baseline snapshot the offline runtime uses), the time
// to `import workers` alone against the time to `import workers`, import the bundle and answer one page.
//
// Usage: node tests/bench/floor.mjs SPEC.json N WARMUP [--cold K]   (prints JSON on stdout)
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT, loadWorkerPython, writeBundle } from "../runtime/pyodide.mjs";

const SELF = fileURLToPath(import.meta.url);
const [specPath, n, warmup] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const coldArg = process.argv.indexOf("--cold");
const colds = coldArg > 0 ? Number(process.argv[coldArg + 1]) : 0;
const spec = JSON.parse(fs.readFileSync(specPath, "utf8"));
const values = new Map(Object.entries(spec.records).map(([k, v]) => [k, Buffer.from(v, "base64")]));

class KvNamespace {
  constructor() { this.reads = null; }
  async get(key) {
    if (this.reads) this.reads.push(key);
    const b = values.get(key);
    return b === undefined ? null : b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  }
}
class WorkerQueue { async send() {} }

// -- cold start (a child process per measurement: nothing warm but the files on disk) -------------------------
if (process.argv.includes("--child-cold")) {
  const bundleDir = process.argv[process.argv.indexOf("--child-cold") + 1];
  const env = { PZ_SIGNING_KEYS: spec.key, PERSONALIZATION: new KvNamespace(), EVENTS: new WorkerQueue() };
  const py = await loadWorkerPython({ bundleDir, env });
  const t0 = performance.now();
  await py.runPythonAsync("import workers");
  const t1 = performance.now();
  const answer = await py.runPythonAsync(`
import entry
entry.Default(None, None)  # the class exists
`).then(() => performance.now());
  const user = spec.users[0];
  const cookie = py.runPython(`
import time
from personalizer.identity import sign
"pz_uid=" + sign("pz_uid", ${JSON.stringify(user)}, int(time.time()), ${JSON.stringify(spec.key)}.encode())`);
  const fetchOne = await py.runPythonAsync(`
import entry, workers
async def fetch_one(js_request, ctx, env):
    return (await entry.Default(ctx, env).fetch(workers.Request(js_request))).js_object
fetch_one`);
  const ctx = { waitUntil() {}, passThroughOnException() {} };
  const response = await fetchOne(new Request("http://127.0.0.1/v1/page?slots=hero,home,recent",
                                              { headers: { cookie } }), ctx, env);
  const t2 = performance.now();
  if (response.status !== 200) throw new Error(`cold answer ${response.status}`);
  console.log(JSON.stringify({ importWorkers: t1 - t0, importBundle: answer - t1, firstAnswer: t2 - t0 }));
  process.exit(0);
}

const bundleDir = writeBundle(path.join(fs.mkdtempSync(path.join(os.tmpdir(), "pz-floor-")), "bundle"));
const bundleBytes = fs.readdirSync(bundleDir, { recursive: true })
  .filter((f) => f.endsWith(".py")).reduce((s, f) => s + fs.statSync(path.join(bundleDir, f)).size, 0);

const kvBinding = new KvNamespace();
const env = { PZ_SIGNING_KEYS: spec.key, PERSONALIZATION: kvBinding, EVENTS: new WorkerQueue() };
const py = await loadWorkerPython({ bundleDir, env });
py.FS.writeFile("/session/core_bench.py", fs.readFileSync(path.join(ROOT, "tests/bench/core_bench.py")));
py.FS.writeFile("/session/spec.json", fs.readFileSync(specPath));
py.runPython(`import sys; sys.path.insert(0, "/session")`);
const handlers = await py.runPythonAsync(`
import entry, workers, core_bench
from personalizer import codec, keys
from cf import KVBinding
from workers import WorkerEntrypoint

_records, _users, _key = core_bench.load("/session/spec.json")
JAR = core_bench.cookies(_users, _key)
JAR_S = core_bench.session_cookies(_users, _key, _records)
ITEMS = sorted(k.rsplit(":", 1)[1] for k in _records if ":item:" in k)
CONSTANT = {"body": b"", "headers": []}  # set from a real page answer below


class Constant(WorkerEntrypoint):
    async def fetch(self, request):
        return entry.respond(200, CONSTANT["headers"], CONSTANT["body"])  # answered as the page answers


class KVEcho(WorkerEntrypoint):
    decode = False  # KVDecode: each value also decoded as the page decodes it, and dropped

    async def fetch(self, request):
        kv = KVBinding(self.env.PERSONALIZATION)  # read as the worker's own KV port reads
        out = []
        # The header read straight from the JS Headers, as the page worker reads its own headers.
        for key in filter(None, request.js_object.headers.get("x-echo-keys").split(",")):
            raw = await kv.get(key) or b""
            if self.decode:
                kind = keys.parse(key)[0]
                codec.decode(raw, expect="profile" if kind == "visitor" else kind, key=key)
            out.append(raw)
        return entry.respond(200, (("content-type", "application/octet-stream"),), b"".join(out))


class KVDecode(KVEcho):
    decode = True


def make(cls):
    async def call(js_request, ctx, env):
        return (await cls(ctx, env).fetch(workers.Request(js_request))).js_object
    return call


def set_constant(body, headers):
    CONSTANT["body"], CONSTANT["headers"] = bytes(body.to_py()), [tuple(h) for h in headers.to_py()]


[make(Constant), make(KVEcho), make(KVDecode), make(entry.Default), set_constant]
`).then((p) => p.toJs());
const [constant, kvEcho, kvDecode, page, setConstant] = handlers;
const jar = py.globals.get("JAR").toJs();
const jarSession = py.globals.get("JAR_S").toJs();
const items = py.globals.get("ITEMS").toJs();
const ctx = { waitUntil() {}, passThroughOnException() {} };

// The kinds of request measured; `check` guards that each answered as meant (a tier that is not the
// personal one would measure a cheaper path).
const KINDS = [
  { name: "page hero,home,recent (JSON), signed customer", url: () => "/v1/page?slots=hero,home,recent",
    cookie: (i) => jar[i % jar.length], check: (r) => r.headers.get("x-pz-tier").includes("home=user") },
  { name: "page hero,home,recent (HTML), signed customer", url: () => "/v1/page?slots=hero,home,recent&format=html",
    cookie: (i) => jar[i % jar.length], check: (r) => r.headers.get("x-pz-tier").includes("home=user") },
  { name: "banner alone (slot hero), signed customer", url: () => "/v1/banner?slot=hero",
    cookie: (i) => jar[i % jar.length], check: (r) => r.status === 200 },
  { name: "item slot (also bought), signed customer",
    url: (i) => `/v1/recommendations?slot=item&item=${items[(i * 7) % items.length]}`,
    cookie: (i) => jar[i % jar.length], check: (r) => r.headers.get("x-pz-tier") === "item" },
  { name: "cart slot (complements), signed customer", url: () => "/v1/recommendations?slot=cart",
    cookie: (i) => jar[i % jar.length], check: (r) => r.status === 200 },
  { name: "page hero,home,recent, anonymous visitor (new id minted)", url: () => "/v1/page?slots=hero,home,recent",
    cookie: () => null, check: (r) => r.headers.get("x-pz-tier").includes("home=popular") },
  { name: "page hero,home,recent, with session state (pz_s)", url: () => "/v1/page?slots=hero,home,recent",
    cookie: (i) => jarSession[i % jarSession.length], check: (r) => r.headers.get("x-pz-tier").includes("recent=user") },
];

const request = (url, cookie, extra = {}) =>
  new Request(`http://127.0.0.1${url}`, { headers: { ...(cookie ? { cookie } : {}), ...extra } });

// The page's first answer sets the constant worker's body and headers (same size, same headers).
{
  const r = await page(request(KINDS[0].url(0), KINDS[0].cookie(0)), ctx, env);
  const body = new Uint8Array(await r.arrayBuffer());
  const headers = [];
  r.headers.forEach((v, k) => headers.push([k, v]));
  setConstant(body, headers);
}

const times = Object.fromEntries(KINDS.map((k) => [k.name, { page: [], echo: [], decode: [], constant: [], keys: 0 }]));
for (let i = 0; i < warmup + n; i++) {
  for (const kind of KINDS) {
    const url = kind.url(i), cookie = kind.cookie(i);
    const t = times[kind.name];
    // page, recording the keys it reads from KV (a warm isolate reads only what it does not cache)
    kvBinding.reads = [];
    let t0 = performance.now();
    const r = await page(request(url, cookie), ctx, env);
    let t1 = performance.now();
    const keys = kvBinding.reads;
    kvBinding.reads = null;
    if (r.status !== 200 || !kind.check(r)) throw new Error(`${kind.name}: ${r.status} ${r.headers.get("x-pz-tier")}`);
    if (i >= warmup) { t.page.push(t1 - t0); t.keys += keys.length; }
    // kv-echo of the same keys
    t0 = performance.now();
    const e = await kvEcho(request(url, cookie, { "x-echo-keys": keys.join(",") }), ctx, env);
    t1 = performance.now();
    if (e.status !== 200) throw new Error(`kv-echo: ${e.status}`);
    if (i >= warmup) t.echo.push(t1 - t0);
    // kv-decode of the same keys
    t0 = performance.now();
    const d = await kvDecode(request(url, cookie, { "x-echo-keys": keys.join(",") }), ctx, env);
    t1 = performance.now();
    if (d.status !== 200) throw new Error(`kv-decode: ${d.status}`);
    if (i >= warmup) t.decode.push(t1 - t0);
    // constant
    t0 = performance.now();
    const c = await constant(request(url, cookie), ctx, env);
    t1 = performance.now();
    if (c.status !== 200) throw new Error(`constant: ${c.status}`);
    if (i >= warmup) t.constant.push(t1 - t0);
  }
}
for (const t of Object.values(times)) t.keys /= n;

const cold = [];
for (let k = 0; k < colds; k++) {
  const out = execFileSync("node", [SELF, specPath, "0", "0", "--child-cold", bundleDir], { encoding: "utf8" });
  cold.push(JSON.parse(out.trim().split("\n").pop()));
}
console.log(JSON.stringify({ times, cold, bundleBytes }));
