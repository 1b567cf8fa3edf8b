"""The Python API against the command line on real images and texts: same embeddings, same row order, same
skips, bundles that move between the two, errors with the CLI's messages, and the GIL released while working."""

import ast
import importlib.resources
import json
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import headstart
import headstart.ray
from conftest import cli, cli_json, cosines, listed

TEXT_BACKBONE = "all-minilm-l6-v2"


def write_bmp(path: Path, rgb: np.ndarray) -> None:
    """A 24-bit BMP of `rgb` [H, W, 3]: lossless, and written without an imaging library."""
    height, width, _ = rgb.shape
    stride = (width * 3 + 3) & ~3
    rows = b"".join(
        rgb[y, :, ::-1].tobytes() + b"\0" * (stride - width * 3) for y in range(height - 1, -1, -1)
    )
    header = b"BM" + struct.pack("<IHHI", 54 + len(rows), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    path.write_bytes(header + info + rows)


@pytest.fixture(scope="module")
def embedder() -> headstart.Embedder:
    return headstart.Embedder("efficientnet-lite0", device="cpu", cache=False)


@pytest.fixture(scope="module")
def embedded(embedder: headstart.Embedder, small_set: Path) -> headstart.Embedded:
    return embedder.embed_paths([str(p) for p in listed(small_set)])


def test_embed_paths_equals_the_cli(embedded: headstart.Embedded, small_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.npz"
    summary = cli_json("embed", str(small_set), "-o", str(out), "--no-cache", "--json", "--device", "cpu")
    with np.load(out, allow_pickle=False) as npz:
        cli_rows, cli_paths = npz["embeddings"], list(npz["paths"])
    files = listed(small_set)
    rows = [str(files[i].relative_to(small_set)) for i in embedded.indices]
    assert rows == cli_paths
    assert embedded.embeddings.dtype == np.float32
    assert embedded.embeddings.shape == cli_rows.shape == (40, 1280)
    assert cosines(embedded.embeddings, cli_rows).min() >= 0.9999
    skipped = {str(files[i].relative_to(small_set)): reason for i, reason in embedded.skipped}
    assert skipped == {s["path"]: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"defective/truncated.png", "functional/notes.png"}
    assert skipped["defective/truncated.png"].startswith("truncated")


def test_the_cli_parquet_shards_read_in_pyarrow(embedded: headstart.Embedded, small_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    for shard in ("0/2", "1/2"):
        cli("embed", str(small_set), "--format", "parquet", "--shard", shard, "-o", str(out), "--quiet", "--device", "cpu")
    table = pq.read_table(out)
    for k in (0, 1):
        # headstart.ray.shard_of is the CLI's partition.
        shard = pq.read_table(out / f"part-0000{k}-of-00002.parquet").column("path").to_pylist()
        assert shard and {headstart.ray.shard_of(p, 2) for p in shard} == {k}
    files = listed(small_set)
    relative = [str(f.relative_to(small_set)) for f in files]
    assert sorted(table.column("path").to_pylist()) == sorted(relative)
    by_path = dict(zip(table.column("path").to_pylist(), table.column("embedding").to_pylist()))
    ours = np.stack([by_path[relative[i]] for i in embedded.indices]).astype(np.float32)
    assert cosines(ours, embedded.embeddings).min() >= 0.9999
    reasons = dict(zip(table.column("path").to_pylist(), table.column("skipped").to_pylist()))
    assert {relative[i]: r for i, r in embedded.skipped} == {p: r for p, r in reasons.items() if r is not None}
    assert by_path["functional/notes.png"] is None
    labels = dict(zip(table.column("path").to_pylist(), table.column("label").to_pylist()))
    assert labels["defective/" + files[0].name] == "defective"
    metadata = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert {k.removeprefix("headstart."): v for k, v in metadata.items() if k.startswith("headstart.")} == embedded.metadata


def test_missing_files_are_skipped_not_raised(embedder: headstart.Embedder, small_set: Path) -> None:
    good = str(listed(small_set)[0])
    result = embedder.embed_paths([str(small_set / "missing.png"), good])
    assert list(result.indices) == [1]
    assert result.skipped[0][0] == 0
    assert "cannot read" in result.skipped[0][1]
    assert len(result) == 1


def test_embed_pixels_equals_the_same_pixels_from_files(embedder: headstart.Embedder, tmp_path: Path) -> None:
    pixels = np.random.default_rng(7).integers(0, 256, size=(3, 240, 320, 3), dtype=np.uint8)
    paths = []
    for i, image in enumerate(pixels):
        paths.append(tmp_path / f"{i}.bmp")
        write_bmp(paths[-1], image)
    from_pixels = embedder.embed_pixels(pixels)
    from_files = embedder.embed_paths([str(p) for p in paths])
    assert from_pixels.embeddings.shape == (3, 1280)
    assert list(from_pixels.indices) == [0, 1, 2]
    assert cosines(from_pixels.embeddings, from_files.embeddings).min() >= 0.9999
    # A view that is not contiguous (every other column) is taken as the image it shows.
    strided = embedder.embed_pixels(np.ascontiguousarray(pixels[:, :, ::2]))
    assert cosines(strided.embeddings, embedder.embed_pixels(pixels[:, :, ::2]).embeddings).min() >= 0.9999


def test_embed_pixels_refuses_wrong_shapes(embedder: headstart.Embedder) -> None:
    with pytest.raises(headstart.HeadstartError, match=r"\[N, H, W, 3\]"):
        embedder.embed_pixels(np.zeros((1, 8, 8, 4), dtype=np.uint8))
    with pytest.raises(headstart.HeadstartError, match=r"\[N, H, W, 3\]"):
        embedder.embed_pixels(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(headstart.HeadstartError, match="must be uint8"):
        embedder.embed_pixels(np.zeros((1, 8, 8, 3), dtype=np.float32))


def test_embed_texts_equals_the_cli() -> None:
    texts = ["Where is my order?", "I want a refund for the broken kettle.", "  ", "Do you ship to Norway?"]
    result = headstart.Embedder(TEXT_BACKBONE, device="cpu", cache=False).embed_texts(texts)
    assert list(result.indices) == [0, 1, 3]
    assert result.skipped == [(2, "empty text")]
    kept = [texts[i] for i in result.indices]
    lines = cli("embed", "--text", "--backbone", TEXT_BACKBONE, "--device", "cpu", *kept).stdout.splitlines()
    cli_rows = np.array([json.loads(line)["embedding"] for line in lines], dtype=np.float32)
    assert [json.loads(line)["input"] for line in lines] == kept
    assert cosines(result.embeddings, cli_rows).min() >= 0.9999


def test_trained_bundle_equals_the_cli_and_moves_between_them(
    embedded: headstart.Embedded, small_set: Path, tmp_path: Path
) -> None:
    files = listed(small_set)
    labels = [files[i].parent.name for i in embedded.indices]
    bundle = headstart.train(embedded, labels)
    assert bundle.class_names == ["defective", "functional"]
    assert bundle.head == "logistic" and 0.0 <= bundle.cv_accuracy <= 1.0

    # The CLI trains the same head on the same folder (same rows, same seed).
    cli_bundle = tmp_path / "cli.hs"
    cli("train", str(small_set), "-o", str(cli_bundle), "--device", "cpu", "--no-cache", "--quiet")
    from_cli = headstart.load(cli_bundle)
    ours = bundle.predict_proba(embedded)
    assert ours.shape == (40, 2) and ours.dtype == np.float32
    assert np.abs(ours - from_cli.predict_proba(embedded.embeddings)).max() < 1e-4
    assert from_cli.chosen_c == bundle.chosen_c

    # Saved from Python, the CLI predicts with it as Python does.
    saved = tmp_path / "python.hs"
    bundle.save(saved)
    good = [str(files[i]) for i in embedded.indices[:6]]
    predicted = cli_json("predict", str(saved), *good, "--format", "json", "--top-k", "2", "--device", "cpu")
    by_cli = np.array(
        [[{t["class"]: t["probability"] for t in row["top"]}[c] for c in bundle.class_names] for row in predicted["predictions"]]
    )
    assert np.abs(headstart.load(saved).predict_proba(good) - by_cli).max() < 1e-4
    assert np.abs(bundle.predict_proba(good) - ours[:6]).max() < 1e-4


def test_train_takes_arrays_with_the_embedder_that_made_them(
    embedder: headstart.Embedder, embedded: headstart.Embedded
) -> None:
    labels = np.arange(len(embedded)) % 2
    bundle = headstart.train(embedded.embeddings.astype(np.float64), labels, embedder=embedder, head="centroid")
    assert bundle.class_names == ["0", "1"] and bundle.head == "centroid"
    assert bundle.predict_proba(embedded.embeddings).shape == (40, 2)
    with pytest.raises(headstart.HeadstartError, match="which backbone"):
        headstart.train(embedded.embeddings, labels)
    with pytest.raises(headstart.HeadstartError, match="one label per row"):
        headstart.train(embedded, labels[:-1])
    with pytest.raises(headstart.HeadstartError, match="'forest' is not one of"):
        headstart.train(embedded, labels, head="forest")


def test_audit_answers_as_the_cli_does_and_finds_planted_flips(
    embedded: headstart.Embedded, small_set: Path
) -> None:
    files = listed(small_set)
    names = [str(files[i].relative_to(small_set)) for i in embedded.indices]
    labels = [files[i].parent.name for i in embedded.indices]
    ours = headstart.audit(embedded, labels, names=names)
    theirs = cli_json("audit", str(small_set), "--json", "--device", "cpu", "--no-cache")
    for kind in ("label_issues", "outliers"):
        assert [(i["path"], i.get("suggested")) for i in ours[kind]] == [
            (i["path"], i.get("suggested")) for i in theirs[kind]
        ]
        assert all(names[i["row"]] == i["path"] for i in ours[kind])
        assert np.allclose([i["score"] for i in ours[kind]], [i["score"] for i in theirs[kind]], atol=1e-4)
    for count in ("rows", "label_issues", "outliers", "duplicate_groups"):
        assert ours["summary"][count] == theirs["summary"][count], count

    # Two labels flipped, and a row given twice (once more at the end, in the other class): the flips are the top
    # of the ranking, the copy is an exact duplicate group across classes.
    flipped = [4, 25]
    other = {"defective": "functional", "functional": "defective"}
    noisy = [other[label] if row in flipped else label for row, label in enumerate(labels)]
    rows = np.vstack([embedded.embeddings, embedded.embeddings[7:8]])
    noisy.append(other[noisy[7]])
    embedder = headstart.Embedder("efficientnet-lite0", device="cpu", cache=False)
    found = headstart.audit(rows, noisy, embedder=embedder)
    top = sorted(i["row"] for i in found["label_issues"][: len(flipped)])
    assert top == flipped, found["label_issues"]
    assert all(i["suggested"] == labels[i["row"]] for i in found["label_issues"][: len(flipped)])
    exact = [g for g in found["duplicates"] if g["exact"]]
    assert [g["rows"] for g in exact] == [[7, len(labels)]] and exact[0]["conflicting"]
    assert {f["row"]: f["action"] for f in found["fixes"]}[len(labels)] == "exclude"
    with pytest.raises(headstart.HeadstartError, match="one name per row"):
        headstart.audit(embedded, labels, names=names[:-1])


def test_every_head_and_open_set_rejection(embedded: headstart.Embedded, small_set: Path) -> None:
    files = listed(small_set)
    labels = [files[i].parent.name for i in embedded.indices]
    for head in ["logistic", "centroid", "knn", "gaussian-nb", "linear-svm"]:
        bundle = headstart.train(embedded, labels, head=head, grid=[0.1])
        assert bundle.head == head and bundle.novelty_threshold is None
        assert bundle.predict_proba(embedded).shape == (len(embedded), 2)
    reference = headstart.train(embedded, labels, solver="linfa", grid=[0.1])
    assert reference.head == "logistic"
    bundle = headstart.train(embedded, labels, open_set=0.05)
    scores = bundle.novelty(embedded)
    assert scores.dtype == np.float32 and scores.shape == (len(embedded),)
    # Against every training row, a training row is at most as far as it was out of fold, where 5 % were beyond.
    assert (scores > bundle.novelty_threshold).mean() <= 0.05
    # The embeddings turned around are as far from the training data as anything can be.
    assert (bundle.novelty(-embedded.embeddings) > bundle.novelty_threshold).all()
    with pytest.raises(headstart.HeadstartError, match="without open_set"):
        reference.novelty(embedded)


def test_predict_answers_as_the_cli_does(embedded: headstart.Embedded, small_set: Path, tmp_path: Path) -> None:
    files = listed(small_set)
    bundle = headstart.train(embedded, [files[i].parent.name for i in embedded.indices], open_set=0.05)
    saved = tmp_path / "open.hs"
    bundle.save(saved)
    paths = [str(files[i]) for i in embedded.indices[:8]]
    options = ["--top-k", "2", "--min-confidence", "0.8"]
    by_cli = cli_json("predict", str(saved), *paths, "--format", "json", *options, "--device", "cpu")["predictions"]
    answers = bundle.predict(paths, top_k=2, min_confidence=0.8)
    assert [a["label"] or "unknown" for a in answers] == [row["label"] for row in by_cli]
    assert [a["novel"] for a in answers] == [row["novel"] for row in by_cli]
    for answer, row in zip(answers, by_cli):
        assert [name for name, _ in answer["top"]] == [t["class"] for t in row["top"]]
        assert abs(answer["novelty"] - row["novelty"]) < 1e-4
    # Embeddings answer as the files they came from; a label is the top class unless held back.
    probabilities = bundle.predict_proba(embedded)
    for answer, row in zip(bundle.predict(embedded), probabilities):
        top_class, top_probability = answer["top"][0]
        assert top_class == bundle.class_names[int(np.argmax(row))] and abs(top_probability - row.max()) < 1e-6
        assert answer["label"] == (None if answer["novel"] else top_class) and answer["labels"] is None
    # Inputs unlike anything trained on are unknown.
    assert all(a["novel"] and a["label"] is None for a in bundle.predict(-embedded.embeddings))
    with pytest.raises(headstart.HeadstartError, match="between 0 and 1"):
        bundle.predict(embedded, min_confidence=2.0)


def test_export_writes_what_the_cli_writes(embedded: headstart.Embedded, small_set: Path, tmp_path: Path) -> None:
    files = listed(small_set)
    bundle = headstart.train(embedded, [files[i].parent.name for i in embedded.indices])
    saved = tmp_path / "b.hs"
    bundle.save(saved)
    ours = tmp_path / "python.onnx"
    size = bundle.export(ours, raw_input=True)
    cli("export", str(saved), "-o", str(tmp_path / "cli.onnx"), "--raw-input", "--device", "cpu")
    assert size == ours.stat().st_size > 1_000_000
    assert ours.read_bytes() == (tmp_path / "cli.onnx").read_bytes()
    with pytest.raises(headstart.HeadstartError, match="give the exported file an .onnx name"):
        bundle.export(tmp_path / "model.bin")
    assert not (tmp_path / "model.bin").exists()


def test_errors_carry_the_cli_message(tmp_path: Path) -> None:
    with pytest.raises(headstart.HeadstartError) as raised:
        headstart.Embedder("no-such-backbone.onnx")
    message = cli("inspect", "no-such-backbone.onnx", check=False).stderr.strip()
    assert message == f"error: {raised.value}"
    with pytest.raises(headstart.HeadstartError, match="'gpu' is not one of auto, cpu, cuda"):
        headstart.Embedder(device="gpu")
    not_a_bundle = tmp_path / "x.hs"
    not_a_bundle.write_text("hello")
    with pytest.raises(headstart.HeadstartError, match="not a headstart bundle"):
        headstart.load(not_a_bundle)
    with pytest.raises(headstart.HeadstartError, match="this model takes images"):
        headstart.Embedder(device="cpu").embed_texts(["hello"])


def test_embedding_releases_the_gil(small_set: Path) -> None:
    embedder = headstart.Embedder(device="cpu", cache=False)
    paths = [str(p) for p in listed(small_set)] * 2
    done = threading.Event()
    worker = threading.Thread(target=lambda: (embedder.embed_paths(paths), done.set()))
    started = time.perf_counter()
    worker.start()
    ticks = 0
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    seconds = time.perf_counter() - started
    # Holding the GIL for the whole call would leave this thread a tick or two.
    assert ticks >= 20, f"{ticks} ticks in {seconds:.2f} s"


def test_type_stubs_name_what_the_module_has() -> None:
    stub = importlib.resources.files("headstart").joinpath("_headstart.pyi").read_text()
    assert importlib.resources.files("headstart").joinpath("py.typed").is_file()
    tree = ast.parse(stub)
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            runtime = getattr(headstart, node.name)
            for member in node.body:
                if isinstance(member, ast.FunctionDef) and not member.name.startswith("__"):
                    assert hasattr(runtime, member.name), f"{node.name}.{member.name}"
        elif isinstance(node, ast.FunctionDef):
            assert callable(getattr(headstart, node.name)), node.name
    stubbed = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    assert stubbed == set(headstart.__all__) - {"__version__"}
