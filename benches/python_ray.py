"""benches/python.rs runs this: CLI vs Python API vs Ray (1 and 2 worker nodes) on the same ELPV images.

Usage: python_ray.py HEADSTART_CLI ELPV_FOLDER COUNT
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

import headstart
import headstart.ray

ROUNDS = 3
STORE = 200 * 1024 * 1024


def image_folder(elpv: Path, count: int, root: Path) -> list[Path]:
    """`count` ELPV images, half from each class folder, copied so every run reads the same files."""
    paths = []
    for label in ("defective", "functional"):
        (root / label).mkdir(parents=True)
        for source in sorted((elpv / label).iterdir())[: count // 2]:
            paths.append(root / label / source.name)
            shutil.copy(source, paths[-1])
    return paths


def cli_rate(cli: str, folder: Path, out: Path) -> float:
    summary = json.loads(
        subprocess.run(
            [cli, "embed", str(folder), "-o", str(out), "--no-cache", "--json", "--device", "cpu"],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    return summary["embedded"] / summary["seconds"]


def python_rate(embedder: headstart.Embedder, paths: list[str]) -> float:
    started = time.perf_counter()
    result = embedder.embed_paths(paths)
    return len(result) / (time.perf_counter() - started)


def ray_rate(paths: list[str], nodes: int, out: Path) -> float:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": STORE})
    for _ in range(nodes):
        cluster.add_node(num_cpus=1, object_store_memory=STORE)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    try:
        ds = ray.data.from_items([{"path": p} for p in paths]).map_batches(
            headstart.ray.Embed,
            fn_constructor_kwargs={"device": "cpu", "cache": False, "workers": 1, "threads": 1},
            batch_format="pyarrow",
            batch_size=32,
            compute=ray.data.ActorPoolStrategy(size=nodes),
            num_cpus=1,
        )
        started = time.perf_counter()
        ds.write_parquet(str(out))
        return len(paths) / (time.perf_counter() - started)
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    cli, elpv, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = [str(p) for p in image_folder(elpv, count, tmp / "images")]
        embedder = headstart.Embedder(device="cpu", cache=False)
        cli_rates, python_rates = [], []
        for _ in range(ROUNDS):
            cli_rates.append(cli_rate(cli, tmp / "images", tmp / "cli.npz"))
            python_rates.append(python_rate(embedder, paths))
        ratios = [p / c for p, c in zip(python_rates, cli_rates)]
        del embedder
        ray_rates = {nodes: ray_rate(paths, nodes, tmp / f"ray{nodes}") for nodes in (1, 2)}
    print(f"{len(paths)} ELPV images (300x300 grayscale PNG), {os.cpu_count()} cores, no cache, rates in images/s")
    print(f"(a) headstart embed (CLI):          {statistics.median(cli_rates):7.1f}  rounds {['%.1f' % r for r in cli_rates]}")
    print(f"(b) Embedder.embed_paths (Python):  {statistics.median(python_rates):7.1f}  rounds {['%.1f' % r for r in python_rates]}")
    print(f"    Python / CLI, paired by round:  {statistics.median(ratios):.3f}  {['%.3f' % r for r in ratios]}")
    print("(c) Ray Data + headstart.ray.Embed, write_parquet (one actor per worker node, 1 CPU, 1 thread):")
    print(f"    1 worker node:  {ray_rates[1]:7.1f}")
    print(f"    2 worker nodes: {ray_rates[2]:7.1f}  ({ray_rates[2] / ray_rates[1]:.2f}x of 1 node)")


if __name__ == "__main__":
    main()
