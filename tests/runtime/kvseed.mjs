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

export async function loadSeed(kv, file, { batch = 64, quiet = false } = {}) {
  const pairs = JSON.parse(fs.readFileSync(file, "utf8"));
  const t0 = performance.now();
  for (let i = 0; i < pairs.length; i += batch) {
    await Promise.all(pairs.slice(i, i + batch).map((p) =>
      kv.put(p.key, p.base64 ? toArrayBuffer(Buffer.from(p.value, "base64")) : p.value)));
    if (!quiet && process.stderr.isTTY) process.stderr.write(`\rseeding local KV: ${Math.min(i + batch, pairs.length)}/${pairs.length}`);
  }
  // Local KV must equal the seed: delete keys an older seed (or a write-back) left behind.
  const wanted = new Set(pairs.map((p) => p.key));
  const stale = [];
  let cursor;
  do {
    const page = await kv.list({ cursor, limit: 1000 });
    for (const k of page.keys) if (!wanted.has(k.name)) stale.push(k.name);
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  for (let i = 0; i < stale.length; i += batch) await Promise.all(stale.slice(i, i + batch).map((k) => kv.delete(k)));
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
  const mf = new Miniflare({ modules: true, script: "export default {}",
    kvNamespaces: { PERSONALIZATION: kvNamespaceId(root) },
    kvPersist: path.join(persist, "v3", "kv") });
  const kv = await mf.getKVNamespace("PERSONALIZATION");
  const current = await kv.get("pz1:manifest", "arrayBuffer");
  const seeded = fs.existsSync(marker) ? fs.readFileSync(marker, "utf8").trim() : null;
  if (process.argv.includes("--keep-pushed") && current !== null && digest(Buffer.from(current)) !== seeded) {
    console.error("local KV holds a build you pushed (its manifest is not the demo seed's): not reloading the " +
                  "demo seed over it. `make seed` goes back to the demo.");
  } else {
    await loadSeed(kv, path.resolve(file));
    const manifest = await kv.get("pz1:manifest", "arrayBuffer");
    fs.writeFileSync(marker, (manifest === null ? "" : digest(Buffer.from(manifest))) + "\n");
  }
  await mf.dispose();
}
