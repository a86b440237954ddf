"""Fixtures of the blob store tests: one real Ceph per session (``ceph_fixture``), skipped with
the reason where Ceph's packages are absent."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage.ceph_fixture import CephCluster, missing, start


@pytest.fixture(scope="session")
def ceph() -> Iterator[CephCluster]:
    """A single-node Ceph with radosgw and an S3 user, for the whole session."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="evault-test-ceph-"))
    try:
        cluster = start(root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield cluster
    finally:
        cluster.stop()
