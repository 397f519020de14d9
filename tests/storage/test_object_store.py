"""The object store contract, run on a local folder and on a real S3 API (moto_server over HTTP).

Nothing is mocked: the S3 store talks to a ``moto_server`` process through boto3, the local
store writes real files. Failures of local writes are produced by the kernel (a file size limit,
``RLIMIT_FSIZE``), not by patching the code under test.
"""

from __future__ import annotations

import hashlib
import os
import resource
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recsys.config import Settings
from recsys.storage.object_store import (
    BucketNotFoundError,
    LocalObjectStore,
    ObjectNotFoundError,
    ObjectStore,
    S3ObjectStore,
    open_object_store,
)
from tests.s3_server import s3_client

MB = 1024 * 1024
TMP_MARKER = ".objstore-tmp-"


@dataclass
class StoreCase:
    """A store under test and the URL its keys must resolve to, computed independently."""

    kind: str
    store: ObjectStore
    base_url: str  # e.g. "/tmp/.../store" or "s3://bucket/recsys"
    settings: Settings | None = None

    @property
    def bucket(self) -> str:
        assert self.settings is not None
        return bucket_of(self.settings)


def bucket_of(settings: Settings) -> str:
    """The bucket of an ``s3://bucket/prefix`` store URL."""
    return settings.store_url.removeprefix("s3://").split("/", 1)[0]


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> StoreCase:
    """The same test on a local folder store and on an S3 store over real HTTP."""
    if request.param == "local":
        root = tmp_path / "store"
        return StoreCase("local", open_object_store(str(root)), str(root))
    settings: Settings = request.getfixturevalue("s3_settings")
    return StoreCase("s3", open_object_store(settings.store_url, settings), settings.store_url, settings)


@pytest.fixture
def store(case: StoreCase) -> ObjectStore:
    return case.store


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 4 * MB))
            out.write(chunk)
            remaining -= len(chunk)
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        for chunk in iter(lambda: src.read(MB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def temp_leftovers(folder: Path) -> list[str]:
    """Temporary files of object store writes left in ``folder`` (recursively)."""
    return sorted(p.name for p in folder.rglob("*") if TMP_MARKER in p.name)


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Let the kernel fail (EFBIG) any write of this process past ``limit`` bytes of a file.

    Python ignores SIGXFSZ, so the write raises ``OSError`` instead of killing the process.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", bytes(range(256)) * 17, "día, 日本語".encode()],
    ids=["empty", "ascii", "binary", "utf8"],
)
def test_bytes_round_trip(store: ObjectStore, data: bytes) -> None:
    key = "models/als/2015-09-18/model.npz"
    assert not store.exists(key)
    store.put_bytes(key, data)
    assert store.exists(key)
    assert store.get_bytes(key) == data
    assert store.list() == [key]


@pytest.mark.parametrize("size", [0, 1000, 20 * MB], ids=["empty", "1kB", "20MB"])
def test_file_round_trip(store: ObjectStore, tmp_path: Path, size: int) -> None:
    source = random_file(tmp_path / "in" / "model.npz", size)
    key = "models/als/model.npz"
    store.put_file(key, source)
    # Downloads create missing parent folders.
    target = tmp_path / "out" / "nested" / "model.npz"
    store.get_file(key, target)
    assert target.stat().st_size == size
    assert sha256(target) == sha256(source)
    assert store.get_bytes(key) == source.read_bytes()
    assert temp_leftovers(tmp_path) == []


def test_keys_with_spaces_and_unicode(store: ObjectStore) -> None:
    keys = ["reports/día 1/summary (final).json", "reports/a+b=c&d.txt", "reports/日本.bin"]
    for i, key in enumerate(keys):
        store.put_bytes(key, str(i).encode())
    assert store.list("reports") == sorted(keys)
    for i, key in enumerate(keys):
        assert store.get_bytes(key) == str(i).encode()


def test_overwrite_replaces_content(store: ObjectStore, tmp_path: Path) -> None:
    key = "encoders/items.json"
    store.put_bytes(key, b"a much longer first version of the object")
    store.put_bytes(key, b"v2")
    assert store.get_bytes(key) == b"v2"
    source = tmp_path / "v3.json"
    source.write_bytes(b"version three")
    store.put_file(key, source)
    assert store.get_bytes(key) == b"version three"
    assert store.list() == [key]


def test_get_file_overwrites_existing_destination(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("a/b.bin", b"new")
    target = tmp_path / "b.bin"
    target.write_bytes(b"old content, longer than the new one")
    store.get_file("a/b.bin", target)
    assert target.read_bytes() == b"new"
    assert temp_leftovers(tmp_path) == []


# --- listing --------------------------------------------------------------------------------------

LIST_KEYS = [
    "models/a/x.npz",
    "models/a/b/y.npz",
    "models/ab/z.npz",
    "models/a.txt",
    "other/q",
    "top",
]


def test_list_prefix_is_a_folder(store: ObjectStore) -> None:
    for key in LIST_KEYS:
        store.put_bytes(key, key.encode())

    assert store.list() == sorted(LIST_KEYS)
    assert store.list("") == sorted(LIST_KEYS)
    # Recursive, full keys, and "models/a" is a folder: not models/ab/..., not models/a.txt.
    assert store.list("models/a") == ["models/a/b/y.npz", "models/a/x.npz"]
    assert store.list("models/a/") == ["models/a/b/y.npz", "models/a/x.npz"]
    assert store.list("models/a/b") == ["models/a/b/y.npz"]
    assert store.list("models") == ["models/a.txt", "models/a/b/y.npz", "models/a/x.npz", "models/ab/z.npz"]
    # No partial-name matches, an object is not a folder, unknown folders are empty.
    assert store.list("mod") == []
    assert store.list("models/a.t") == []
    assert store.list("top") == []
    assert store.list("models/a/x.npz") == []
    assert store.list("nothing/here") == []


@pytest.mark.parametrize("prefix", ["/models", "../models", "models//a", "a/../b", "./a", "/", "a\\b"])
def test_list_rejects_invalid_prefixes(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid prefix"):
        store.list(prefix)


def test_list_of_empty_store(store: ObjectStore) -> None:
    assert store.list() == []
    assert store.list("models") == []


# --- delete / exists ------------------------------------------------------------------------------


def test_delete(store: ObjectStore) -> None:
    store.put_bytes("models/a/x", b"x")
    store.put_bytes("models/a/y", b"y")
    store.delete("models/a/x")
    assert not store.exists("models/a/x")
    assert store.exists("models/a/y")
    assert store.list() == ["models/a/y"]
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("models/a/x")
    with pytest.raises(ObjectNotFoundError):
        store.delete("models/a/x")


def test_a_deleted_folder_can_become_an_object(store: ObjectStore) -> None:
    """As on S3, a folder exists only while it holds objects."""
    store.put_bytes("models/a/x", b"x")
    store.delete("models/a/x")
    assert store.list() == []
    store.put_bytes("models/a", b"now an object")
    assert store.get_bytes("models/a") == b"now an object"
    assert store.list() == ["models/a"]


def test_a_folder_is_not_an_object(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("models/a/x", b"x")
    assert not store.exists("models/a")
    assert not store.exists("models")
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("models/a")
    with pytest.raises(ObjectNotFoundError):
        store.get_file("models/a", tmp_path / "out")
    with pytest.raises(ObjectNotFoundError):
        store.delete("models/a")
    assert store.list() == ["models/a/x"]


# --- missing keys ---------------------------------------------------------------------------------


def test_missing_key_raises_object_not_found_naming_the_url(case: StoreCase, tmp_path: Path) -> None:
    store = case.store
    key = "missing/model.npz"
    expected_url = f"{case.base_url}/{key}"
    assert store.url(key) == expected_url
    if case.kind == "s3":
        assert expected_url == f"s3://{case.bucket}/recsys/missing/model.npz"
    else:
        assert Path(expected_url).is_absolute()

    assert not store.exists(key)
    for call in (
        lambda: store.get_bytes(key),
        lambda: store.get_file(key, tmp_path / "out.npz"),
        lambda: store.delete(key),
    ):
        with pytest.raises(ObjectNotFoundError) as info:
            call()
        assert isinstance(info.value, KeyError)
        assert info.value.key == key
        assert info.value.url == expected_url
        assert str(info.value) == f"object not found: {expected_url}"
    assert not (tmp_path / "out.npz").exists()
    assert temp_leftovers(tmp_path) == []


def test_failed_download_keeps_the_existing_destination(store: ObjectStore, tmp_path: Path) -> None:
    target = tmp_path / "keep" / "model.npz"
    target.parent.mkdir()
    target.write_bytes(b"previous download")
    with pytest.raises(ObjectNotFoundError):
        store.get_file("missing/model.npz", target)
    assert target.read_bytes() == b"previous download"
    assert os.listdir(target.parent) == ["model.npz"]


def test_put_file_of_a_missing_source(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.put_file("models/x", tmp_path / "does-not-exist")
    assert store.list() == []


# --- key validation -------------------------------------------------------------------------------

INVALID_KEYS = [
    "",
    "/abs/model.npz",
    "models//model.npz",
    "models/",
    "../outside",
    "models/../../outside",
    "./model.npz",
    "models/.",
    "models\\model.npz",
    "models/\0",
    f"models/{TMP_MARKER}abc.tmp",
]


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_rejected_everywhere(case: StoreCase, tmp_path: Path, key: str) -> None:
    store = case.store
    source = tmp_path / "src.bin"
    source.write_bytes(b"data")
    calls: dict[str, Any] = {
        "put_bytes": lambda: store.put_bytes(key, b"data"),
        "put_file": lambda: store.put_file(key, source),
        "get_bytes": lambda: store.get_bytes(key),
        "get_file": lambda: store.get_file(key, tmp_path / "dst.bin"),
        "exists": lambda: store.exists(key),
        "delete": lambda: store.delete(key),
        "url": lambda: store.url(key),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="invalid object key") as info:
            call()
        assert repr(key) in str(info.value), name
    # Nothing was written anywhere, inside or outside the store.
    assert store.list() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.bin"]


# --- S3 specifics ---------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_objects_live_under_the_prefix_and_large_files_use_multipart(
    s3_settings: Settings, tmp_path: Path
) -> None:
    store = open_object_store(s3_settings.store_url, s3_settings)
    assert isinstance(store, S3ObjectStore)
    raw = s3_client(str(s3_settings.s3_endpoint_url))
    source = random_file(tmp_path / "big.bin", 20 * MB)
    store.put_file("models/big.bin", source)
    store.put_bytes("models/small.bin", b"small")

    head = raw.head_object(Bucket=store.bucket, Key="recsys/models/big.bin")
    assert head["ContentLength"] == 20 * MB
    # A multipart upload's ETag is "<md5 of part md5s>-<number of parts>".
    etag = head["ETag"].strip('"')
    assert "-" in etag
    assert int(etag.rsplit("-", 1)[1]) >= 2
    small = raw.head_object(Bucket=store.bucket, Key="recsys/models/small.bin")
    assert "-" not in small["ETag"]

    listed = raw.list_objects_v2(Bucket=store.bucket)
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "recsys/models/big.bin",
        "recsys/models/small.bin",
    ]


@pytest.mark.s3
def test_s3_list_ignores_keys_outside_the_store_prefix_and_folder_markers(s3_settings: Settings) -> None:
    store = open_object_store(s3_settings.store_url, s3_settings)
    assert isinstance(store, S3ObjectStore)
    raw = s3_client(str(s3_settings.s3_endpoint_url))
    for key in ["recsysX/a", "other/a", "recsys", "recsys/models/", "recsys/models//odd"]:
        raw.put_object(Bucket=store.bucket, Key=key, Body=b"not ours")
    store.put_bytes("models/a", b"ours")
    assert store.list() == ["models/a"]
    assert store.list("models") == ["models/a"]


@pytest.mark.s3
def test_s3_list_follows_pagination(s3_settings: Settings) -> None:
    store = open_object_store(s3_settings.store_url, s3_settings)
    assert isinstance(store, S3ObjectStore)
    keys = [f"parts/{i:02d}.bin" for i in range(7)]
    for key in keys:
        store.put_bytes(key, b"x")
    store.list_page_size = 2  # four ListObjectsV2 requests
    assert store.list("parts") == keys
    assert store.list() == keys


@pytest.mark.s3
def test_s3_store_at_bucket_root_and_nested_prefix(s3_settings: Settings) -> None:
    bucket = bucket_of(s3_settings)
    raw = s3_client(str(s3_settings.s3_endpoint_url))

    at_root = open_object_store(f"s3://{bucket}", s3_settings)
    assert isinstance(at_root, S3ObjectStore)
    assert at_root.prefix == ""
    assert at_root.url("m/x") == f"s3://{bucket}/m/x"
    at_root.put_bytes("m/x", b"root")

    nested = open_object_store(f"s3://{bucket}/team/recsys/", s3_settings)
    assert isinstance(nested, S3ObjectStore)
    assert nested.prefix == "team/recsys"
    nested.put_bytes("m/x", b"nested")

    assert raw.get_object(Bucket=bucket, Key="m/x")["Body"].read() == b"root"
    assert raw.get_object(Bucket=bucket, Key="team/recsys/m/x")["Body"].read() == b"nested"
    assert at_root.list() == ["m/x", "team/recsys/m/x"]
    assert nested.list() == ["m/x"]


@pytest.mark.s3
def test_s3_missing_bucket_is_a_clear_error_and_ensure_bucket_creates_it(
    s3_settings: Settings, tmp_path: Path
) -> None:
    endpoint = str(s3_settings.s3_endpoint_url)
    bucket = f"recsys-missing-{uuid.uuid4().hex[:12]}"
    store = open_object_store(f"s3://{bucket}/models", s3_settings)
    assert isinstance(store, S3ObjectStore)
    source = tmp_path / "src"
    source.write_bytes(b"data")

    calls: dict[str, Any] = {
        "get_bytes": lambda: store.get_bytes("a"),
        "get_file": lambda: store.get_file("a", tmp_path / "dst"),
        "put_bytes": lambda: store.put_bytes("a", b"x"),
        "put_file": lambda: store.put_file("a", source),
        "exists": lambda: store.exists("a"),
        "list": store.list,
        "delete": lambda: store.delete("a"),
    }
    for name, call in calls.items():
        with pytest.raises(BucketNotFoundError) as info:
            call()
        message = str(info.value)
        assert f"S3 bucket {bucket!r} does not exist at {endpoint}" in message, name
        assert endpoint in message, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]

    store.ensure_bucket()
    store.ensure_bucket()  # idempotent
    store.put_bytes("a", b"works")
    assert store.get_bytes("a") == b"works"
    raw = s3_client(endpoint)
    assert raw.get_object(Bucket=bucket, Key="models/a")["Body"].read() == b"works"
    raw.delete_object(Bucket=bucket, Key="models/a")
    raw.delete_bucket(Bucket=bucket)


@pytest.mark.s3
def test_s3_client_is_built_from_settings(s3_settings: Settings) -> None:
    store = open_object_store(s3_settings.store_url, s3_settings)
    assert isinstance(store, S3ObjectStore)
    assert store.endpoint_url == s3_settings.s3_endpoint_url
    assert store.client.meta.region_name == "us-east-1"
    credentials = store.client._request_signer._credentials  # what requests are signed with
    assert (credentials.access_key, credentials.secret_key) == ("testing", "testing")


def test_s3_credentials_must_be_given_together() -> None:
    settings = Settings(_env_file=None, s3_access_key_id="only-the-id")
    with pytest.raises(ValueError, match="RECSYS_S3_SECRET_ACCESS_KEY"):
        open_object_store("s3://bucket/prefix", settings)


# --- open_object_store URL parsing ----------------------------------------------------------------


def test_open_local_store_from_paths_and_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = open_object_store(str(tmp_path / "plain"))
    assert isinstance(plain, LocalObjectStore)
    assert plain.root == tmp_path / "plain"

    via_url = open_object_store((tmp_path / "via url").as_uri())  # file:///.../via%20url
    assert isinstance(via_url, LocalObjectStore)
    assert via_url.root == tmp_path / "via url"
    via_url.put_bytes("m/x.bin", b"payload")
    assert (tmp_path / "via url" / "m" / "x.bin").read_bytes() == b"payload"

    localhost = open_object_store(f"file://localhost{tmp_path}/h")
    assert isinstance(localhost, LocalObjectStore)
    assert localhost.root == tmp_path / "h"

    monkeypatch.chdir(tmp_path)
    relative = open_object_store("data/object_store")
    assert isinstance(relative, LocalObjectStore)
    assert relative.root == tmp_path / "data" / "object_store"
    relative.put_bytes("k", b"v")
    assert (tmp_path / "data" / "object_store" / "k").read_bytes() == b"v"


def test_open_store_from_default_settings_url(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    store = open_object_store(settings.store_url, settings)
    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path / "data" / "object_store"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("gs://bucket/prefix", "unsupported object store URL"),
        ("http://127.0.0.1:9000/bucket", "unsupported object store URL"),
        ("file://otherhost/data", "must be local"),
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
        ("s3://bucket/a/../b", "invalid key prefix"),
        ("s3://bucket/a//b", "invalid key prefix"),
        ("s3://bucket/prefix?versionId=1", "query"),
    ],
)
def test_open_store_rejects_bad_urls(url: str, message: str) -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ValueError, match=message):
        open_object_store(url, settings)


# --- local store: atomic writes -------------------------------------------------------------------


def test_local_failed_put_keeps_old_object_and_leaves_no_temp_file(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes("models/m.bin", b"old")
    big = random_file(tmp_path / "big.bin", 2 * MB)  # written before the limit is set

    with file_size_limit(256 * 1024):
        with pytest.raises(OSError, match="too large"):
            store.put_bytes("models/m.bin", b"n" * MB)
        with pytest.raises(OSError, match="too large"):
            store.put_file("models/m.bin", big)
        with pytest.raises(OSError, match="too large"):
            store.put_bytes("models/new.bin", b"n" * MB)

    assert store.get_bytes("models/m.bin") == b"old"
    assert not store.exists("models/new.bin")
    assert sorted(os.listdir(tmp_path / "store" / "models")) == ["m.bin"]
    assert store.list() == ["models/m.bin"]


def test_failed_download_mid_way_keeps_old_file(case: StoreCase, tmp_path: Path) -> None:
    """Kernel-enforced write failure while downloading: the old destination stays whole."""
    store = case.store
    store.put_file("models/big.bin", random_file(tmp_path / "big.bin", 2 * MB))
    target = tmp_path / "out" / "big.bin"
    target.parent.mkdir()
    target.write_bytes(b"previous")

    with file_size_limit(256 * 1024), pytest.raises(OSError, match="too large"):
        store.get_file("models/big.bin", target)

    assert target.read_bytes() == b"previous"
    assert os.listdir(target.parent) == ["big.bin"]
    store.get_file("models/big.bin", target)  # and works again without the limit
    assert sha256(target) == sha256(tmp_path / "big.bin")


def test_local_readers_never_see_a_partial_object(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    versions = [bytes([v]) * (2 * MB) for v in (1, 2)]
    store.put_bytes("m.bin", versions[0])
    seen: set[bytes] = set()
    bad: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            data = store.get_bytes("m.bin")
            if data not in versions:
                bad.append(len(data))
            seen.add(data[:1])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(40):
            store.put_bytes("m.bin", versions[i % 2])
    finally:
        done.set()
        reader.join()
    assert bad == []
    assert store.get_bytes("m.bin") == versions[1]


def test_local_store_hides_temp_files_of_crashed_writers(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes("models/m.bin", b"m")
    (tmp_path / "store" / "models" / f"{TMP_MARKER}deadbeef.tmp").write_bytes(b"half")
    assert store.list() == ["models/m.bin"]
    assert store.list("models") == ["models/m.bin"]


def test_local_objects_get_normal_permissions(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    umask = os.umask(0o022)
    try:
        store.put_bytes("m.bin", b"m")
    finally:
        os.umask(umask)
    assert (tmp_path / "store" / "m.bin").stat().st_mode & 0o777 == 0o644


def test_local_delete_prunes_empty_folders_but_not_the_root(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalObjectStore(root)
    store.put_bytes("a/b/c/x", b"x")
    store.put_bytes("a/y", b"y")
    store.delete("a/b/c/x")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["a", "a/y"]
    store.delete("a/y")
    assert root.is_dir()
    assert list(root.iterdir()) == []
