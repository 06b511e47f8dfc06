"""`make lambda`: the origin as an AWS Lambda deployment package, ``dist/lambda.zip``.

Only what ``/v1/resolve`` and ``/v1/ingest`` need (the ``origin`` extra: numpy, Starlette, Mangum, msgpack),
as wheels for the Lambda runtime's Python and the x86_64 manylinux platform, whatever the machine building
it runs; the batch's heavy parts (pyarrow, scipy) stay out. The handler is
``personalizer_adapters.origin.lambda_handler.handler``.

    python -m personalizer_adapters.origin.package --python 3.13 --out dist/lambda.zip [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LIMIT_UNZIPPED = 250 * 1024 * 1024  # Lambda's limit for a function's unzipped code and layers
PLATFORM = "manylinux2014_x86_64"
HANDLER = "personalizer_adapters.origin.lambda_handler.handler"


def build(python: str, out: Path, project: Path = ROOT, data: Path | None = None) -> int:
    """Write the zip; returns its unzipped size in bytes. Raises ``RuntimeError`` if pip fails or the package
    is over Lambda's limit."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        wheels, target = tmp / "wheels", tmp / "package"
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        print(f"building the project's wheel from {project}", file=sys.stderr)
        _run([*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(project)])
        (wheel,) = wheels.glob("*.whl")
        print(f"installing {wheel.name}[origin] for Python {python} on {PLATFORM}", file=sys.stderr)
        _run([*pip, "install", "--target", str(target), "--platform", PLATFORM, "--implementation", "cp",
              "--python-version", python, "--only-binary=:all:", "--no-compile", f"{wheel}[origin]"])
        for junk in [*target.glob("bin"), *target.rglob("__pycache__")]:
            shutil.rmtree(junk, ignore_errors=True)
        if data is not None:
            shutil.copytree(data, target / "data")
        size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
        if size > LIMIT_UNZIPPED:
            raise RuntimeError(f"the package is {size / 2**20:.0f} MiB unzipped, over Lambda's 250 MiB")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".zip.partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
            for f in sorted(target.rglob("*")):
                if f.is_file():
                    z.write(f, f.relative_to(target).as_posix())
        os.replace(partial, out)
        return size


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[3:6])} failed:\n{done.stderr.strip()[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m personalizer_adapters.origin.package", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default="3.13", help="the Lambda runtime's Python version (default 3.13)")
    p.add_argument("--out", default="dist/lambda.zip")
    p.add_argument("--data", help="also put this origin data directory (the generation's model artifacts) in the "
                                  "zip, as data/: then PZ_ORIGIN_DATA=/var/task/data, read only; the store is "
                                  "PZ_DATABASE_URL's")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        size = build(args.python, out, data=Path(args.data) if args.data else None)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB zipped, {size / 2**20:.1f} MiB unzipped, "
          f"limit 250); handler {HANDLER}, runtime python{args.python}, architecture x86_64")
    return 0


if __name__ == "__main__":
    sys.exit(main())
