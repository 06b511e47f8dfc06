// Load a wrangler bulk file ([{key, value, base64}]) into a KV binding, binary-safe. wrangler 4.86's
// `kv bulk put --local` corrupts binary values, so the seed goes through Miniflare's binding instead;
// `wrangler kv key get --local` reads the same bytes back.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

// The PERSONALIZATION namespace id in wrangler.toml: Miniflare and `wrangler kv --local` key their storage by it.
export function kvNamespaceId(root) {
  const toml = fs.readFileSync(path.join(root, "wrangler.toml"), "utf8");
  return toml.match(/binding\s*=\s*"PERSONALIZATION"\s*\n\s*(?:#.*\n\s*)*id\s*=\s*"([^"]+)"/)[1];
}

// Miniflare's proxy only accepts views that own their buffer; Node Buffers share a pool, so copy out.
export const toArrayBuffer = (b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
const BATCH = 1000;  // keys a request: a Worker's subrequest limit

// Writers of pairs in wrangler's bulk form ({key, value, base64?, metadata?}) to local KV; each has
// putMany(pairs), deleteMany(keys) and kv (the binding, for reads and lists).
// Through Miniflare's proxy, one call a key (~2 ms a key): for a runtime that already has its own Miniflare.
export const proxyWriter = (kv) => ({
  kv,
  async putMany(pairs) {
    for (let i = 0; i < pairs.length; i += 64)
      await Promise.all(pairs.slice(i, i + 64).map((p) => kv.put(p.key,
        p.base64 ? toArrayBuffer(Buffer.from(p.value, "base64")) : p.value, p.metadata ? { metadata: p.metadata } : {})));
  },
  async deleteMany(keys) {
    for (let i = 0; i < keys.length; i += 64) await Promise.all(keys.slice(i, i + 64).map((k) => kv.delete(k)));
  },
});

// Inside workerd, a batch a request (~1 ms a key): the way to load or push many keys. dispose() when done.
const WRITER = `
const bytes = (b64) => { const s = atob(b64), u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i); return u; };
export default { async fetch(request, env) {
  const req = await request.json();
  if (req.pairs) await Promise.all(req.pairs.map((p) => env.KV.put(p.key, p.base64 ? bytes(p.value) : p.value,
                                                                      p.metadata ? { metadata: p.metadata } : {})));
  else await Promise.all(req.keys.map((k) => env.KV.delete(k)));
  return new Response("ok");
} };`;
export async function openLocalKV(root, persist) {
  const mf = new Miniflare({ modules: true, script: WRITER, kvNamespaces: { KV: kvNamespaceId(root) },
                             kvPersist: path.join(persist, "v3", "kv") });
  const send = async (field, items) => {
    for (let i = 0; i < items.length; i += BATCH) {
      const answer = await mf.dispatchFetch("http://kv.local/", { method: "POST",
                                            body: JSON.stringify({ [field]: items.slice(i, i + BATCH) }) });
      const text = await answer.text();
      if (!answer.ok) throw new Error(`local KV write failed (${answer.status}): ${text.slice(0, 300)}`);
    }
  };
  return { kv: await mf.getKVNamespace("KV"), putMany: (pairs) => send("pairs", pairs),
           deleteMany: (keys) => send("keys", keys), dispose: () => mf.dispose() };
}

export async function loadSeed(writer, file, { quiet = false } = {}) {
  const pairs = JSON.parse(fs.readFileSync(file, "utf8"));
  const t0 = performance.now();
  for (let i = 0; i < pairs.length; i += BATCH) {
    await writer.putMany(pairs.slice(i, i + BATCH));
    if (!quiet && process.stderr.isTTY) process.stderr.write(`\rseeding local KV: ${Math.min(i + BATCH, pairs.length)}/${pairs.length}`);
  }
  // Local KV must equal the seed: delete keys an older seed (or a write-back) left behind.
  const wanted = new Set(pairs.map((p) => p.key));
  const stale = [];
  let cursor;
  do {
    const page = await writer.kv.list({ cursor, limit: 1000 });
    for (const k of page.keys) if (!wanted.has(k.name)) stale.push(k.name);
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  await writer.deleteMany(stale);
  if (!quiet) console.error(`${process.stderr.isTTY ? "\n" : ""}seeded ${pairs.length} keys into local KV` +
    ` (${stale.length} stale removed) in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  return pairs.length;
}

const digest = (bytes) => crypto.createHash("sha256").update(bytes).digest("hex");

// CLI: node tests/runtime/kvseed.mjs FILE [--persist .wrangler/state] [--keep-pushed]
// --keep-pushed (what `make dev` uses): if local KV's manifest is not the one the last demo seed wrote,
// someone pushed a build there (`personalizer push --target local`, rollback): leave it alone.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  const file = process.argv[2];
  const pi = process.argv.indexOf("--persist");
  const persist = path.resolve(root, pi > 0 ? process.argv[pi + 1] : ".wrangler/state");
  const marker = path.join(persist, ".seeded-manifest");
  const local = await openLocalKV(root, persist);
  const kv = local.kv;
  const current = await kv.get("pz1:manifest", "arrayBuffer");
  const seeded = fs.existsSync(marker) ? fs.readFileSync(marker, "utf8").trim() : null;
  if (process.argv.includes("--keep-pushed") && current !== null && digest(Buffer.from(current)) !== seeded) {
    console.error("local KV holds a build you pushed (its manifest is not the demo seed's): not reloading the " +
                  "demo seed over it. `make seed` goes back to the demo.");
  } else {
    await loadSeed(local, path.resolve(file));
    const manifest = await kv.get("pz1:manifest", "arrayBuffer");
    fs.writeFileSync(marker, (manifest === null ? "" : digest(Buffer.from(manifest))) + "\n");
  }
  await local.dispose();
}
