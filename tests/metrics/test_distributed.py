"""SegmentationMetrics under torch.distributed: 2 processes on gloo equal one process."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from . import _ddp_worker
from .test_streaming import _close

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
def test_two_process_gloo_equals_one_process(tmp_path):
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    port = _free_port()
    out = str(tmp_path / "result")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "tests.metrics._ddp_worker", str(r), "2", str(port), out],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for r in range(2)]
    for p in procs:
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the distributed workers did not finish in 60 s")
        assert p.returncode == 0, err.decode()[-2000:]
    x, t = _ddp_worker.dataset()
    single = _ddp_worker.make_metrics()
    single.update(x, t)
    expected = single.compute()
    for rank in range(2):
        saved = torch.load(f"{out}.{rank}.pt")
        _close(saved["result"], expected)
    # the ranks' local sums differ (each saw its own shard) and add up to the single process's
    local0, local1 = (torch.load(f"{out}.{r}.pt")["local"] for r in range(2))
    for k, v in single.state().items():
        torch.testing.assert_close(local0[k] + local1[k], v, msg=k)
