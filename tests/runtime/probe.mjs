// The parsers of untrusted input, called inside Pyodide: one JSON line in ({"fn", "args"}), one JSON line out
// ({"ok": result} or {"error": "ExceptionType: message"}). Functions are those of tests/runtime/probe.py, run
// over the deploy bundle's modules exactly as the edge runtime loads them. A fatal error of Pyodide (its stack
// overflowed) ends the process with status 3, so the caller cannot miss it.
//
// Usage: node tests/runtime/probe.mjs --bundle DIR   (prints "ready" on stdout, then answers each line)
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { ROOT, loadWorkerPython } from "./pyodide.mjs";

const bundleDir = path.resolve(process.argv[process.argv.indexOf("--bundle") + 1]);
const py = await loadWorkerPython({ bundleDir });
py.FS.writeFile("/session/bundle/probe.py", fs.readFileSync(path.join(ROOT, "tests/runtime/probe.py")));
const call = await py.runPythonAsync(`
import inspect, json, probe
async def call(line):
    request = json.loads(line)
    try:
        result = getattr(probe, request["fn"])(*request["args"])
        if inspect.isawaitable(result):
            result = await result
        return json.dumps({"ok": result})
    except Exception as exc:
        return json.dumps({"error": f"{type(exc).__name__}: {exc}"[:500]})
call
`);
console.log("ready");
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  try {
    console.log(await call(line));
  } catch (err) {
    console.error("pyodide failed:", String(err).slice(0, 500));
    process.exit(3);
  }
}
