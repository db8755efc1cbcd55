"""Our vendor (each engine) side by side with infinity-emb on the same payloads, in one run.

Starts, on loopback: ``vl2v-vendor serve`` once per engine (``--engine torch``, ``onnx``, ``openvino``) and
infinity-emb 0.0.78 (from the test suite's ``.venv-infinity``, tests/infinity/setup.sh) serving the same
architecture with its torch engine (a transformers ``CLIPModel`` at random init written by
tests/infinity/make_tiny_clip.py; for ViT-B-32, its ``--vit-b-32`` image tower). Every server gets the
same request bodies, byte for byte (PNG data URIs with infinity's ``"modality": "image"``, which our
vendor accepts too), in four traffic shapes:

- ``2x32``: two clients at once, each sending 32-image requests;
- ``1x64``: one client, 64-image requests (infinity takes at most 32 images per request: it gets the
  same 64 images as two 32-image requests sent at once);
- ``seq32``: one client, 32-image requests one after the other;
- ``32x1``: 32 clients at once, single-image requests.

Each shape sends ``--images`` images per measurement; servers and shapes alternate for ``--rounds``
rounds and the median is reported, so a burst of load from elsewhere hits every server alike. Before
the rounds, the raw forward of each engine is timed in this process at batch 1 to 64 on the same
images, prepared (the model's own preprocessing) beforehand: the served rate's ceiling. The onnx
engine is exported into a fresh cache here first, so the run also gives the export's start-up cost (and
the openvino engine's, which compiles that export).
Around every measurement the server's CPU time (its process and children, from ``/proc``) is read, so
the run also says where a served rate goes: CPU per image answered and cores kept busy, per server and
shape, and for our engines the raw forward's share of that CPU, which bounds served / raw at as many
busy cores as the raw forward had; beside it the cores the benchmark's own client took (it shares the
machine with the server, the raw forward does not). At the end each vendor's ledger must hold exactly the images
answered (``/v1/usage`` and the key's row in the SQLite file).

    python bench/vendor_throughput.py                                  # ViT-B-32: our 3 engines, infinity
    python bench/vendor_throughput.py --model vl2v-tiny --no-infinity --images 512
    python bench/vendor_throughput.py --infinity-venv /path/to/.venv-infinity --rounds 2

``--device cuda`` runs the vendors and infinity on the GPU (bench/gpu_check.sh does).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as ``vl2v-vendor serve`` sets it: same torch for raw and served

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from client_distill.buy.local_vendor import LocalVendor, free_port, start_vendor  # noqa: E402
from vendor_server.encoder import Encoder  # noqa: E402
from vendor_server.ledger import Ledger  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCH = 64
#: what each engine's start-up timed here includes (a fresh export cache: the onnx export is made here)
START_UP = {
    "torch": "load",
    "onnx": "load + export into a cold cache + check",
    "openvino": "load + compile the onnx export + check; the export too where onnx is not run",
}
SINGLE_CLIENTS = 32
#: name: (concurrent clients, images per request)
SHAPES = {"2x32": (2, 32), "1x64": (1, 64), "seq32": (1, 32), "32x1": (SINGLE_CLIENTS, 1)}
INFINITY_MAX_IMAGES = 32
RAW_BATCHES = (1, 8, 16, 32, 64)


def synthetic_jpegs(n: int, size: int, seed: int = 0, fmt: str = "JPEG") -> list[bytes]:
    """Photo-like images (smooth gradients + noise) at the model's input size, as ``fmt`` files."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        base = np.stack([np.sin(xx * rng.uniform(1, 9) + rng.uniform(0, 6)) for _ in range(3)], -1)
        pixels = np.clip(127 + 100 * base * yy[..., None] + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        out.append(buf.getvalue())
    return out


def body(files: list[bytes], model: str | None = None) -> bytes:
    """One request for ``files``: our own image items, or (``model`` given) the infinity/OpenAI form both
    servers take, data URIs with ``"modality": "image"`` naming the served model."""
    if model is None:
        items: list = [{"image": base64.b64encode(f).decode()} for f in files]
        return json.dumps({"input": items, "encoding_format": "base64"}).encode()
    uris = [f"data:image/png;base64,{base64.b64encode(f).decode()}" for f in files]
    return json.dumps({"model": model, "input": uris, "modality": "image", "encoding_format": "base64"}).encode()


async def served_images_per_s(
    url: str, key: str, bodies: list[bytes], n_images: int, clients: int, path: str = "/v1/embeddings"
) -> float:
    """Send ``bodies`` from ``clients`` concurrent connections; images answered per second."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                response = await client.post(path, content=queue.get_nowait())
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return n_images / (time.perf_counter() - start)


def raw_rates(encoder: Encoder, files: list[bytes]) -> tuple[dict[int, float], dict[int, float]]:
    """Images/s of ``encoder``'s image tower by batch size, on the images already prepared (on a GPU also
    at 128, the largest batch a server measures, the images repeated), and the CPU time it took per image
    (core-milliseconds, every thread of this process)."""
    batches = RAW_BATCHES + ((128,) if encoder.device.type == "cuda" else ())
    pixels = np.stack([encoder.prepare_image(Image.open(io.BytesIO(f)).convert("RGB")) for f in files])
    pixels = np.concatenate([pixels] * -(-max(batches) // len(pixels)))
    rates, cpu_ms = {}, {}
    for batch in batches:
        chunks = [np.ascontiguousarray(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
        encoder.encode_pixels(chunks[0])  # warm-up at this shape
        start, cpu = time.perf_counter(), _own_cpu_s()
        for chunk in chunks:
            encoder.encode_pixels(chunk)
        rates[batch] = len(pixels) / (time.perf_counter() - start)
        cpu_ms[batch] = 1000 * (_own_cpu_s() - cpu) / len(pixels)
    return rates, cpu_ms


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, every thread) of process ``pid`` and its descendants, from ``/proc``;
    None where there is no ``/proc`` (the column is then left out)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.parent.name)] = int(fields[1])
        cpu[int(entry.parent.name)] = (int(fields[11]) + int(fields[12])) / tick
    if pid not in cpu:
        return None
    tree, frontier = {pid}, [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier and child not in tree]
        tree.update(children)
        frontier = children
    return sum(cpu[p] for p in tree)


class Infinity:
    """infinity-emb serving an architecture like ``model``'s, on a free loopback port, bounded by ``timeout``."""

    def __init__(self, venv: Path, model: str, work: Path, device: str):
        self.name, self.port = model, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder = work / "infinity-model"
        maker = [str(venv / "bin" / "python"), str(ROOT / "tests" / "infinity" / "make_tiny_clip.py"), str(folder)]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("VL2V_", "INFINITY_", "HF_"))},
            **{"HF_HOME": str(work / "hf"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1"},
            "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        }
        subprocess.run(maker + (["--vit-b-32"] if model == "ViT-B-32" else []), check=True, env=env)
        command = [
            *("timeout", "--kill-after=10", "7200", str(venv / "bin" / "infinity_emb"), "v2"),
            *("--model-id", str(folder), "--served-model-name", model, "--host", "127.0.0.1"),
            *("--port", str(self.port), "--api-key", "bench", "--device", device, "--no-compile"),
        ]
        self.log = work / "infinity.log"
        start = time.perf_counter()
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        while True:
            if self.process.poll() is not None or time.perf_counter() - start > 600:
                self.stop()
                sys.exit(f"infinity_emb did not start; its log:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.start_s = time.perf_counter() - start

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def measure(server: dict, shape: str, files: list[bytes], n_images: int) -> float:
    """Images/s of one server in one traffic shape; the server's CPU time per image answered and the
    cores it kept busy are appended to ``server["cpu"][shape]`` where ``/proc`` tells them."""
    clients, per_request = SHAPES[shape]
    if server["infinity"] and per_request > INFINITY_MAX_IMAGES:  # its cap: the same images, two requests at once
        clients, per_request = clients * per_request // INFINITY_MAX_IMAGES, INFINITY_MAX_IMAGES
    sent = [files[i % len(files)] for i in range(n_images)]
    bodies = [body(sent[i : i + per_request], server["model"]) for i in range(0, n_images, per_request)]
    cpu, own, start = tree_cpu_s(server["pid"]), _own_cpu_s(), time.perf_counter()
    rate = asyncio.run(served_images_per_s(server["url"], server["key"], bodies, n_images, clients, server["path"]))
    wall, used, client = time.perf_counter() - start, tree_cpu_s(server["pid"]), _own_cpu_s() - own
    if cpu is not None and used is not None:
        server.setdefault("cpu", {}).setdefault(shape, []).append(
            (1000 * (used - cpu) / n_images, (used - cpu) / wall, client / wall)
        )
    server["images"] += n_images
    return rate


def bench(args: argparse.Namespace) -> None:
    from vendor_server.engines import open_encoder
    from vendor_server.settings import load_settings

    model = args.model
    encoders: dict[str, Encoder] = {}
    servers: dict[str, dict] = {}
    running: list = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for engine in args.engines:  # onnx before openvino: openvino then compiles onnx's fresh export
            start = time.perf_counter()
            encoders[engine] = open_encoder(
                load_settings(
                    model=model,
                    pretrained="none",
                    engine=engine,
                    device=args.device,
                    engine_cache_dir=str(work / "onnx"),
                )
            )
            print(
                f"{engine} engine start-up ({START_UP[engine]}): {time.perf_counter() - start:.1f} s, "
                f"precision {encoders[engine].precision}",
                flush=True,
            )
        size = next(iter(encoders.values())).image_size
        files = synthetic_jpegs(BATCH, size, fmt="PNG")
        raw, raw_cpu = {}, {}
        for engine, encoder in encoders.items():
            raw[engine], raw_cpu[engine] = raw_rates(encoder, files)
        del encoders  # the servers get the memory and the cores
        try:
            db = work / "ledger.sqlite3"
            ledger = Ledger(db)
            for engine in args.engines:
                _, key = ledger.create_key(engine, budget=10**9, rate_limit_qps=1e6)
                start = time.perf_counter()
                vendor = start_vendor(
                    *("--model", model, "--pretrained", "none", "--engine", engine, "--device", args.device),
                    *("--db", str(db), "--log-level", "warning"),
                    env={
                        **os.environ,
                        "VL2V_VENDOR_QUEUE_LIMIT": "100000",
                        "VL2V_VENDOR_ENGINE_CACHE_DIR": str(work / "onnx"),
                    },
                    log=work / f"{engine}.log",
                    ready_timeout_s=900,
                )
                running.append(vendor)
                servers[f"vl2v {engine}"] = {
                    "pid": vendor.process.pid,
                    "url": vendor.url,
                    "key": key,
                    "model": model,
                    "path": "/v1/embeddings",
                    "infinity": False,
                    "images": 0,
                    "engine": engine,
                    "start_s": time.perf_counter() - start,
                }
            if args.infinity_venv is not None:
                infinity = Infinity(args.infinity_venv, model, work, args.device)
                running.append(infinity)
                servers["infinity"] = {
                    "pid": infinity.process.pid,
                    "url": infinity.url,
                    "key": "bench",
                    "model": model,
                    "path": "/embeddings",
                    "infinity": True,
                    "images": 0,
                    "start_s": infinity.start_s,
                }
            for server in servers.values():
                if not server["infinity"]:
                    metrics = httpx.get(f"{server['url']}/metrics").text
                    server["max_batch"] = int(float(re.search(r"^vl2v_vendor_max_batch_size (\S+)$", metrics, re.M)[1]))
            for server in servers.values():  # warm-up: every shape of batch once
                measure(server, "2x32", files, BATCH)
            rates: dict[str, dict[str, list[float]]] = {name: {shape: [] for shape in SHAPES} for name in servers}
            for _ in range(args.rounds):
                for shape in SHAPES:
                    for name, server in servers.items():
                        rates[name][shape].append(measure(server, shape, files, args.images))
                print(
                    "round:",
                    json.dumps({n: {s: round(v[-1], 1) for s, v in r.items()} for n, r in rates.items()}),
                    flush=True,
                )
            exact = {}
            for name, server in servers.items():
                if not server["infinity"]:
                    used = httpx.get(
                        f"{server['url']}/v1/usage", headers={"Authorization": f"Bearer {server['key']}"}
                    ).json()["used"]
                    exact[name] = (server["images"], used, ledger.authenticate(server["key"]).used)
            ledger.close()
        finally:
            for process in running:
                process.stop(**({"timeout_s": 30} if isinstance(process, LocalVendor) else {}))
    report(args, size, raw, raw_cpu, servers, rates, exact)


def report(args, size, raw, raw_cpu, servers, rates, exact) -> None:
    print(
        f"\n{args.model} (random init), {BATCH} PNGs of {size}x{size} px, {args.images} images per measurement, "
        f"median of {args.rounds} rounds, {os.cpu_count()} CPU cores, device {args.device}\n"
    )
    print("raw forward in this process, images/s by batch size:\n")
    batches = list(next(iter(raw.values())))
    print("| engine | " + " | ".join(str(b) for b in batches) + " | best |")
    print("|---|" + "---:|" * (len(batches) + 1))
    for engine, by_batch in raw.items():
        print(
            f"| {engine} | " + " | ".join(f"{r:.1f}" for r in by_batch.values()) + f" | {max(by_batch.values()):.1f} |"
        )
    median = {name: {shape: statistics.median(v) for shape, v in by_shape.items()} for name, by_shape in rates.items()}
    print("\nserved images/s (start-up s):\n")
    print("| server | start s | " + " | ".join(SHAPES) + " |")
    print("|---|---:|" + "---:|" * len(SHAPES))
    for name, by_shape in median.items():
        print(
            f"| {name} | {servers[name]['start_s']:.1f} | " + " | ".join(f"{r:.1f}" for r in by_shape.values()) + " |"
        )
    if "infinity" in median:
        print("\nratio to infinity:\n")
        print("| server | " + " | ".join(SHAPES) + " |")
        print("|---|" + "---:|" * len(SHAPES))
        for name, by_shape in median.items():
            if name != "infinity":
                print(f"| {name} | " + " | ".join(f"{by_shape[s] / median['infinity'][s]:.2f}" for s in SHAPES) + " |")
    print("\nbest served rate / best raw forward of the same engine (the server's measured max batch):")
    for name, server in servers.items():
        if not server["infinity"]:
            best_raw = max(raw[server["engine"]].values())
            print(f"  {name}: {max(median[name].values()) / best_raw:.2f} (max batch {server['max_batch']})")
    if all("cpu" in server for server in servers.values()):
        cpu_report(raw, raw_cpu, servers, median)
    for name, (sent, used, db_used) in exact.items():
        verdict = "exact" if sent == used == db_used else "NOT EXACT"
        print(f"ledger {name}: images answered {sent}, /v1/usage used {used}, ledger row {db_used}: {verdict}")


def cpu_report(raw: dict, raw_cpu: dict, servers: dict, median: dict) -> None:
    """Where a served rate goes: each server's CPU per image answered against its engine's raw forward.
    At as many busy cores as the raw forward, served / raw is the forward's share of the CPU an image
    costs the server; the part above the raw forward's is decoding, parsing and answering, and cores the
    server leaves idle cost the rest."""
    print(
        "\nserver CPU per image answered, core-ms (cores the server kept busy / cores this benchmark's client "
        f"took, of {os.cpu_count()}), median over rounds:\n"
    )
    print("| server | " + " | ".join(SHAPES) + " |")
    print("|---|" + "---:|" * len(SHAPES))
    for name, server in servers.items():
        cells = [server["cpu"][shape] for shape in SHAPES]
        print(
            f"| {name} | "
            + " | ".join(
                f"{statistics.median(c[0] for c in cell):.2f} ({statistics.median(c[1] for c in cell):.2f} / "
                f"{statistics.median(c[2] for c in cell):.2f})"
                for cell in cells
            )
            + " |"
        )
    print("\nthe best served rate's CPU against the raw forward's:")
    for name, server in servers.items():
        if server["infinity"]:
            continue
        engine = server["engine"]
        batch = max(raw[engine], key=raw[engine].get)
        shape = max(median[name], key=median[name].get)
        per_image = statistics.median(c[0] for c in server["cpu"][shape])
        busy = statistics.median(c[1] for c in server["cpu"][shape])
        client = statistics.median(c[2] for c in server["cpu"][shape])
        forward = raw_cpu[engine][batch]
        print(
            f"  {name} ({shape}): {per_image:.2f} core-ms an image on {busy:.2f} busy cores; the raw forward "
            f"(batch {batch}) {forward:.2f} core-ms on {forward * raw[engine][batch] / 1000:.2f} cores, so "
            f"{per_image - forward:.2f} go to the rest (decoding, parsing, answering) and served / raw stays "
            f"under {forward / per_image:.2f} unless the server keeps more cores busy than the raw forward; "
            f"the benchmark's client took {client:.2f} cores beside it, {os.cpu_count() - busy - client:.2f} idle"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32", help="ViT-B-32 (default; random init) or vl2v-tiny")
    parser.add_argument(
        "--engines", default="torch,onnx,openvino", help="our engines to serve, comma-separated (default all three)"
    )
    parser.add_argument("--images", type=int, default=BATCH, help="images per measurement (default 64)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--infinity-venv",
        type=Path,
        default=ROOT / ".venv-infinity",
        help="infinity-emb's venv (tests/infinity/setup.sh makes it)",
    )
    parser.add_argument("--no-infinity", action="store_true", help="only our vendor")
    args = parser.parse_args()
    args.engines = [e for e in args.engines.split(",") if e]
    if unknown := set(args.engines) - set(START_UP):
        sys.exit(f"--engines: unknown {', '.join(sorted(unknown))} (choose from {', '.join(START_UP)})")
    if args.no_infinity:
        args.infinity_venv = None
    elif not (args.infinity_venv / "bin" / "infinity_emb").exists():
        sys.exit(
            f"no infinity_emb in {args.infinity_venv}: run tests/infinity/setup.sh, "
            "pass --infinity-venv, or --no-infinity"
        )
    if args.model == "vl2v-tiny" and args.infinity_venv is not None:
        sys.exit("infinity serves a ViT-B-32-like or its test's tiny CLIP, not vl2v-tiny: pass --no-infinity")
    bench(args)


if __name__ == "__main__":
    main()
