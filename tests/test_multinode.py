"""Multi-node DDP: two processes started as two nodes (NODE_RANK 0 and 1, one device each, gloo on CPU), as a
cluster launcher starts them, end with identical weights after training on disjoint halves of the data."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from textvae.data.records import write_jsonl
from textvae.data.synthetic import generate_sentences

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_end_with_identical_weights_on_disjoint_data(tmp_path):
    data = tmp_path / "sentences.jsonl"
    write_jsonl(data, generate_sentences(64, seed=1))  # 64 sentences in batches of 8: 4 steps per rank
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    base = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    for name in ("RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE", "SLURM_NTASKS", "SLURM_JOB_NAME"):
        base.pop(name, None)  # another launcher's variables would make Lightning pick its environment instead
    nodes = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "multinode_train.py"), str(data), str(tmp_path)],
                              env={**base, "NODE_RANK": str(rank)}, cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for rank in (0, 1)]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=TIMEOUT_S))
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.communicate()
    for rank, (node, (_, stderr)) in enumerate(zip(nodes, outputs, strict=True)):
        assert node.returncode == 0, f"node {rank} exited {node.returncode}:\n{stderr[-3000:]}"
    for rank, (stdout, _) in enumerate(outputs):
        assert f"global_rank {rank} node_rank {rank} world_size 2 num_nodes 2 steps 6" in stdout, stdout

    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert rank0.keys() == rank1.keys() and len(rank0) > 0
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # they trained: the weights moved from the initialisation the ranks shared
    initial = load_file(tmp_path / "rank0.initial.safetensors")
    assert all(torch.equal(initial[name], t) for name, t in load_file(tmp_path / "rank1.initial.safetensors").items())
    assert any(not torch.equal(initial[name], rank0[name]) for name in rank0)
    seen = [[int(i) for i in (tmp_path / f"rank{r}.seen").read_text().split()] for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 32
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(64))
