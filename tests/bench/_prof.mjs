import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadWorkerPython, writeBundle } from "../runtime/pyodide.mjs";
const spec = JSON.parse(fs.readFileSync("/tmp/b/spec.json", "utf8"));
const values = new Map(Object.entries(spec.records).map(([k, v]) => [k, Buffer.from(v, "base64")]));
class KvNamespace { async get(key) { const b = values.get(key); return b === undefined ? null : b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength); } }
const env = { PZ_SIGNING_KEYS: spec.key, PERSONALIZATION: new KvNamespace() };
const bundleDir = writeBundle(path.join(fs.mkdtempSync(path.join(os.tmpdir(), "pz-x-")), "bundle"));
const py = await loadWorkerPython({ bundleDir, env });
py.FS.writeFile("/session/core_bench.py", fs.readFileSync("tests/bench/core_bench.py"));
py.FS.writeFile("/session/spec.json", fs.readFileSync("/tmp/b/spec.json"));
py.runPython(`import sys; sys.path.insert(0, "/session")`);
const anon = process.argv[2] === "anon";
const f = await py.runPythonAsync(`
import entry, workers, core_bench, cProfile, pstats, io
_records, _users, _key = core_bench.load("/session/spec.json")
JAR = core_bench.cookies(_users, _key)
PROF = cProfile.Profile()
async def one(js_request, ctx, env, profile):
    if profile: PROF.enable()
    r = await entry.Default(ctx, env).fetch(workers.Request(js_request))
    if profile: PROF.disable()
    return r.js_object
def report():
    s = io.StringIO(); pstats.Stats(PROF, stream=s).sort_stats("tottime").print_stats(25); return s.getvalue()
one`);
const jar = py.globals.get("JAR").toJs();
const ctx = { waitUntil() {}, passThroughOnException() {} };
for (let i = 0; i < 1200; i++) {
  const h = anon ? {} : { cookie: jar[i % jar.length] };
  await f(new Request("http://127.0.0.1/v1/page?slots=hero,home,recent", { headers: h }), ctx, env, i >= 200);
}
console.log(py.runPython("report()"));
