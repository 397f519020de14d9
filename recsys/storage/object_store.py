"""Object store for models, encoders and other artefacts: a local folder or an S3 bucket.

Both stores share one small interface, :class:`ObjectStore`. Objects are addressed by *keys*:
relative POSIX paths such as ``"models/als/2015-09-18/model.npz"``. A key has no leading ``/``,
no empty segment (``a//b``, trailing ``/``), no ``.`` or ``..`` segment and no backslash, so the
same key means the same thing on every store and can never escape the store's root.

Listing treats a prefix as a *folder*: ``list("models/a")`` returns the keys below
``models/a/`` (recursively) and never ``models/ab/...`` nor an object named exactly ``models/a``.

:func:`open_object_store` turns a URL into a store:

- ``s3://bucket/optional/prefix`` gives an :class:`S3ObjectStore`, whose boto3 client uses
  :attr:`recsys.config.Settings.s3_endpoint_url` (MinIO or any S3-compatible server; empty means
  AWS), the credentials from the settings when set (else boto3's default chain) and the region;
- ``file:///abs/path`` or a plain folder path gives a :class:`LocalObjectStore`.

Writes are atomic on both stores: a reader sees the old object or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit
from urllib.request import url2pathname

if TYPE_CHECKING:
    from recsys.config import Settings

__all__ = [
    "BucketNotFoundError",
    "LocalObjectStore",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectStoreError",
    "S3ObjectStore",
    "make_s3_client",
    "open_object_store",
    "validate_key",
]

# Temporary files of in-progress local writes start with this; keys may not use it.
_TMP_PREFIX = ".objstore-tmp-"
_COPY_CHUNK = 1024 * 1024


class ObjectStoreError(Exception):
    """Base class of the object store errors."""


class ObjectNotFoundError(ObjectStoreError, KeyError):
    """No object under a key; the message names the full URL or path that was looked up.

    Parameters
    ----------
    key : str
        The key that was looked up.
    url : str
        The full URL (``s3://bucket/prefix/key``) or local path of the missing object.
    """

    def __init__(self, key: str, url: str) -> None:
        self.key = key
        self.url = url
        super().__init__(f"object not found: {url}")

    def __str__(self) -> str:
        # KeyError quotes its message (``str(KeyError("x")) == "'x'"``); show it plainly.
        return f"object not found: {self.url}"


class BucketNotFoundError(ObjectStoreError):
    """The S3 bucket of a store does not exist on its endpoint.

    Parameters
    ----------
    bucket : str
        Name of the missing bucket.
    endpoint_url : str
        The S3 endpoint that was asked.
    """

    def __init__(self, bucket: str, endpoint_url: str) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        super().__init__(
            f"S3 bucket {bucket!r} does not exist at {endpoint_url}: create it (S3ObjectStore.ensure_bucket"
            " in dev setups) or fix RECSYS_OBJECT_STORE_URL / RECSYS_S3_ENDPOINT_URL"
        )


def validate_key(key: str) -> str:
    """Check that ``key`` is a relative POSIX path usable on every store and return it.

    Parameters
    ----------
    key : str
        Candidate key, e.g. ``"models/als/2015-09-18/model.npz"``.

    Returns
    -------
    str
        ``key`` unchanged.

    Raises
    ------
    ValueError
        If the key is empty, absolute, contains an empty, ``.`` or ``..`` segment, a backslash or a
        NUL character, or a segment starting with the reserved temporary-file prefix.
    """
    if not isinstance(key, str):
        raise TypeError(f"object key must be a str, not {type(key).__name__}: {key!r}")
    problem = _key_problem(key)
    if problem is not None:
        raise ValueError(
            f"invalid object key {key!r}: {problem} "
            "(expected a relative POSIX path like 'models/als/2015-09-18/model.npz')"
        )
    return key


def _key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid key, or ``None`` if it is."""
    if not key:
        return "it is empty"
    if key.startswith("/"):
        return "it is absolute (starts with '/')"
    if "\\" in key:
        return "it contains a backslash"
    if "\0" in key:
        return "it contains a NUL character"
    for segment in key.split("/"):
        if segment == "":
            return "it has an empty segment ('//' or a trailing '/')"
        if segment in {".", ".."}:
            return f"it has a {segment!r} segment"
        if segment.startswith(_TMP_PREFIX):
            return f"segments starting with {_TMP_PREFIX!r} are reserved for temporary files"
    return None


def _normalize_prefix(prefix: str) -> str:
    """A list prefix without its optional trailing ``/``; ``""`` means the whole store."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, not {type(prefix).__name__}: {prefix!r}")
    stripped = prefix[:-1] if prefix.endswith("/") else prefix
    if stripped == "":
        if prefix:
            raise ValueError(f"invalid prefix {prefix!r}: use '' to list the whole store")
        return ""
    problem = _key_problem(stripped)
    if problem is not None:
        raise ValueError(
            f"invalid prefix {prefix!r}: {problem} (expected a folder-like relative path like 'models/als')"
        )
    return stripped


class ObjectStore(ABC):
    """A flat store of byte objects addressed by relative POSIX keys.

    Every method validates its key (see :func:`validate_key`) and raises ``ValueError`` for an
    invalid one. Reading, deleting or downloading a missing key raises
    :class:`ObjectNotFoundError`, whose message names :meth:`url` of the key.
    """

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, atomically replacing any previous object.

        Parameters
        ----------
        key : str
            Destination key.
        data : bytes
            Content of the object.
        """

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read the whole object under ``key``.

        Parameters
        ----------
        key : str
            Key to read.

        Returns
        -------
        bytes
            Content of the object.

        Raises
        ------
        ObjectNotFoundError
            If there is no object under ``key``.
        """

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Upload the local file ``path`` to ``key``, atomically replacing any previous object.

        Parameters
        ----------
        key : str
            Destination key.
        path : Path
            Local file to upload (``FileNotFoundError`` if it does not exist).
        """

    @abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Download the object under ``key`` to the local file ``path``.

        The object is written to a temporary file next to ``path`` which is then renamed over
        ``path``: on failure ``path`` keeps its previous content (or stays absent) and no
        temporary file remains. Missing parent folders of ``path`` are created.

        Parameters
        ----------
        key : str
            Key to download.
        path : Path
            Local destination file.

        Raises
        ------
        ObjectNotFoundError
            If there is no object under ``key``.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``.

        Parameters
        ----------
        key : str
            Key to check.

        Returns
        -------
        bool
            ``True`` if an object exists under exactly this key (a "folder" is not an object).
        """

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys below a folder-like prefix, recursively, sorted.

        Parameters
        ----------
        prefix : str, optional
            A folder-like relative path (a trailing ``/`` is allowed); ``""`` lists the whole
            store. ``"models/a"`` matches ``models/a/x`` and ``models/a/b/y`` but neither
            ``models/ab/x`` nor an object named exactly ``models/a``.

        Returns
        -------
        list of str
            Full keys (relative to the store, not to the prefix), sorted; empty if none.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object under ``key``.

        Parameters
        ----------
        key : str
            Key to delete.

        Raises
        ------
        ObjectNotFoundError
            If there is no object under ``key``.
        """

    @abstractmethod
    def url(self, key: str) -> str:
        """Full URL or path of ``key``, for messages and logs.

        Parameters
        ----------
        key : str
            Key to locate.

        Returns
        -------
        str
            ``s3://bucket/prefix/key`` on S3, the absolute file path on a local store.
        """


class LocalObjectStore(ObjectStore):
    """Objects as files below a local folder.

    Writes go to a temporary file in the destination folder, are flushed to disk (``fsync``) and
    then renamed over the destination (``os.replace``), so a reader never sees a half-written
    object and a failed write leaves the previous object intact. Deleting an object removes the
    folders it leaves empty, so that (as on S3) folders exist only while they hold objects.

    Parameters
    ----------
    root : Path
        Folder of the store; created on the first write. Made absolute.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def url(self, key: str) -> str:
        """Absolute path of ``key``'s file (see :meth:`ObjectStore.url`)."""
        return str(self._path(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` to ``key``'s file atomically (see :meth:`ObjectStore.put_bytes`)."""
        data = bytes(data)
        with _atomic_write(self._path(key)) as out:
            out.write(data)

    def put_file(self, key: str, path: Path) -> None:
        """Copy the file ``path`` to ``key``'s file atomically (see :meth:`ObjectStore.put_file`)."""
        destination = self._path(key)
        with open(path, "rb") as src, _atomic_write(destination) as out:
            shutil.copyfileobj(src, out, _COPY_CHUNK)

    def get_bytes(self, key: str) -> bytes:
        """Read ``key``'s file (see :meth:`ObjectStore.get_bytes`)."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(key, str(path)) from None

    def get_file(self, key: str, path: Path) -> None:
        """Copy ``key``'s file to ``path`` atomically (see :meth:`ObjectStore.get_file`)."""
        source = self._path(key)
        try:
            src = open(source, "rb")  # noqa: SIM115 - closed by the with statement below
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(key, str(source)) from None
        with src, _atomic_write(Path(path)) as out:
            shutil.copyfileobj(src, out, _COPY_CHUNK)

    def exists(self, key: str) -> bool:
        """Whether ``key``'s file exists (see :meth:`ObjectStore.exists`)."""
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        """Keys of the files below ``prefix`` (see :meth:`ObjectStore.list`)."""
        folder_prefix = _normalize_prefix(prefix)
        top = self.root.joinpath(*folder_prefix.split("/")) if folder_prefix else self.root
        if not top.is_dir():
            return []
        keys: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(top):
            relative = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                key = name if relative == "." else f"{relative}/{name}"
                if _key_problem(key) is None:  # skips temporary files of in-progress writes
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Delete ``key``'s file and the folders it leaves empty (see :meth:`ObjectStore.delete`)."""
        path = self._path(key)
        try:
            if path.is_dir():
                raise FileNotFoundError(path)
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(key, str(path)) from None
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone, or busy): stop pruning
                break
            parent = parent.parent


@contextlib.contextmanager
def _atomic_write(destination: Path) -> Iterator[IO[bytes]]:
    """Open a temporary file next to ``destination``; on success fsync it and rename it over.

    On any exception the temporary file is removed and ``destination`` is untouched.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp_file(destination.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(destination.parent)


def _create_temp_file(folder: Path) -> tuple[int, Path]:
    """Create and open a new, uniquely named temporary file in ``folder``.

    Unlike :func:`tempfile.mkstemp` (mode ``0600``) the file gets the usual ``0666 & ~umask``
    permissions, which the object keeps after the rename.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _attempt in range(100):
        path = folder / f"{_TMP_PREFIX}{secrets.token_hex(8)}.tmp"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {folder}")


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class S3ObjectStore(ObjectStore):
    """Objects in an S3 bucket (AWS, MinIO or any S3-compatible server), below a key prefix.

    Parameters
    ----------
    bucket : str
        Bucket name.
    prefix : str
        Key prefix inside the bucket (``""`` for the bucket root); leading and trailing ``/`` are
        ignored. Key ``k`` is stored as S3 key ``<prefix>/k``.
    client : Any
        A boto3 S3 client (``boto3.client("s3", ...)``); see :func:`open_object_store`.

    Attributes
    ----------
    list_page_size : int
        Keys asked per ``ListObjectsV2`` request (S3's maximum is 1000).
    """

    list_page_size: int = 1000

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            problem = _key_problem(prefix)
            if problem is not None:
                raise ValueError(f"invalid S3 key prefix {prefix!r}: {problem}")
        self.bucket = bucket
        self.prefix = prefix
        self.client = client

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.bucket!r}, {self.prefix!r}, endpoint={self.endpoint_url!r})"

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint the client talks to."""
        return str(self.client.meta.endpoint_url)

    def _s3_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def url(self, key: str) -> str:
        """``s3://bucket/prefix/key`` (see :meth:`ObjectStore.url`)."""
        return f"s3://{self.bucket}/{self._s3_key(key)}"

    # -- errors ---------------------------------------------------------------------------------

    def _bucket_exists(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) in {"404", "NoSuchBucket", "NotFound"}:
                return False
            raise
        return True

    def _raise_mapped(self, exc: Exception, key: str | None) -> NoReturn:
        """Re-raise a botocore ``ClientError`` as the matching object store error, if any.

        A bare ``404`` (HEAD requests have no error body) is ambiguous between a missing key and
        a missing bucket; the bucket is then checked.
        """
        code = _error_code(exc)
        if code == "NoSuchBucket":
            raise BucketNotFoundError(self.bucket, self.endpoint_url) from exc
        if key is not None and code in {"404", "NoSuchKey", "NotFound"}:
            if code != "NoSuchKey" and not self._bucket_exists():
                raise BucketNotFoundError(self.bucket, self.endpoint_url) from exc
            raise ObjectNotFoundError(key, self.url(key)) from None
        raise exc

    # -- operations -----------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` with one ``PutObject`` (see :meth:`ObjectStore.put_bytes`)."""
        from botocore.exceptions import ClientError

        s3_key = self._s3_key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=s3_key, Body=bytes(data))
        except ClientError as exc:
            self._raise_mapped(exc, None)

    def put_file(self, key: str, path: Path) -> None:
        """Upload a file, in parallel multipart pieces when large (see :meth:`ObjectStore.put_file`)."""
        from botocore.exceptions import ClientError

        s3_key = self._s3_key(key)
        with open(path, "rb") as src:
            try:
                self.client.upload_fileobj(src, self.bucket, s3_key)
            except ClientError as exc:
                self._raise_mapped(exc, None)

    def get_bytes(self, key: str) -> bytes:
        """Read an object with ``GetObject`` (see :meth:`ObjectStore.get_bytes`)."""
        from botocore.exceptions import ClientError

        s3_key = self._s3_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=s3_key)
        except ClientError as exc:
            self._raise_mapped(exc, key)
        body = response["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def get_file(self, key: str, path: Path) -> None:
        """Download an object (ranged, in parallel when large) atomically to ``path``.

        See :meth:`ObjectStore.get_file`.
        """
        from botocore.exceptions import ClientError

        s3_key = self._s3_key(key)
        with _atomic_write(Path(path)) as out:
            try:
                self.client.download_fileobj(self.bucket, s3_key, out)
            except ClientError as exc:
                self._raise_mapped(exc, key)

    def exists(self, key: str) -> bool:
        """Whether ``HeadObject`` finds the key (see :meth:`ObjectStore.exists`)."""
        from botocore.exceptions import ClientError

        s3_key = self._s3_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=s3_key)
        except ClientError as exc:
            try:
                self._raise_mapped(exc, key)
            except ObjectNotFoundError:
                return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        """Keys below ``prefix`` via paginated ``ListObjectsV2`` (see :meth:`ObjectStore.list`).

        S3 keys that are not valid object store keys (folder markers ending in ``/``, ``a//b``)
        are skipped.
        """
        from botocore.exceptions import ClientError

        folder_prefix = _normalize_prefix(prefix)
        base = "/".join(part for part in (self.prefix, folder_prefix) if part)
        s3_prefix = f"{base}/" if base else ""
        strip = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=s3_prefix, PaginationConfig={"PageSize": self.list_page_size}
            ):
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(strip) :]
                    if _key_problem(key) is None:
                        keys.append(key)
        except ClientError as exc:
            self._raise_mapped(exc, None)
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Delete an object (see :meth:`ObjectStore.delete`).

        S3 deletes of missing keys succeed silently, so the key is checked first with
        ``HeadObject`` to raise :class:`ObjectNotFoundError` like the local store.
        """
        from botocore.exceptions import ClientError

        s3_key = self._s3_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=s3_key)
            self.client.delete_object(Bucket=self.bucket, Key=s3_key)
        except ClientError as exc:
            self._raise_mapped(exc, key)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (for development and demo setups)."""
        from botocore.exceptions import ClientError

        if self._bucket_exists():
            return
        region = self.client.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou"}:
                raise


def _error_code(exc: Exception) -> str:
    """The S3 error code of a botocore ``ClientError`` (``"NoSuchKey"``, ``"404"``, ...)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def make_s3_client(settings: Settings) -> Any:
    """A boto3 S3 client configured from ``settings``.

    Parameters
    ----------
    settings : Settings
        Uses ``s3_endpoint_url`` (empty means AWS; a custom endpoint gets path-style addressing,
        which MinIO and most S3-compatible servers need), ``s3_access_key_id`` and
        ``s3_secret_access_key`` (both or neither; neither means boto3's default credential
        chain) and ``s3_region``.

    Returns
    -------
    Any
        A ``botocore`` S3 client.
    """
    import boto3
    from botocore.config import Config

    key_id = settings.s3_access_key_id or None
    secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
    secret = secret or None
    if (key_id is None) != (secret is None):
        raise ValueError(
            "set both RECSYS_S3_ACCESS_KEY_ID and RECSYS_S3_SECRET_ACCESS_KEY, or neither "
            "(to use boto3's default credential chain)"
        )
    endpoint_url = settings.s3_endpoint_url or None
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    session = boto3.session.Session(
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=settings.s3_region or None,
    )
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def open_object_store(url: str, settings: Settings | None = None) -> ObjectStore:
    """The object store at ``url``.

    Parameters
    ----------
    url : str
        ``s3://bucket/optional/prefix`` for an :class:`S3ObjectStore`; ``file:///abs/path`` or a
        plain folder path (relative or absolute) for a :class:`LocalObjectStore`.
    settings : Settings, optional
        S3 endpoint, credentials and region for ``s3://`` URLs; defaults to
        :func:`recsys.config.get_settings`. Unused for local stores.

    Returns
    -------
    ObjectStore
        The store; nothing is contacted or created yet.

    Raises
    ------
    ValueError
        For an empty URL, an unsupported scheme, an ``s3://`` URL without bucket or with a
        query, or a ``file://`` URL naming a remote host.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"object store URL is empty: {url!r}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    # No scheme, or a Windows drive letter ("C:\\data"): a plain path.
    if scheme == "" or (len(scheme) == 1 and "://" not in url):
        return LocalObjectStore(Path(url))
    if scheme == "file":
        if parts.netloc not in {"", "localhost"}:
            raise ValueError(
                f"unsupported object store URL {url!r}: file:// URLs must be local (file:///abs/path)"
            )
        if not parts.path:
            raise ValueError(f"object store URL {url!r} has no path (expected file:///abs/path)")
        return LocalObjectStore(Path(url2pathname(parts.path)))
    if scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"object store URL {url!r} has no bucket (expected s3://bucket/prefix)")
        if parts.query or parts.fragment:
            raise ValueError(f"object store URL {url!r} may not have a query or fragment")
        prefix = parts.path.strip("/")
        if prefix and _key_problem(prefix) is not None:
            raise ValueError(f"object store URL {url!r}: invalid key prefix: {_key_problem(prefix)}")
        if settings is None:
            from recsys.config import get_settings

            settings = get_settings()
        return S3ObjectStore(parts.netloc, prefix, make_s3_client(settings))
    raise ValueError(
        f"unsupported object store URL {url!r}: scheme {parts.scheme!r} "
        "(expected s3://bucket/prefix, file:///abs/path or a folder path)"
    )
