from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.harness import ProcessCluster


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest) -> Iterator[Callable[..., ProcessCluster]]:
    """Start real member processes; every one is killed when the test ends, pass or fail."""
    clusters: list[ProcessCluster] = []

    def make(members: int = 3, start: bool = True, **overrides: Any) -> ProcessCluster:
        pc = ProcessCluster(members, **overrides)
        clusters.append(pc)
        if start:
            pc.start_all()
        return pc

    try:
        yield make
    finally:
        failed = getattr(request.node, "rep_call", None)
        for pc in clusters:
            if failed is not None and failed.failed:
                print(pc.logs())
            pc.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
