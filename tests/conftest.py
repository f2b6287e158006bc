"""Shared pytest fixtures: the loopback HTTP server that stands in for the web services; the
devices the core numerical tests run on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from fixture_server import FixtureServer

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
"""Devices of the core numerical tests (``@pytest.mark.parametrize("device", DEVICES)``): the
same tests run on CUDA when a GPU is present."""


@pytest.fixture(scope="session")
def _fixture_server_session():
    server = FixtureServer().start()
    yield server
    server.stop()


@pytest.fixture
def fixture_http(_fixture_server_session) -> FixtureServer:
    """The running :class:`FixtureServer`, its request log and faults reset for this test."""
    _fixture_server_session.reset()
    return _fixture_server_session


@pytest.fixture
def fixture_server(fixture_http) -> str:
    """Base URL (``http://127.0.0.1:<port>``) of the fixture server; see ``FixtureServer.urls``."""
    return fixture_http.base_url
