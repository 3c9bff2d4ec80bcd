"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread() -> object:
    """Tiny nets run fastest on one torch thread (and do not fight other processes on a shared machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
