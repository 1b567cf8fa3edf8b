"""headstart.ray on a real Ray cluster started here: a head and two worker nodes, a few hundred ELPV images
through `map_batches(headstart.ray.Embed)` into Parquet, compared with the single-process CLI; then the same
with a worker node removed while it embeds."""

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
from ray.cluster_utils import Cluster

import headstart.ray
from conftest import cli, cli_json, cosines, listed

STORE = 100 * 1024 * 1024


@pytest.fixture
def cluster() -> Iterator[tuple[Cluster, list]]:
    """A head without CPUs (it only schedules) and two worker nodes. The first has room for both actors, so
    an actor lost with the second node restarts there (both share this machine's two cores anyway)."""
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": STORE},
    )
    workers = [
        cluster.add_node(num_cpus=2, object_store_memory=STORE),
        cluster.add_node(num_cpus=1, object_store_memory=STORE),
    ]
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def embedding_actors(node) -> int:
    """Embed actors running on a node: worker processes of its raylet titled after the actor's class (the
    state API would need the dashboard, which this small cluster leaves out)."""
    raylet = node.all_processes["raylet"][0].process.pid
    count = 0
    for process in Path("/proc").iterdir():
        try:
            parent = int((process / "stat").read_text().rsplit(")", 1)[1].split()[1])
            title = (process / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        count += parent == raylet and title.startswith(b"ray::MapWorker(MapBatches(Embed))")
    return count


def embed_on_ray(folder: Path) -> ray.data.Dataset:
    files = listed(folder)
    items = [{"path": str(f), "label": f.parent.name} for f in files]
    return ray.data.from_items(items).map_batches(
        headstart.ray.Embed,
        fn_constructor_kwargs={"device": "cpu", "cache": False, "workers": 1, "threads": 1},
        batch_format="pyarrow",
        batch_size=16,
        compute=ray.data.ActorPoolStrategy(size=2),
        num_cpus=1,
        # One actor per node, so that losing a node loses an actor.
        ray_remote_args_fn=lambda: {"scheduling_strategy": "SPREAD"},
    )


def check_against_cli(folder: Path, out: Path, tmp_path: Path) -> None:
    """Each input exactly once, embeddings equal to the CLI's, skips with the CLI's reasons, backbone named."""
    table = pq.read_table(out)
    paths = table.column("path").to_pylist()
    files = listed(folder)
    assert sorted(paths) == sorted(str(f) for f in files)
    assert table.column("label").to_pylist() == [Path(p).parent.name for p in paths]

    npz = tmp_path / "cli.npz"
    summary = cli_json("embed", str(folder), "-o", str(npz), "--no-cache", "--json", "--device", "cpu")
    with np.load(npz, allow_pickle=False) as data:
        expected = dict(zip(data["paths"], data["embeddings"]))
        cli_metadata = {key: str(data[key]) for key in ("backbone", "backbone_sha256", "backbone_config", "preprocess")}
    relative = [str(Path(p).relative_to(folder)) for p in paths]
    embedded = [i for i, r in enumerate(relative) if r in expected]
    rows = np.array([table.column("embedding")[i].as_py() for i in embedded], dtype=np.float32)
    assert len(embedded) == len(expected) == len(files) - 2
    assert cosines(rows, np.stack([expected[relative[i]] for i in embedded])).min() >= 0.9999

    reasons = {r: table.column("skipped")[i].as_py() for i, r in enumerate(relative) if r not in expected}
    assert reasons == {s["path"]: s["reason"] for s in summary["skipped"]}
    assert all(table.column("embedding")[i].as_py() is None for i, r in enumerate(relative) if r in reasons)
    assert table.column("embedding").type.list_size == 1280

    metadata = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    for key in ("backbone", "backbone_sha256"):
        assert metadata[f"headstart.{key}"] == cli_metadata[key]
    for key in ("backbone_config", "preprocess"):
        assert json.loads(metadata[f"headstart.{key}"]) == json.loads(cli_metadata[key])


def test_ray_embeds_each_file_once_as_the_cli_does(cluster, ray_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "parquet"
    embed_on_ray(ray_set).write_parquet(str(out))
    check_against_cli(ray_set, out, tmp_path)
    # The CLI trains on Ray's output as on its own.
    bundle = tmp_path / "from_ray.hs"
    cli("train", str(out), "-o", str(bundle), "--quiet")
    assert headstart.load(bundle).class_names == ["defective", "functional"]


def test_losing_a_worker_node_mid_run_loses_and_repeats_nothing(cluster, ray_set: Path, tmp_path: Path) -> None:
    cluster, (_, second) = cluster
    out = tmp_path / "parquet"
    failures: list[BaseException] = []

    def write() -> None:
        try:
            embed_on_ray(ray_set).write_parquet(str(out))
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    # Wait until both actors embed and the first batches are written, then take the second node away.
    deadline = time.monotonic() + 120
    on_second = 0
    while writer.is_alive() and time.monotonic() < deadline:
        on_second = embedding_actors(second)
        if on_second and out.is_dir() and any(out.iterdir()):
            break
        time.sleep(0.2)
    assert writer.is_alive(), "the run ended before the node could be removed: give it more images"
    assert on_second == 1, "no embedding actor ran on the second node"
    cluster.remove_node(second)
    writer.join(timeout=300)
    assert not writer.is_alive(), "the run did not finish after losing a node"
    assert not failures, failures
    check_against_cli(ray_set, out, tmp_path)


def test_write_shards_skips_the_shards_a_run_finished(cluster, ray_set: Path, tmp_path: Path) -> None:
    files = listed(ray_set)
    dataset = ray.data.from_items([{"path": str(f), "label": f.parent.name} for f in files])
    options = {"device": "cpu", "cache": False, "workers": 1, "threads": 1, "actors": 2, "num_cpus": 1, "batch_size": 16}
    out = tmp_path / "shards"
    written = headstart.ray.write_shards(dataset, out, 3, **options)
    assert sorted(p.name for p in written) == [f"ray-0000{k}-of-00003.parquet" for k in range(3)]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    table = pq.read_table(out)
    assert sorted(table.column("path").to_pylist()) == sorted(str(f) for f in files)
    for path in written:
        shard = pq.read_table(path).column("path").to_pylist()
        assert {headstart.ray.shard_of(p, 3) for p in shard} == {int(path.name[4:9])}

    # A re-run does nothing; with a shard lost, it does only that one.
    before = {p: p.stat().st_mtime_ns for p in written}
    assert headstart.ray.write_shards(dataset, out, 3, **options) == []
    lost = written[1]
    lost.unlink()
    assert headstart.ray.write_shards(dataset, out, 3, **options) == [lost]
    assert all(p.stat().st_mtime_ns == before[p] for p in written if p != lost)
    assert sorted(pq.read_table(out).column("path").to_pylist()) == sorted(str(f) for f in files)
    # One set to train on.
    bundle = tmp_path / "b.hs"
    cli("train", str(out), "-o", str(bundle), "--quiet")
    assert headstart.load(bundle).class_names == ["defective", "functional"]
