"""Several processes train as one: DDP and FSDP2 on the CPU with gloo, launched as torchrun would launch them.

Two ranks give the same per-step losses as one process with the same global batch; a run resumes on another number
of ranks; a signal to one rank stops all of them at the same step with one checkpoint; a rank that raises stops
every rank with its error; only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, SAMPLE, build_trainer, read_jsonl, seed_peak, train_args
from lmtrain import checkpoint as ckpt
from lmtrain.cli import main
from lmtrain.config import build_run_config
from lmtrain.distributed.world import World, init_world, planned_world_size, rank_seed
from lmtrain.errors import ConfigError
from lmtrain.train.parallel import load_optimizer_state

pytestmark = pytest.mark.xdist_group("ranks")
"""Under pytest-xdist these tests run on one worker, one after another: never two sets of ranks at once."""

RUN = (
    "--device",
    "cpu",
    "--dropout",
    "0",
    "--max-steps",
    "4",
    "--eval-every",
    "2",
    "--save-every",
    "2",
    "--doctor",
    "off",
    "--progress",
    "plain",
    "--seed",
    "5",
)
"""With dropout 0 the ranks' different dropout streams cannot change the losses."""

FAULTS = """
import os, sys, warnings
from lmtrain.cli import main
from lmtrain.train import step as step_module

fault, rank = os.environ["FAULT"], int(os.environ["RANK"])
original = step_module.TrainStep.__call__

def patched(self, step):
    if rank == 1 and step == 0:
        warnings.warn("rank one saw something odd")
    if rank == 1 and step == 2 and fault == "raise":
        raise RuntimeError("rank one broke")
    if rank == 0 and step == 2 and fault == "own-error":  # words a collective's failure also uses
        raise RuntimeError("timed out reading my file: connection reset by peer")
    if rank == 1 and step == 2 and fault == "hang":
        import time
        time.sleep(7)
    return original(self, step)

step_module.TrainStep.__call__ = patched
sys.exit(main(sys.argv[1:]))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(ranks: int, argv: list[str], script: Path | None = None, **env: str) -> list[subprocess.Popen]:
    """`ranks` processes with the variables torchrun sets (RANK, WORLD_SIZE, ...), each running `lmtrain ARGV`."""
    port = str(_port())
    procs = []
    for rank in range(ranks):
        variables = os.environ | env | {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(ranks)}
        variables |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, str(script)] if script else [sys.executable, "-m", "lmtrain"]
        procs.append(
            subprocess.Popen(
                [*command, *argv], env=variables, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    return procs


def launch_and_wait(args: list[str], out: Path) -> list[subprocess.Popen]:
    """Two ranks training `args` into `out`, once they have logged 3 steps."""
    procs = launch(2, args)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() or len(_losses(out)) < 3:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "training did not start"
        time.sleep(0.01)
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = 180) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of every rank."""
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append((proc.returncode, out, err))
    return results


def _losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(out / "metrics.jsonl") if r.get("event") == "step"}


def _val_losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["val_loss"] for r in read_jsonl(out / "metrics.jsonl") if r.get("event") == "eval"}


def _weights(out: Path, which: str = "raw") -> dict[str, torch.Tensor]:
    return ckpt.load_weights(ckpt.resolve_checkpoint(out, "latest"), which)


def in_process(args: list[str]) -> None:
    """`lmtrain ARGS` in this process (one process, no torchrun): the reference the ranks are compared with."""
    assert main(args) == 0


@pytest.fixture(scope="module")
def one_process(sample_dir_module: Path, tmp_path_factory, measured_peak: str) -> Path:
    """The reference: one process, the global batch of 4 in two micro-batches of 2."""
    root = tmp_path_factory.mktemp("one")
    out = root / "run"
    in_process(
        train_args(
            sample_dir_module,
            out,
            *RUN,
            "--micro-batch-size",
            "2",
            "--cache-dir",
            str(seed_peak(root / "cache", measured_peak)),
        )
    )
    return out


@pytest.fixture(scope="module")
def sample_dir_module() -> Path:
    return SAMPLE


@pytest.mark.slow
@pytest.mark.parametrize(
    "parallel,optimizer,arch",
    [("ddp", "adamw", "modern"), ("fsdp", "muon", "modern"), ("ddp", "muon", "gpt2"), ("fsdp", "adamw", "gpt2")],
)
def test_two_ranks_train_like_one_process(
    parallel: str, optimizer: str, arch: str, one_process: Path, sample_dir: Path, tmp_path: Path
) -> None:
    reference = one_process
    ema = ("--ema", "0.8") if parallel == "fsdp" else ()  # the averaged weights, kept as shards, as well
    run = (*RUN, "--optimizer", optimizer, "--arch", arch, *ema)
    if (optimizer, arch, ema) != ("adamw", "modern", ()):  # the reference: one process with the same settings
        reference = tmp_path / "one"
        in_process(train_args(sample_dir, reference, *run, "--micro-batch-size", "2"))
    out = tmp_path / "two"
    args = train_args(sample_dir, out, *run, "--parallel", parallel, "--doctor", "warn")
    results = finish(launch(2, args))
    assert [code for code, _, _ in results] == [0, 0], results[0][2] + results[1][2]
    ours, theirs = _losses(out), _losses(reference)
    assert sorted(ours) == [1, 2, 3, 4] == sorted(theirs)
    np.testing.assert_allclose([ours[s] for s in ours], [theirs[s] for s in ours], atol=1e-5, rtol=0)
    np.testing.assert_allclose(list(_val_losses(out).values()), list(_val_losses(reference).values()), atol=1e-5)
    for which in ("raw", "ema") if ema else ("raw",):  # the checkpoint holds the whole model, loadable anywhere
        for name, tensor in _weights(reference, which).items():
            torch.testing.assert_close(_weights(out, which)[name], tensor, atol=1e-5, rtol=1e-4)
    record = json.loads((out / "config.json").read_text())["distributed"]
    assert record == {
        "world_size": 2,
        "parallel": parallel,
        "backend": "gloo",
        "global_batch": 4,
        "per_rank_batch": 2,
        "micro_batch": 2,
        "accumulation": 1,
    }
    assert "step 4/4" in results[0][1] and results[1][1] == ""  # rank 0 alone logs
    assert f"2 per rank on 2 ranks ({parallel}), micro-batch 2 (1 accumulation steps)" in results[0][1]
    assert "tokens, 2 on each of 2 ranks, in 1 micro-batch of 2" in results[0][1]  # the doctor knows the split
    start = next(r for r in read_jsonl(out / "metrics.jsonl") if r["event"] == "start")
    assert (start["world_size"], start["parallel"]) == (2, parallel)
    steps = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("event") == "step"]
    assert len(steps) == 4  # one record per step, not one per rank


@pytest.mark.slow
def test_a_run_of_two_ranks_resumes_on_one(one_process: Path, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = finish(launch(2, train_args(sample_dir, out, *RUN, "--stop-at", "2")))
    assert [code for code, _, _ in first] == [0, 0], first[0][2]
    state = ckpt.load_trainer_state(ckpt.resolve_checkpoint(out))
    assert len(state["rng_ranks"]) == 2 and not torch.equal(
        state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"]
    )
    in_process(["train", "--resume", str(out), "--micro-batch-size", "2"])
    ours, theirs = _losses(out), _losses(one_process)
    np.testing.assert_allclose([ours[s] for s in range(1, 5)], [theirs[s] for s in range(1, 5)], atol=1e-5)
    for name, tensor in _weights(one_process).items():
        torch.testing.assert_close(_weights(out)[name], tensor, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_the_shell_entry_point_launches_torchrun(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = train_args(sample_dir, out, *RUN, "--max-steps", "3", "--save-every", "0", "--eval-every", "0")[1:]
    proc = subprocess.run(
        ["bash", str(REPO / "run" / "run_train_lm.sh"), "--gpus", "2", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=os.environ | {"PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["distributed"]["world_size"] == 2
    assert sorted(_losses(out)) == [1, 2, 3]


@pytest.mark.slow
def test_two_nodes_over_the_c10d_rendezvous_train_like_one_process(
    one_process: Path, sample_dir: Path, tmp_path: Path
) -> None:
    """The documented multi-node launch, run for real: two launchers of `run_train_lm.sh --nodes 2`, one process each,
    meet at a c10d rendezvous on the loopback interface (the first to bind the port hosts the store)."""
    out = tmp_path / "run"
    port = _port()
    args = train_args(sample_dir, out, *RUN)[1:]  # without the "train" the wrapper adds
    launcher = ["bash", str(REPO / "run" / "run_train_lm.sh"), "--gpus", "1", "--nodes", "2"]
    launcher += ["--rdzv-endpoint", f"127.0.0.1:{port}"]
    env = os.environ | {"PYTHON": sys.executable, "LMTRAIN_RDZV_ID": f"test-{port}", "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen([*launcher, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = finish(nodes, timeout=300)
    assert [code for code, _, _ in results] == [0, 0], results[0][2][-2000:] + results[1][2][-2000:]
    record = json.loads((out / "config.json").read_text())["distributed"]
    assert (record["world_size"], record["per_rank_batch"], record["backend"]) == (2, 2, "gloo")
    ours, theirs = _losses(out), _losses(one_process)
    assert sorted(ours) == [1, 2, 3, 4]
    np.testing.assert_allclose([ours[s] for s in ours], [theirs[s] for s in ours], atol=1e-5, rtol=0)
    np.testing.assert_allclose(list(_val_losses(out).values()), list(_val_losses(one_process).values()), atol=1e-5)


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = train_args(sample_dir, out, *RUN, "--max-steps", "100000", "--save-every", "0", "--eval-every", "0")
    procs = launch_and_wait(args, out)
    procs[1].send_signal(signal.SIGTERM)
    results = finish(procs)
    assert [code for code, _, _ in results] == [143, 143], results[0][2] + results[1][2]
    last = max(_losses(out))
    found = ckpt.resolve_checkpoint(out)
    assert found.name == ckpt.checkpoint_name(last)  # one checkpoint, of the step every rank stopped after
    assert ckpt.load_trainer_state(found)["step"] == last
    assert len(list((out / "checkpoints").glob("step_*"))) == 1
    assert f"continue with: lmtrain train --resume {out}" in results[0][1]


@pytest.mark.slow
def test_a_rank_that_raises_stops_every_rank_with_its_error(sample_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "faults.py"
    script.write_text(FAULTS)
    out = tmp_path / "run"
    args = train_args(sample_dir, out, *RUN, "--max-steps", "50", "--dist-timeout", "30")
    t0 = time.monotonic()
    results = finish(launch(2, args, script, FAULT="raise"), timeout=120)
    assert time.monotonic() - t0 < 60
    (code0, out0, err0), (code1, _, err1) = results
    assert code1 != 0 and "rank one broke" in err1
    assert code0 == 3 and "Traceback" not in err0
    line = err0.strip().splitlines()[-1]
    assert line.startswith("lmtrain: error: rank 0 stopped at step 3 because rank 1: RuntimeError: rank one broke")
    saved = sorted(p.name for p in (out / "checkpoints").glob("step_*"))
    assert saved == ["step_0000002"] and "the last good checkpoint is" in line  # nothing from the broken step
    records = read_jsonl(out / "metrics.jsonl")
    failed = [r for r in records if r.get("event") == "failed"]
    assert len(failed) == 1 and failed[0]["reason"] == "rank_failed" and "rank one broke" in failed[0]["message"]
    # rank 1's warning of its first step reached rank 0's log at the next log point, before the failure
    relayed = [r for r in records if r.get("event") == "warning" and r["code"] == "rank.warning"]
    assert len(relayed) == 1 and relayed[0]["message"].startswith("rank 1: UserWarning: rank one saw something odd")
    assert "rank one saw something odd" in out0  # rank 0's console shows it too


@pytest.mark.slow
def test_an_error_of_a_ranks_own_is_reported_as_itself_whatever_its_text(sample_dir: Path, tmp_path: Path) -> None:
    """A RuntimeError raised in rank 0's own step, with the words gloo uses when a peer is gone: not "another rank
    stopped answering" (the peers are alive), but the error itself on rank 0, and on rank 1 rank 0's error."""
    script = tmp_path / "faults.py"
    script.write_text(FAULTS)
    out = tmp_path / "run"
    args = train_args(sample_dir, out, *RUN, "--max-steps", "50", "--save-every", "0", "--dist-timeout", "30")
    (code0, _, err0), (code1, _, err1) = finish(launch(2, args, script, FAULT="own-error"), timeout=120)
    assert code0 == 1 and "stopped answering" not in err0, err0[-2000:]
    assert err0.strip().splitlines()[-1].endswith("RuntimeError: timed out reading my file: connection reset by peer")
    line = err1.strip().splitlines()[-1]
    assert code1 == 3 and line.startswith("lmtrain: error: rank 1 stopped at step 3 because rank 0: RuntimeError: ")


@pytest.mark.slow
def test_a_rank_that_hangs_stops_every_rank_after_the_timeout(sample_dir: Path, tmp_path: Path) -> None:
    """Rank 1 stops answering (alive, its heartbeat beats) for longer than --dist-timeout: rank 0's collective times
    out and it stops with exit 3 saying so; rank 1, once it wakes, stops with rank 0's error."""
    script = tmp_path / "faults.py"
    script.write_text(FAULTS)
    out = tmp_path / "run"
    args = train_args(sample_dir, out, *RUN, "--max-steps", "50", "--save-every", "0", "--dist-timeout", "4")
    t0 = time.monotonic()
    (code0, _, err0), (code1, _, err1) = finish(launch(2, args, script, FAULT="hang"), timeout=120)
    assert time.monotonic() - t0 < 60
    line = err0.strip().splitlines()[-1]
    assert code0 == 3 and "because another rank did not answer within --dist-timeout 4 s" in line, err0[-2000:]
    assert code1 == 3 and "because rank 0: " in err1.strip().splitlines()[-1], err1[-2000:]


@pytest.mark.slow
def test_a_rank_that_dies_stops_every_rank(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = train_args(sample_dir, out, *RUN, "--max-steps", "100000", "--save-every", "0", "--dist-timeout", "30")
    procs = launch_and_wait(args, out)
    procs[1].kill()
    t0 = time.monotonic()
    code, _, err = finish(procs[:1], timeout=60)[0]
    assert time.monotonic() - t0 < 35 and code == 3, err
    assert "because rank 1 stopped answering" in err.strip().splitlines()[-1]  # its heartbeat stopped
    procs[1].wait()


@pytest.mark.slow
def test_bad_distributed_input_is_one_line_exit_2_and_writes_nothing(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    plain = subprocess.run(
        [sys.executable, "-m", "lmtrain", *train_args(sample_dir, out, *RUN, "--parallel", "fsdp")],
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 2 and "--parallel fsdp shards the model over several processes" in plain.stderr
    results = finish(launch(2, train_args(sample_dir, out, *RUN, "--batch-size", "3")))
    for code, _, err in results:
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert "batch_size=3 (the global batch) is not divisible by the 2 ranks" in err
    assert not out.exists()


@pytest.mark.slow
def test_bench_train_under_torchrun_reports_scaling(tmp_path: Path) -> None:
    result = tmp_path / "scaling.json"
    argv = [
        "bench",
        "train",
        "--preset",
        "micro",
        "--d-model",
        "32",
        "--n-head",
        "2",
        "--n-layer",
        "1",
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--seq-len",
        "32",
        "--steps",
        "2",
        "--warmup-steps",
        "1",
        "--out",
        str(result),
    ]
    results = finish(launch(2, argv))
    assert [code for code, _, _ in results] == [0, 0], results[0][2]
    r = json.loads(result.read_text())
    assert r["world_size"] == 2 and len(r["per_rank"]) == 2
    assert (r["batch_size"], r["per_rank_batch"], r["tokens_per_step_per_rank"]) == (2, 1, 32)  # as for train
    assert r["total_tokens_per_s"] == pytest.approx(sum(p["tokens_per_s"] for p in r["per_rank"]), abs=0.2)
    expected = r["total_tokens_per_s"] / (2 * r["one_rank"]["tokens_per_s"])
    assert r["scaling_efficiency"] == pytest.approx(expected, abs=1e-3)
    assert results[1][1] == ""  # rank 0 alone prints the result


def test_the_global_batch_splits_over_ranks_and_micro_batches() -> None:
    cfg = build_run_config({"preset": "micro", "batch_size": 12, "micro_batch_size": 3})
    layout = cfg.train.layout(2)
    assert (layout.global_batch, layout.per_rank, layout.micro, layout.accumulation) == (12, 6, 3, 2)
    assert cfg.train.layout(4).accumulation == 1
    with pytest.raises(ConfigError, match="not divisible by the 5 ranks"):
        cfg.train.layout(5)
    with pytest.raises(ConfigError, match="does not divide the 2 sequences per rank"):
        cfg.train.layout(6)
    with pytest.raises(ConfigError, match="--parallel fsdp trains in fp32 or bf16"):
        build_run_config({"preset": "micro", "parallel": "fsdp", "dtype": "fp16"})


def test_one_process_without_torchrun_is_a_world_of_one() -> None:
    world = init_world("cpu", "ddp", 60, env={})
    assert (world.rank, world.world_size, world.distributed, world.is_main) == (0, 1, False, True)
    assert world.max_int(7) == 7 and world.sum_floats([1.5, 2.0]) == [1.5, 2.0]
    assert world.gather_objects("x") == ["x"] and world.from_main(lambda: 3) == 3
    with pytest.raises(ConfigError, match="torchrun"):
        init_world("cpu", "fsdp", 60, env={})
    with pytest.raises(ConfigError, match="must be integers"):
        init_world("cpu", "ddp", 60, env={"RANK": "x", "WORLD_SIZE": "2"})
    assert planned_world_size({}) == 1 and planned_world_size({"RANK": "3", "WORLD_SIZE": "4"}) == 4
    assert len({rank_seed(1, r) for r in range(4)}) == 4 and rank_seed(1, 1) == rank_seed(1, 1)


def test_every_rank_scores_its_own_validation_windows_in_as_many_batches(sample_dir: Path, tmp_path: Path) -> None:
    seen, counts = [], set()
    for rank in range(3):
        trainer = build_trainer(sample_dir, tmp_path / str(rank), tmp_path / "cache", eval_windows=7, batch_size=6)
        trainer.world = World(rank=rank, world_size=3)
        trainer.layout = trainer.cfg.train.layout(3)
        batches = [
            (b.x, b.y) for b in trainer.feed.val_batches(world=trainer.world, micro=trainer.layout.micro, device="cpu")
        ]
        counts.add(len(batches))
        seen += [int(x[i, 0]) for x, y in batches for i in range(len(x)) if (y[i] != -100).all()]
    assert len(counts) == 1  # sharded models gather weights in every forward: every rank runs as many
    first = trainer.data.valid[trainer.feed.val_starts]
    assert sorted(seen) == sorted(int(t) for t in first)  # every window once, over all ranks


def test_an_optimizer_state_keyed_by_index_still_loads() -> None:
    from lmtrain.model.gpt import GPT, GPTConfig
    from lmtrain.train.optim import build_optimizer
    from lmtrain.train.parallel import full_optimizer_state

    cfg = GPTConfig(vocab_size=64, n_layer=1, n_head=2, d_model=16, d_ff=64, max_seq_len=8, dropout=0.0)
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = build_optimizer(model, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), device=torch.device("cpu"))
    _, loss = model(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8)))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    old_format = opt.state_dict()  # what lmtrain saved before checkpoints keyed the state by name
    fresh = build_optimizer(model, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), device=torch.device("cpu"))
    load_optimizer_state(model, fresh, old_format)
    world = World()
    ours, theirs = full_optimizer_state(model, fresh, world), full_optimizer_state(model, opt, world)
    assert set(ours["state"]) == {n for n, _ in model.named_parameters()}
    for name, values in theirs["state"].items():
        for key, tensor in values.items():
            torch.testing.assert_close(ours["state"][name][key], tensor)


@pytest.mark.slow
def test_fsdp_ranks_start_from_a_trained_model_as_one_process_does(
    one_process: Path, sample_dir: Path, tmp_path: Path
) -> None:
    """--init-from under --parallel fsdp: every rank loads the start's weights before sharding, so the step-0
    validation loss and every step's loss are one process's."""
    start = tmp_path / "start-hf"
    in_process(["export", str(one_process), "--out", str(start)])
    run = (
        "--init-from",
        str(start),
        "--data-dir",
        str(sample_dir),
        "--batch-size",
        "4",
        "--max-steps",
        "3",
        "--warmup",
        "1",
        "--eval-windows",
        "8",
        "--sample-tokens",
        "0",
        "--log-every",
        "1",
        "--device",
        "cpu",
        "--save-every",
        "0",
        "--doctor",
        "off",
        "--progress",
        "plain",
    )
    reference, out = tmp_path / "one", tmp_path / "two"
    in_process(["train", *run, "--out", str(reference), "--micro-batch-size", "2"])
    results = finish(launch(2, ["train", *run, "--out", str(out), "--parallel", "fsdp"]))
    assert [code for code, _, _ in results] == [0, 0], results[0][2] + results[1][2]
    ours, theirs = _val_losses(out), _val_losses(reference)
    assert 0 in ours and ours[0] == pytest.approx(theirs[0], abs=1e-5)
    np.testing.assert_allclose(list(_losses(out).values()), list(_losses(reference).values()), atol=1e-5, rtol=0)


def test_leaving_waits_for_a_heartbeat_that_is_inside_the_store() -> None:
    """A beat slowed past a second (a loaded machine) must have returned when `stop` does: a daemon thread still inside
    a store call when the interpreter shuts down aborts the process (a CI run lost a rank that way)."""
    import threading

    from lmtrain.distributed.peers import Peers

    store = torch.distributed.TCPStore("127.0.0.1", 0, 1, True, wait_for_workers=False)
    inside = threading.Event()

    class Slow:  # torch's own store, each call after the first beat made slow
        def __getattr__(self, name: str):
            real = getattr(store, name)

            def call(*args):
                if name == "add" and inside.is_set():
                    time.sleep(1.5)
                return real(*args)

            return call

    peers = Peers(Slow(), rank=0, world_size=1)
    inside.set()
    time.sleep(0.7)  # the thread's next beat is under way
    peers.stop()
    assert not peers.thread.is_alive()


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_train_on_conversations_like_one_process(parallel: str, tmp_path: Path) -> None:
    """Each rank's rows hold a different number of trained tokens: the step's loss is divided by the global count
    (reduced once), so two ranks give one process's losses, validation and weights."""
    from chat_helpers import chat_folder

    data, tok = chat_folder(tmp_path / "chat")
    model = ["--preset", "micro", "--d-model", "32", "--n-head", "2", "--n-layer", "1", "--max-seq-len", "64"]
    args = [*model, "--vocab-size", "50304", "--dataset", "chat", "--data-dir", str(data), "--tokenizer", str(tok)]
    args += [*RUN, "--batch-size", "4", "--optimizer", "adamw", "--lr", "1e-2", "--warmup", "1", "--log-every", "1"]
    args += ["--sample-tokens", "0", "--cache-dir", str(tmp_path / "cache")]
    in_process(["train", *args, "--micro-batch-size", "2", "--out", str(tmp_path / "one")])
    results = finish(launch(2, ["train", *args, "--parallel", parallel, "--out", str(tmp_path / "two")]))
    assert [code for code, _, _ in results] == [0, 0], results[0][2] + results[1][2]
    ours, theirs = _losses(tmp_path / "two"), _losses(tmp_path / "one")
    assert sorted(ours) == [1, 2, 3, 4] == sorted(theirs)
    np.testing.assert_allclose([ours[s] for s in ours], [theirs[s] for s in ours], atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        list(_val_losses(tmp_path / "two").values()), list(_val_losses(tmp_path / "one").values()), atol=1e-5
    )
    for name, tensor in _weights(tmp_path / "one").items():
        torch.testing.assert_close(_weights(tmp_path / "two")[name], tensor, atol=1e-5, rtol=1e-4)
