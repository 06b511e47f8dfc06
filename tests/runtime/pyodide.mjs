// Load the worker's Python world into Pyodide: the real Workers SDK, msgpack (pure-Python stand-in for the
// runtime's compiled build), and exactly the modules of the deploy bundle (`wrangler deploy --dry-run`).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

// wrangler's [build] step rewrites worker/personalizer in the project: runtimes started at the same time
// (parallel tests) take turns, under an flock, so none bundles a half-copied core.
export const BUNDLE_LOCK = path.join(ROOT, ".wrangler", "bundle.lock");

export function writeBundle(outdir) {
  fs.rmSync(outdir, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(BUNDLE_LOCK), { recursive: true });
  execFileSync("flock", [BUNDLE_LOCK, path.join(ROOT, "node_modules/.bin/wrangler"), "deploy", "--dry-run",
                         "--outdir", outdir],
    { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });
  return outdir;
}

// Pyodide restored from a memory snapshot of its own freshly started state, as workerd starts Python workers
// (0.2 s instead of 1.7 s). The snapshot holds the interpreter only, nothing of the worker; it is made once
// per Pyodide version under .wrangler/ and replaced atomically (two makers at once write the same thing).
const SNAPSHOTS = path.join(ROOT, ".wrangler", "pyodide-snapshots");

async function baselineSnapshot() {
  const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules/pyodide/package.json"), "utf8"));
  const file = path.join(SNAPSHOTS, `pyodide-${version}.bin`);
  if (!fs.existsSync(file)) {
    const fresh = await loadPyodide({ _makeSnapshot: true });
    fs.mkdirSync(SNAPSHOTS, { recursive: true });
    const partial = `${file}.${process.pid}.partial`;
    fs.writeFileSync(partial, fresh.makeMemorySnapshot());
    fs.renameSync(partial, file);
  }
  return fs.readFileSync(file);
}

export async function loadWorkerPython({ bundleDir, env = {} }) {
  const py = await loadPyodide({ stdout: (s) => console.error(s), stderr: (s) => console.error(s),
                                 _loadSnapshot: await baselineSnapshot() });
  // The two runtime-internal modules the SDK imports; inside workerd they come from the runtime itself.
  py.registerJsModule("_cloudflare_compat_flags", {
    python_workflows_implicit_dependencies: false, python_request_headers_preserve_commas: true,
  });
  py.registerJsModule("_pyodide_entrypoint_helper", {
    patchWaitUntil() {}, doAnImport: (name) => import(name), cloudflareWorkersModule: { env },
    cloudflareSocketsModule: {},
  });
  const copyTree = (src, dst, keep = () => true) => {
    py.FS.mkdirTree(dst);
    for (const e of fs.readdirSync(src, { withFileTypes: true })) {
      const s = path.join(src, e.name), d = `${dst}/${e.name}`;
      if (e.isDirectory()) { if (e.name !== "__pycache__") copyTree(s, d, keep); }
      else if (keep(e.name)) py.FS.writeFile(d, fs.readFileSync(s));
    }
  };
  const venvLib = path.join(ROOT, ".venv/lib");
  const site = path.join(venvLib, fs.readdirSync(venvLib).find((d) => d.startsWith("python3")), "site-packages");
  copyTree(path.join(site, "workers"), "/session/site/workers");
  copyTree(path.join(site, "msgpack"), "/session/site/msgpack", (n) => n.endsWith(".py"));
  copyTree(bundleDir, "/session/bundle", (n) => n.endsWith(".py"));
  py.runPython(`import sys; sys.path[:0] = ["/session/bundle", "/session/site"]`);
  return py;
}

// CLI: node tests/runtime/pyodide.mjs bundle OUTDIR: write the deploy bundle (tests write it once per process).
if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === "bundle") writeBundle(path.resolve(process.argv[3]));
