import os

import numpy as np
import pytest

# numba's threading layer: tests compare runs bit for bit, which prange keeps (races are
# independent); one thread keeps CI's two cores free for the test runner.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")


def ring_track(radius=100.0, width=8.0, name=None, **kw):
    from racing.track import build_track

    th = np.linspace(0.0, 2.0 * np.pi, 400, endpoint=False)
    return build_track(name or f"ring{radius:g}", np.c_[radius * np.cos(th), radius * np.sin(th)], width, width, **kw)


@pytest.fixture(scope="session")
def ring100():
    return ring_track(100.0, 8.0)


@pytest.fixture(scope="session")
def big_ring():
    """A ring so large that it drives like a straight (R = 4 km)."""
    return ring_track(4000.0, 8.0)


@pytest.fixture(scope="session")
def exported_builtin(tmp_path_factory):
    """The built-in driver exported once per test session: the path of its driver.onnx
    (driver.json beside it)."""
    from agents.export import export_driver

    out = tmp_path_factory.mktemp("export") / "driver.onnx"
    onnx_path, _ = export_driver("builtin", out)
    return onnx_path
