"""`make lambda`: the origin's Lambda package fits Lambda's limit and answers from the unpacked zip alone.

The zip is built for the Python of a plain interpreter found on this machine (3.13 if there is one, the
Lambda runtime the README documents), then imported by that interpreter in isolated mode (no site-packages,
no PYTHONPATH, no project tree): only what is in the zip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from personalizer import keys
from personalizer_adapters.batch.build import Built
from personalizer_adapters.origin.package import HANDLER, LIMIT_UNZIPPED, build
from tests.test_origin import SECRET, function_url_event


def interpreter() -> tuple[str, str]:
    for version in ("3.13", "3.12"):
        found = shutil.which(f"python{version}")
        if found and subprocess.run([found, "-c", "pass"], capture_output=True).returncode == 0:
            return found, version
    return sys.executable, f"{sys.version_info.major}.{sys.version_info.minor}"


CALL = """
import base64, json, sys
sys.path.insert(0, sys.argv[1])
import msgpack
from personalizer_adapters.origin.lambda_handler import handler
class Context:
    function_name = "origin"; aws_request_id = "r1"; memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:origin"
    def get_remaining_time_in_millis(self): return 30000
out = []
for event in json.loads(sys.stdin.read()):
    r = handler(event, Context())
    body = base64.b64decode(r["body"]) if r["isBase64Encoded"] else r["body"].encode()
    kind = msgpack.unpackb(body)["kind"] if r["statusCode"] == 200 else None
    out.append([r["statusCode"], kind])
mods = sorted(m.split(".")[0] for m in sys.modules)
print(json.dumps({"answers": out, "heavy": [m for m in ("pyarrow", "scipy", "httpx") if m in mods],
                  "where": sys.modules["numpy"].__file__, "python": "%d.%d" % sys.version_info[:2]}))
"""


def test_lambda_zip_fits_and_answers_a_function_url_event(built: Built, seed_dir: Path, tmp_path: Path) -> None:
    python, version = interpreter()
    out = tmp_path / "lambda.zip"
    size = build(version, out)
    assert size < LIMIT_UNZIPPED
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        assert sum(i.file_size for i in z.infolist()) == size
        z.extractall(unpacked)
    assert "personalizer_adapters/origin/lambda_handler.py" in names and HANDLER.endswith(".handler")
    assert not any(n.startswith(("pyarrow/", "scipy/")) for n in names)  # the batch's parts stay out
    data = Path(shutil.copytree(seed_dir / "origin", tmp_path / "data"))
    events = [function_url_event(keys.profile("c05001"), "wrong-secret-0123456789"),
              function_url_event(keys.profile("c05001"), SECRET),
              function_url_event(keys.profile("c99999"), SECRET)]
    run = subprocess.run([python, "-I", "-c", CALL, str(unpacked)], input=json.dumps(events), capture_output=True,
                         text=True, timeout=120, cwd=tmp_path,
                         env={"ORIGIN_SECRET": SECRET, "PZ_ORIGIN_DATA": str(data), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["answers"] == [[401, None], [200, "profile"], [404, None]]
    assert got["heavy"] == [] and got["where"].startswith(str(unpacked)) and got["python"] == version


@pytest.mark.parametrize("extra,absent", [("origin", ("scipy", "pyarrow", "httpx", "tqdm", "uvicorn", "uvloop")),
                                          ("serve", ("scipy", "pyarrow", "httpx")), ("batch", ())])
def test_extras_split_the_origin_from_the_batch(extra: str, absent: tuple[str, ...]) -> None:
    """pyproject: the Lambda's extra has none of the batch's heavy parts, nor a server (Mangum is its server);
    the server's extra has the origin's, the batch's has the server's (its CLI serves the origin and the shop)."""
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    deps = " ".join(project["optional-dependencies"][extra])
    assert not any(name in deps for name in absent)
    if extra == "serve":
        assert "edge-personalizer[origin]" in deps and "uvicorn==" in deps
    if extra == "batch":
        assert "edge-personalizer[serve]" in deps
