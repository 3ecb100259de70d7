"""`clipfuse serve`: a real uvicorn server on 127.0.0.1 and a free port, a real HTTP client.

The ensembles are fitted with `clipfuse fit` (zoo backbones on the shipped CIFAR-10 demo train
split, as tests/test_ensemble.py fits its own); the requests carry shipped demo test images. The
server must answer what `clipfuse predict --json` answers for the same files, batch requests
from concurrent clients, run a cascade's later backbone only for the images that did not exit,
and refuse bad input with one 4xx JSON line of a stable kind, counted in /metrics.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import struct
import subprocess
import tarfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from beds import FusionBed, fit_cli
from conftest import cli_command, cli_env, write_folder
from PIL import Image

from clipfuse.backbones import list_backbones
from clipfuse.cli import main
from clipfuse.demo import DEMO_DATA

pytestmark = pytest.mark.skipif(not list_backbones("zoo:*"), reason="no zoo weights shipped")

ZOO = ["zoo:rn-tiny", "zoo:vit-p4"]
DEMO_CIFAR = DEMO_DATA / "cifar10-demo"
PER_CLASS = 2
TIMEOUT = httpx.Timeout(60.0)


@pytest.fixture(scope="module")
def zoo_bed(tmp_path_factory) -> FusionBed:
    """Two zoo backbones over the shipped CIFAR-10 demo train split, in a fresh store."""
    bed = FusionBed(DEMO_CIFAR, tmp_path_factory.mktemp("serve-bed") / "store")
    backbones = [x for spec in ZOO for x in ("--backbone", spec)]
    assert main(["extract", *backbones, *bed.data[:2], "--split", "train",
                 "--store", str(bed.store), "--quiet"]) == 0  # fmt: skip
    return bed


@pytest.fixture(scope="module")
def nlc_file(zoo_bed, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve-ens") / "nlc.safetensors"
    assert fit_cli(zoo_bed, "nlc", path) == 0
    return path


@pytest.fixture(scope="module")
def cascade_file(zoo_bed, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve-ens") / "cascade.safetensors"
    assert fit_cli(zoo_bed, "cascade", path) == 0
    return path


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory) -> dict[str, bytes]:
    """PER_CLASS shipped demo test JPEGs per class, `<class>/<file>` -> bytes, on disk too."""
    members: dict[str, bytes] = {}
    taken: dict[str, int] = {}
    with tarfile.open(DEMO_CIFAR / "test.tar") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 3 and taken.get(parts[1], 0) < PER_CLASS:
                members[f"{parts[1]}/{parts[2]}"] = tar.extractfile(member).read()
                taken[parts[1]] = taken.get(parts[1], 0) + 1
    folder = write_folder(tmp_path_factory.mktemp("serve-imgs") / "pics", members)
    return {str(folder / name): data for name, data in members.items()}


def predict_json(ensemble: Path, paths: list[str]) -> dict[str, dict]:
    """`clipfuse predict --json` on files: path -> prediction."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["predict", str(ensemble), *paths, "--json", "--workers", "0", "--quiet"]) == 0
    return {p["image"]: p for p in json.loads(out.getvalue())["predictions"]}


@pytest.fixture(scope="module")
def nlc_expected(nlc_file, demo_images):
    return predict_json(nlc_file, list(demo_images))


@contextlib.contextmanager
def cli_server(ensemble: Path, *options: str, timeout: float = 180.0):
    """`clipfuse serve ENSEMBLE --port 0 ...` in a subprocess; yields its URL once ready."""
    log = ensemble.parent / f"serve-{time.monotonic_ns()}.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(cli_command("serve", str(ensemble), "--port", "0", *options),
                                stdout=sink, stderr=subprocess.STDOUT, env=cli_env())  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        url = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = url or re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text())
            url = found if isinstance(found, str) else (found.group(1) if found else None)
            if url:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
            time.sleep(0.1)
        else:
            raise AssertionError(f"server did not get ready: {log.read_text()[-2000:]}")
        yield url
        assert proc.poll() is None, "the server died"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# one server for the NLC tests: small limits so that refusing them is cheap to provoke
LIMITS = ["--max-upload-mb", "1", "--max-images", "24", "--max-pixels", "1000000"]


@pytest.fixture(scope="module")
def nlc_server(nlc_file):
    with cli_server(nlc_file, "--max-batch", "8", "--max-wait-ms", "50", *LIMITS) as url:
        yield url


def assert_same(got: dict, expected: dict) -> None:
    assert got["label"] == expected["label"]
    assert got["probability"] == pytest.approx(expected["probability"], abs=1e-5)
    assert [t["label"] for t in got["top"]] == [t["label"] for t in expected["top"]]
    assert set(expected) - {"image"} <= set(got)
    for name, t in expected.get("temperatures", {}).items():
        assert got["temperatures"][name] == pytest.approx(t, rel=1e-4)
    if "backbones_run" in expected:
        assert got["backbones_run"] == expected["backbones_run"]
        assert got["cost"] == pytest.approx(expected["cost"])


def metric(url: str, name: str, **labels: str) -> float:
    """One sample of /metrics (Prometheus text format), 0 if absent."""
    text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


# ---- same answers as `clipfuse predict` ------------------------------------------------------


def test_single_images_three_ways_match_predict(nlc_server, demo_images, nlc_expected):
    path, data = next(iter(demo_images.items()))
    raw = httpx.post(f"{nlc_server}/v1/classify", content=data,
                     headers={"content-type": "image/jpeg"}, timeout=TIMEOUT)  # fmt: skip
    form = httpx.post(f"{nlc_server}/v1/classify", files=[("file", (Path(path).name, data))],
                      timeout=TIMEOUT)  # fmt: skip
    js = httpx.post(f"{nlc_server}/v1/classify", timeout=TIMEOUT,
                    json={"images": [base64.b64encode(data).decode()]})  # fmt: skip
    for answer in (raw, form, js):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        (got,) = body["predictions"]
        assert_same(got, nlc_expected[path])
        assert got["backbones"] == ZOO and sorted(got["temperatures"]) == sorted(ZOO)
        timing = body["timing"]
        assert timing["total_ms"] >= timing["model_ms"] > 0 and timing["batch_images"] >= 1
    assert form.json()["predictions"][0]["image"] == Path(path).name


def test_batched_request_matches_predict(nlc_server, demo_images, nlc_expected):
    """20 images in one request (more than --max-batch 8: split into model calls)."""
    files = [("file", (p, data)) for p, data in demo_images.items()]
    answer = httpx.post(f"{nlc_server}/v1/classify", files=files, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["image"] for p in predictions] == list(demo_images)  # order kept
    for p in predictions:
        assert_same(p, nlc_expected[p["image"]])
    labels = {p["label"] for p in predictions}
    assert len(labels) > 1  # not one constant answer


def test_one_bad_file_does_not_fail_the_others(nlc_server, demo_images, nlc_expected):
    """The shared failure policy (clipfuse.data.image_failures): the good images are answered,
    the bad ones listed with their kind, as `clipfuse predict` lists unreadable files."""
    (p1, d1), (p2, d2) = list(demo_images.items())[:2]
    before = metric(nlc_server, "clipfuse_errors_total", kind="not_an_image")
    files = [("file", (p1, d1)), ("file", ("notes.txt", b"just text")), ("file", (p2, d2))]
    answer = httpx.post(f"{nlc_server}/v1/classify", files=files, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [p["image"] for p in body["predictions"]] == [p1, p2]
    assert_same(body["predictions"][0], nlc_expected[p1])
    assert_same(body["predictions"][1], nlc_expected[p2])
    (failure,) = body["failures"]
    assert failure["image"] == "notes.txt" and failure["kind"] == "not_an_image"
    assert failure["error"] and "\n" not in failure["error"]
    assert metric(nlc_server, "clipfuse_errors_total", kind="not_an_image") == before + 1
    # JSON: a bad base64 item and a truncated image beside a good one
    good = base64.b64encode(d1).decode()
    cut = base64.b64encode(d2[: len(d2) // 2]).decode()
    js = httpx.post(f"{nlc_server}/v1/classify", json={"images": [good, "not base64!", cut]},
                    timeout=TIMEOUT)  # fmt: skip
    assert js.status_code == 200, js.text
    assert [p["image"] for p in js.json()["predictions"]] == ["0"]
    assert [(f["image"], f["kind"]) for f in js.json()["failures"]] == [
        ("1", "bad_base64"), ("2", "truncated_image")]  # fmt: skip
    # nothing readable at all: the request is refused with the first failure's kind
    files = [("file", ("a.txt", b"x")), ("file", ("b.txt", b"y"))]
    refused = httpx.post(f"{nlc_server}/v1/classify", files=files, timeout=TIMEOUT)
    assert refused.status_code == 415 and refused.json()["kind"] == "not_an_image"


def test_top_k_per_request(nlc_server, demo_images):
    data = next(iter(demo_images.values()))
    headers = {"content-type": "image/jpeg"}

    def ask(query: str) -> httpx.Response:
        return httpx.post(f"{nlc_server}/v1/classify{query}", content=data, headers=headers,
                          timeout=TIMEOUT)  # fmt: skip

    assert len(ask("").json()["predictions"][0]["top"]) == 1  # the server's --top-k
    with ThreadPoolExecutor(2) as pool:  # two top_k values in flight together (one batch)
        three, five = pool.map(ask, ["?top_k=3", "?top_k=5"])
    for answer, k in ((three, 3), (five, 5)):
        top = answer.json()["predictions"][0]["top"]
        assert len(top) == k
        assert [t["probability"] for t in top] == sorted(
            (t["probability"] for t in top), reverse=True
        )
    assert three.json()["predictions"][0]["top"] == five.json()["predictions"][0]["top"][:3]
    assert len(ask("?top_k=1000").json()["predictions"][0]["top"]) == 10  # all 10 classes
    for bad in ("0", "-1", "two", "1.5", ""):
        answer = ask(f"?top_k={bad}")
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["kind"] == "bad_parameter" and "top_k" in answer.json()["error"]


def test_docs_work_offline(nlc_server):
    """/docs references only this server's own URLs, and every asset it names answers 200."""
    with httpx.Client(base_url=nlc_server, timeout=TIMEOUT) as http:
        html = http.get("/docs").text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*["']([^"']+)["']""", html)
        urls = [a or b for a, b in urls]
        assert urls, html
        assert not [u for u in urls if re.match(r"(https?:)?//", u)], urls
        assert "cdn" not in html.lower()
        assets = [u for u in urls if u.endswith((".js", ".css", ".png"))]
        assert any(u.endswith("swagger-ui-bundle.js") for u in assets), assets
        for url in assets:
            answer = http.get(url)
            assert answer.status_code == 200 and len(answer.content) > 1000, url
        assert http.get(next(u for u in urls if u.endswith("openapi.json"))).status_code == 200


# ---- concurrency -------------------------------------------------------------------------------


def test_load_eight_clients_are_batched_and_all_right(nlc_server, demo_images, nlc_expected):
    """8 concurrent clients x 15 requests, loopback, bounded by timeouts."""
    items = list(demo_images.items())
    before = metric(nlc_server, "clipfuse_batch_images_count")

    def client(k: int) -> list[tuple[str, httpx.Response]]:
        out = []
        with httpx.Client(base_url=nlc_server, timeout=TIMEOUT) as http:
            for r in range(15):
                path, data = items[(k * 15 + r) % len(items)]
                out.append((path, http.post("/v1/classify", content=data,
                                            headers={"content-type": "image/jpeg"})))  # fmt: skip
        return out

    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = [a for part in pool.map(client, range(8), timeout=300) for a in part]
    assert time.monotonic() - start < 300
    assert len(answers) == 120
    assert all(r.status_code == 200 for _, r in answers), [r.text for _, r in answers][:3]
    for path, r in answers:
        assert_same(r.json()["predictions"][0], nlc_expected[path])
    timings = [r.json()["timing"] for _, r in answers]
    assert (
        max(t["batch_requests"] for t in timings) > 1
    )  # requests of several clients shared a call
    assert max(t["batch_images"] for t in timings) <= 8  # --max-batch
    calls = metric(nlc_server, "clipfuse_batch_images_count") - before
    assert calls < 120  # fewer model calls than requests
    assert httpx.get(f"{nlc_server}/healthz", timeout=TIMEOUT).json() == {"status": "alive"}


# ---- a cascade ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cascade_server(cascade_file):
    """The cascade through the Python API, in a thread of this process."""
    from clipfuse.ensemble.predict import load_needed
    from clipfuse.ensemble.saved import SavedEnsemble
    from clipfuse.serve.app import create_app
    from clipfuse.serve.runner import BackgroundServer

    ensemble = SavedEnsemble.load(cascade_file)
    app = create_app(ensemble, load_needed(ensemble), max_batch=32, max_wait_ms=20)
    with BackgroundServer(app) as url:
        yield url, ensemble


def test_cascade_runs_later_backbones_only_for_images_that_did_not_exit(
    cascade_server, cascade_file, demo_images
):
    url, ensemble = cascade_server
    expected = predict_json(cascade_file, list(demo_images))
    first, second = (ensemble.backbones[b]["name"] for b in ensemble.combiner.order_)
    files = [("file", (p, data)) for p, data in demo_images.items()]
    answer = httpx.post(f"{url}/v1/classify", files=files, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    for p in predictions:
        assert_same(p, expected[p["image"]])
        assert p["backbones"] == [first, second][: p["backbones_run"]]
    both = sum(p["backbones_run"] == 2 for p in predictions)
    assert 0 < both < len(predictions)  # some images exited after the cheap backbone
    # /metrics counts the images each backbone encoded for requests (the warm-up is not one)
    runs_first = metric(url, "clipfuse_backbone_runs_total", backbone=first)
    runs_second = metric(url, "clipfuse_backbone_runs_total", backbone=second)
    assert runs_first == len(predictions) and runs_second == both


# ---- bad input ---------------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a bomb: a few bytes promising gigapixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")  # fmt: skip


def png_bytes(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, format="PNG")
    return buffer.getvalue()


def bad_requests(jpeg: bytes, path: str) -> list[tuple[str, str, dict]]:
    """(case, expected kind, httpx.post keyword arguments); `path` is a readable image file
    that the server must never open."""
    image = {"content-type": "image/jpeg"}
    big = b"\xff" * (1024 * 1024 + 512 * 1024)  # 1.5 MB, the server takes 1 MB
    bomb = png_bytes((1100, 1100))  # a real 1.2-megapixel PNG of a few kB; the limit is 1 MP

    def chunked():
        for _ in range(24):
            yield b"\x00" * 65536

    return [
        ("empty body", "empty_body", {"content": b"", "headers": image}),
        ("text", "unsupported_media_type", {"content": b"a cat", "headers": {"content-type": "text/plain"}}),
        ("text as a file part", "not_an_image", {"files": [("file", ("a.txt", b"just text"))]}),
        ("random bytes as a PNG", "not_an_image", {"content": bytes(range(256)) * 8, "headers": {"content-type": "image/png"}}),
        ("truncated JPEG", "truncated_image", {"content": jpeg[: len(jpeg) // 2], "headers": image}),
        ("decompression bomb (header)", "decompression_bomb", {"content": png_header_only(50_000, 50_000), "headers": {"content-type": "image/png"}}),
        ("decompression bomb (over --max-pixels)", "decompression_bomb", {"files": [("file", ("bomb.png", bomb))]}),
        ("oversize upload", "payload_too_large", {"content": big, "headers": image}),
        ("oversize chunked upload", "payload_too_large", {"content": chunked(), "headers": image}),
        ("too many images (form)", "too_many_images", {"files": [("file", (f"{k}.jpg", jpeg)) for k in range(25)]}),
        ("too many images (JSON)", "too_many_images", {"json": {"images": [base64.b64encode(jpeg).decode()] * 25}}),
        ("malformed base64", "bad_base64", {"json": {"images": ["not base64 at all!"]}}),
        ("malformed JSON", "bad_json", {"content": b'{"images": [', "headers": {"content-type": "application/json"}}),
        ("JSON of the wrong shape", "bad_json", {"json": ["x"]}),
        ("wrong content type", "unsupported_media_type", {"content": jpeg, "headers": {"content-type": "application/xml"}}),
        ("no content type", "unsupported_media_type", {"content": jpeg, "headers": {"content-type": ""}}),
        ("multipart without a boundary", "bad_multipart", {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}}),
        ("a path as the raw body", "not_an_image", {"content": path.encode(), "headers": image}),
        ("a path as the file name, no bytes", "not_an_image", {"files": [("file", (path, b""))]}),
        ("a path as base64 text", "bad_base64", {"json": {"images": [path]}}),
        ("multipart without a file part", "no_images", {"data": {"other": "x"}, "files": [("note", ("n.txt", b"x"))]}),
    ]  # fmt: skip


def test_bad_input_is_one_4xx_json_line_counted_in_metrics(nlc_server, demo_images, nlc_expected):
    path, jpeg = next(iter(demo_images.items()))
    cases = bad_requests(jpeg, path)
    before = {kind: metric(nlc_server, "clipfuse_errors_total", kind=kind) for _, kind, _ in cases}
    sent: dict[str, int] = {}
    with httpx.Client(base_url=nlc_server, timeout=TIMEOUT) as http:
        for case, kind, request in cases:
            answer = http.post("/v1/classify", **request)
            assert 400 <= answer.status_code < 500, (case, answer.status_code, answer.text)
            body = answer.json()
            assert body["kind"] == kind, (case, body)
            assert body["error"] and "\n" not in body["error"], (case, body)
            assert "Traceback" not in answer.text
            sent[kind] = sent.get(kind, 0) + 1
        assert http.get("/no/such/page").json()["kind"] == "not_found"
        assert http.get("/v1/classify").json()["kind"] == "method_not_allowed"
        # still alive and still right
        assert http.get("/healthz").status_code == 200
        good = http.post("/v1/classify", content=jpeg, headers={"content-type": "image/jpeg"})
        assert good.status_code == 200
        assert_same(good.json()["predictions"][0], nlc_expected[path])
    for kind, n in sent.items():
        assert metric(nlc_server, "clipfuse_errors_total", kind=kind) - before[kind] == n, kind
    assert metric(nlc_server, "clipfuse_errors_total", kind="internal") == 0
    assert metric(nlc_server, "clipfuse_requests_total", endpoint="/v1/classify", status="500") == 0


def test_probes_metrics_and_docs(nlc_server):
    with httpx.Client(base_url=nlc_server, timeout=TIMEOUT) as http:
        assert http.get("/healthz").json() == {"status": "alive"}
        ready = http.get("/readyz").json()
        assert ready["status"] == "ready" and ready["backbones"] == ZOO
        text = http.get("/metrics").text
        for name in ("clipfuse_requests_total", "clipfuse_images_total", "clipfuse_errors_total",
                     "clipfuse_request_latency_seconds_bucket", "clipfuse_batch_images_bucket",
                     "clipfuse_backbone_runs_total", "clipfuse_ready 1.0"):  # fmt: skip
            assert name in text, name
        assert "swagger" in http.get("/docs").text.lower()
        assert "/v1/classify" in http.get("/openapi.json").json()["paths"]


# ---- the command line --------------------------------------------------------------------------


def test_serve_cli_errors_are_one_line(nlc_file, tmp_path, capsys, monkeypatch):
    def run(*args: str) -> str:
        capsys.readouterr()
        assert main(["serve", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("clipfuse: error:") and err.count("\n") == 1, err
        return err

    assert "ensemble file not found" in run(str(tmp_path / "missing.safetensors"), "--port", "0")
    assert "--max-batch" in run(str(nlc_file), "--max-batch", "0")
    assert "--port" in run(str(nlc_file), "--port", "70000")
    with contextlib.closing(__import__("socket").socket()) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert "cannot listen" in run(str(nlc_file), "--port", str(busy.getsockname()[1]))
    import clipfuse.serve

    monkeypatch.setattr(clipfuse.serve, "missing_serve_deps", lambda: ["fastapi", "uvicorn"])
    assert 'pip install "clipfuse[serve]"' in run(str(nlc_file))


# ---- the batcher alone -------------------------------------------------------------------------


def test_batcher_waits_only_for_requests_on_their_way():
    import asyncio

    import torch

    from clipfuse.serve.batching import MicroBatcher

    calls: list[int] = []

    def run_batch(pixels):
        return [{"row": float(v)} for v in pixels[0][:, 0]]

    async def scenario():
        batcher = MicroBatcher(run_batch, max_batch=4, max_wait_ms=3000, on_batch=calls.append)
        batcher.start()
        try:
            start = time.perf_counter()
            records, timing = await batcher.submit({0: torch.tensor([[1.0]])})
            lone = time.perf_counter() - start  # nobody else announced: no 3 s wait
            assert records == [{"row": 1.0}] and timing["batch_requests"] == 1

            async def late(value: float, delay: float):
                with batcher.expecting():
                    await asyncio.sleep(delay)  # reading a slow body
                return await batcher.submit({0: torch.tensor([[value]])})

            second = asyncio.ensure_future(late(3.0, 0.3))
            await asyncio.sleep(0.01)
            (first, t1), (later, t2) = await asyncio.gather(
                batcher.submit({0: torch.tensor([[2.0]])}), second
            )
            assert first == [{"row": 2.0}] and later == [{"row": 3.0}]
            assert t1["batch_requests"] == t2["batch_requests"] == 2  # it waited for the second

            many = torch.arange(6.0).reshape(6, 1)  # over max_batch: split, order kept
            records, timing = await batcher.submit({0: many})
            assert [r["row"] for r in records] == [0, 1, 2, 3, 4, 5] and timing["batch_images"] == 6
            return lone
        finally:
            await batcher.close()

    lone = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert lone < 1.5, lone
    assert calls == [1, 2, 4, 2]
