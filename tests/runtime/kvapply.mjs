// Apply writes and deletes to local KV (Miniflare, the storage `wrangler kv --local` reads), binary-safe.
// One JSON request a line on stdin, one JSON answer a line on stdout, so the caller can confirm each batch:
//   {"op":"put","pairs":[{"key":"k","value":"<base64>","base64":true,"metadata":{...}}]}
//   {"op":"delete","keys":["k"]}
//     -> {"ok":true,"n":1}
//   {"op":"get","key":"k"} -> {"ok":true,"value":"<base64>"|null}
//   {"op":"list","prefix":"pz1:","cursor":""} -> {"ok":true,"keys":[{"name","metadata"}],"cursor":"..."|null}
// Usage: node tests/runtime/kvapply.mjs [--persist .wrangler/state]
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { openLocalKV } from "./kvseed.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const pi = process.argv.indexOf("--persist");
const persist = path.resolve(root, pi > 0 ? process.argv[pi + 1] : ".wrangler/state");
const local = await openLocalKV(root, persist);
const kv = local.kv;
console.log(JSON.stringify({ ready: true }));
for await (const line of readline.createInterface({ input: process.stdin })) {
  try {
    const req = JSON.parse(line);
    if (req.op === "put") {
      await local.putMany(req.pairs);
      console.log(JSON.stringify({ ok: true, n: req.pairs.length }));
    } else if (req.op === "get") {
      const value = await kv.get(req.key, "arrayBuffer");
      console.log(JSON.stringify({ ok: true, value: value === null ? null : Buffer.from(value).toString("base64") }));
    } else if (req.op === "list") {
      const page = await kv.list({ prefix: req.prefix, cursor: req.cursor || undefined, limit: 1000 });
      console.log(JSON.stringify({ ok: true, keys: page.keys.map((k) => ({ name: k.name, metadata: k.metadata ?? null })),
                                   cursor: page.list_complete ? null : page.cursor }));
    } else if (req.op === "delete") {
      await local.deleteMany(req.keys);
      console.log(JSON.stringify({ ok: true, n: req.keys.length }));
    } else console.log(JSON.stringify({ ok: false, error: `unknown op ${req.op}` }));
  } catch (err) {
    console.log(JSON.stringify({ ok: false, error: String(err.message || err) }));
  }
}
await local.dispose();
