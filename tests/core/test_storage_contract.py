"""The lake storage contract, run unchanged against the filesystem and a real S3 endpoint."""

from __future__ import annotations

import hashlib
import os

import pytest

from citylake.core.errors import (
    ImmutableObjectError,
    LakeConfigError,
    LakeObjectNotFound,
    ObjectExistsError,
)
from citylake.core.settings import Settings
from citylake.core.storage import S3_PART_SIZE, LakeStorage, S3Storage, open_storage


def test_put_get_roundtrip_with_hash_and_metadata(lake: LakeStorage) -> None:
    data = "arrêt;montée\nGare;12\n".encode("cp1252")
    info = lake.put_bytes("staged/demo/x.csv", data, metadata={"Operator": "bus"})
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert lake.get_bytes("staged/demo/x.csv") == data
    stat = lake.stat("staged/demo/x.csv")
    assert stat.sha256 == info.sha256
    assert stat.metadata["operator"] == "bus"
    assert lake.exists("staged/demo/x.csv")
    assert not lake.exists("staged/demo/y.csv")


def test_listing_is_a_string_prefix_sorted_by_key(lake: LakeStorage) -> None:
    keys = [
        "raw/operator=bus/feed=ticketing/received_date=2026-03-02/b.csv",
        "raw/operator=bus/feed=ticketing/received_date=2026-03-01/a.csv",
        "raw/operator=bus/feed=avl/received_date=2026-03-01/c.jsonl",
        "raw/operator=parking/feed=occupancy/received_date=2026-03-01/d.csv",
        "staged/fare_transactions/service_date=2026-03-01/part-0.parquet",
    ]
    for k in keys:
        lake.put_bytes(k, k.encode())
    assert [i.key for i in lake.list("raw/")] == sorted(keys[:4])
    assert [i.key for i in lake.list("raw/operator=bus/feed=ticketing/")] == sorted(keys[:2])
    # A prefix that ends mid-segment matches like S3's: operator=bus but not operator=parking.
    assert {i.key for i in lake.list("raw/operator=b")} == set(keys[:3])
    assert lake.list("raw/operator=nobody/") == []
    assert lake.list_prefixes("raw/operator=bus/") == [
        "raw/operator=bus/feed=avl/",
        "raw/operator=bus/feed=ticketing/",
    ]
    assert [i.key for i in lake.list("")] == sorted(keys)


def test_write_once_zones_refuse_overwrite_but_accept_same_bytes(lake: LakeStorage) -> None:
    k = "raw/operator=bus/feed=ticketing/received_date=2026-03-01/validations.csv"
    first = lake.put_bytes(k, b"v1")
    assert lake.put_bytes(k, b"v1").sha256 == first.sha256  # re-run: a no-op
    with pytest.raises(ImmutableObjectError, match="raw zone keeps every delivery"):
        lake.put_bytes(k, b"v2")
    with pytest.raises(ImmutableObjectError, match=k):
        lake.put_bytes(k, b"v2", overwrite=True)  # not even when asked
    with pytest.raises(ImmutableObjectError):
        lake.delete(k)
    with pytest.raises(ImmutableObjectError):
        lake.rename(k, "staged/elsewhere.csv")
    assert lake.get_bytes(k) == b"v1"
    for other in ("quarantine/x/f.csv", "published/versions/p1/mart.parquet", "control/manifest/m.parquet"):
        lake.put_bytes(other, b"a")
        with pytest.raises(ImmutableObjectError):
            lake.put_bytes(other, b"b", overwrite=True)


def test_retention_purge_is_explicit(lake: LakeStorage) -> None:
    k = "raw/operator=bus/feed=ticketing/received_date=2025-01-01/old.csv"
    lake.put_bytes(k, b"card ids")
    lake.delete(k, purge_reason="retention: personal data older than 90 days")
    assert not lake.exists(k)


def test_mutable_zones_overwrite_only_when_asked(lake: LakeStorage) -> None:
    k = "staged/fare_transactions/service_date=2026-03-01/part-0.parquet"
    lake.put_bytes(k, b"old")
    with pytest.raises(ObjectExistsError):
        lake.put_bytes(k, b"new")
    info = lake.put_bytes(k, b"new", overwrite=True)
    assert lake.get_bytes(k) == b"new"
    assert lake.stat(k).sha256 == info.sha256 == hashlib.sha256(b"new").hexdigest()
    lake.delete(k)
    assert not lake.exists(k)


def test_rename_moves_whole_object(lake: LakeStorage) -> None:
    lake.put_bytes("candidate/run=1/a.parquet", b"payload", metadata={"run": "1"})
    info = lake.rename("candidate/run=1/a.parquet", "candidate/run=1/b.parquet")
    assert info.key == "candidate/run=1/b.parquet"
    assert lake.get_bytes("candidate/run=1/b.parquet") == b"payload"
    assert lake.stat("candidate/run=1/b.parquet").metadata["run"] == "1"
    assert not lake.exists("candidate/run=1/a.parquet")


def test_large_object_multipart(lake: LakeStorage, tmp_path) -> None:
    size = S3_PART_SIZE + 3 * 1024 * 1024 + 17  # > 16 MiB: two parts on S3
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        for _ in range(size // (1 << 20)):
            fh.write(os.urandom(1 << 20))
        fh.write(os.urandom(size % (1 << 20)))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    info = lake.put_file("raw/operator=bus/feed=avl/received_date=2026-03-01/big.bin", path)
    assert info.size == size
    assert info.sha256 == digest
    if isinstance(lake, S3Storage):
        assert info.etag and info.etag.endswith("-2"), f"expected a 2-part upload, etag {info.etag}"
    back = lake.download(info.key, tmp_path / "back.bin")
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    # A write-once large object: same bytes is a no-op, other bytes refused.
    assert lake.put_file(info.key, path).sha256 == digest
    (tmp_path / "other.bin").write_bytes(os.urandom(S3_PART_SIZE + 1))
    with pytest.raises(ImmutableObjectError):
        lake.put_file(info.key, tmp_path / "other.bin")


def test_missing_object_errors_name_the_key(lake: LakeStorage, tmp_path) -> None:
    k = "staged/nothing/here.parquet"
    for call in (lambda: lake.get_bytes(k), lambda: lake.stat(k), lambda: lake.download(k, tmp_path / "x")):
        with pytest.raises(LakeObjectNotFound, match="staged/nothing/here.parquet"):
            call()
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, for generic callers
        lake.get_bytes(k)


@pytest.mark.parametrize(
    "bad",
    ["../etc/passwd", "/abs/key", "raw/../../x", "raw/a//b", "raw/.meta/x", "notazone/x", "raw/dir/"],
)
def test_keys_outside_the_zones_are_refused(lake: LakeStorage, bad: str) -> None:
    with pytest.raises(ValueError):
        lake.put_bytes(bad, b"x")


def test_json_helpers(lake: LakeStorage) -> None:
    lake.put_json("published/CURRENT.json", {"transit": "p2", "parking": "p1"})
    assert lake.get_json("published/CURRENT.json") == {"transit": "p2", "parking": "p1"}
    lake.put_json("published/CURRENT.json", {"transit": "p3"}, overwrite=True)
    assert lake.get_json("published/CURRENT.json") == {"transit": "p3"}


def test_missing_credentials_is_a_clear_error(monkeypatch, moto_endpoint) -> None:
    monkeypatch.setenv("CITYLAKE_LAKE_URI", "s3://somebucket")
    monkeypatch.setenv("CITYLAKE_S3_ENDPOINT", moto_endpoint)
    with pytest.raises(LakeConfigError, match="CITYLAKE_S3_ACCESS_KEY and CITYLAKE_S3_SECRET_KEY"):
        open_storage(Settings())
    monkeypatch.setenv("CITYLAKE_S3_ACCESS_KEY", "only-the-access-key")
    with pytest.raises(LakeConfigError, match="CITYLAKE_S3_SECRET_KEY") as exc:
        open_storage(Settings())
    assert "only-the-access-key" not in str(exc.value)


def test_credentials_are_never_read_from_dotenv(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "CITYLAKE_LAKE_URI=s3://from-dotenv\nCITYLAKE_S3_ACCESS_KEY=k\nCITYLAKE_S3_SECRET_KEY=s\n"
    )
    settings = Settings()
    assert settings.lake_uri == "s3://from-dotenv"  # non-secret settings do come from .env
    with pytest.raises(LakeConfigError, match="never read from files"):
        settings.s3_credentials()


def test_aws_standard_variables_are_accepted(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    assert Settings().s3_credentials() == ("a", "b")


def test_missing_bucket_is_a_config_error(s3_settings, monkeypatch) -> None:
    monkeypatch.setenv("CITYLAKE_LAKE_URI", "s3://no-such-bucket-here")
    storage = open_storage(Settings())
    with pytest.raises(LakeConfigError, match="no-such-bucket-here.*citylake lake init"):
        storage.put_bytes("staged/x", b"1")


def test_unsupported_scheme_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("CITYLAKE_LAKE_URI", "gs://bucket")
    with pytest.raises(ValueError, match="unsupported URI scheme"):
        Settings()


def test_local_lake_detects_a_stale_hash_record(file_settings) -> None:
    lake = open_storage(file_settings)
    k = "staged/x/part-0.parquet"
    lake.put_bytes(k, b"first")
    path = lake.root / k  # the file changed behind the storage layer's back
    path.write_bytes(b"changed")
    assert lake.stat(k).sha256 == hashlib.sha256(b"changed").hexdigest()
