"""Seeds on devices: the stacked multi-seed state (env axis 2 split) on 4 simulated devices
equals 1 device, with noise injection's env pattern. Hosts: two processes on 127.0.0.1 (one
CPU device each, gloo collectives) train together through the command line and reach the
same parameters as one process with two simulated devices; only process 0 writes logs. Each
process is bounded in time and killed on failure."""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import jax
import numpy as np

from distillax.checkpoint import restore_policies
from distillax.model import build_model
from distillax.trainer import init_run_state

ARGS = ["--num-envs", "8", "--num-steps", "16", "--total-steps", "384", "--hidden-sizes", "16",
        "--kmeans-samples", "1000", "--partitions", "2", "--num-minibatches", "2",
        "--update-epochs", "2", "--log-every", "3", "--eval-contexts", "4", "--normalize-obs"]
TIMEOUT_S = 240


HERE = os.path.dirname(__file__)


def test_two_seeds_on_4_simulated_devices_equal_1_device():
    # with noise injection (1 env in 2), so that its env pattern is checked on devices too
    # (recurrent runs, whose minibatches split the envs: test_train's 1 = 4 device check)
    out = subprocess.run([sys.executable, os.path.join(HERE, "multidevice_check.py"),
                          "central", "2", "2"], capture_output=True, text=True,
                         timeout=TIMEOUT_S, env=_env(4))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["method"] == "central" and result["devices"] == 4
    assert result["max_abs_diff"] <= 1e-5, result
    assert result["moved"] > 1e-4, result  # the runs trained: equal, not just untouched


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env.update(XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
                         f"--xla_force_host_platform_device_count={devices}".strip(),
               JAX_PLATFORMS="cpu")
    return env


@contextlib.contextmanager
def _reaped(procs: list) -> Iterator[list]:
    """`procs` (subprocesses started inside), each killed on the way out if still running."""
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _train(args, devices, log):
    return subprocess.Popen([sys.executable, "-m", "distillax.train", *ARGS, *args],
                            env=_env(devices), stdout=log, stderr=subprocess.STDOUT)


def test_two_processes_equal_one_process_with_two_devices(tmp_path):
    port = _free_port()
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("p0", "p1", "ref")]
    try:
        with _reaped([]) as procs:
            for i in range(2):
                procs.append(_train(["--checkpoint-dir", str(tmp_path / "multi"),
                                     "--coordinator", f"127.0.0.1:{port}", "--num-processes",
                                     "2", "--process-id", str(i)], 1, logs[i]))
            procs.append(_train(["--checkpoint-dir", str(tmp_path / "ref"), "--num-devices",
                                 "2"], 2, logs[2]))
            codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    finally:
        for f in logs:
            f.close()
    text = [open(tmp_path / f"{name}.log").read() for name in ("p0", "p1", "ref")]
    assert codes == [0, 0, 0], "\n\n".join(t[-2000:] for t in text)
    assert "devices=2" in text[0] and "devices=2" in text[2]
    assert "held-out return" in text[0] and "held-out return" not in text[1]  # process 0 logs
    records = [json.loads(line) for line in open(tmp_path / "multi" / "metrics.jsonl")]
    assert [r["iteration"] for r in records] == [3]  # written once, by process 0

    _, multi = restore_policies(str(tmp_path / "multi"))
    info, ref = restore_policies(str(tmp_path / "ref"))
    max_diff = lambda a, b: max(jax.tree.leaves(jax.tree.map(  # noqa: E731
        lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)))
    assert max_diff(multi, ref) <= 1e-5
    # ... and both trained: the params moved away from the run's own initial params
    init = init_run_state(build_model(info.config)).params
    assert max_diff((ref.teacher, ref.central), (init.teacher, init.central)) > 1e-4


def test_distributed_flags_must_come_together():
    out = subprocess.run([sys.executable, "-m", "distillax.train", "--num-processes", "2"],
                         capture_output=True, text=True, timeout=120, env=_env(1))
    assert out.returncode == 2
    assert "--coordinator" in out.stderr and "Traceback" not in out.stderr


def test_more_devices_than_visible_is_a_config_error():
    out = subprocess.run([sys.executable, "-m", "distillax.train", "--num-devices", "3"],
                         capture_output=True, text=True, timeout=120, env=_env(2))
    assert out.returncode == 2
    assert "`num_devices`" in out.stderr and "Traceback" not in out.stderr


SAVE_FAILS_ON_0 = """
import errno, os, sys, time
import jax
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
import numpy as np
from etils import epath
from flax import struct
from distillax import checkpoint
from distillax.config import Config

if jax.process_index() == 0:  # its writes into the unfinished step fail, as on a full disk
    real = epath.gpath.PosixGPath.open
    def open_(path, mode="r", **kw):
        if "w" in mode and ".orbax-checkpoint-tmp" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, mode, **kw)
    epath.gpath.PosixGPath.open = open_

@struct.dataclass
class State:
    iteration: jax.Array
    w: jax.Array

mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))  # both processes' devices
rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
put = lambda x: jax.make_array_from_callback(x.shape, rep, lambda i: x[i])
try:
    with checkpoint.Saver(sys.argv[3], 2) as saver:
        saver.save(State(put(np.asarray(3, np.int32)), put(np.ones(1000, np.float32))),
                   Config(), 2)
        for _ in range(1000):  # as the training loop: a check after every call
            saver.check()
            time.sleep(0.01)
except checkpoint.CheckpointError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
"""


def test_a_save_failed_on_one_process_stops_every_process_with_the_same_line(tmp_path):
    """Process 0's write fails; process 1's own write went through and waits at orbax's
    barrier for process 0's. Both stop at the same check, with process 0's message."""
    address = f"127.0.0.1:{_free_port()}"
    with _reaped([subprocess.Popen([sys.executable, "-c", SAVE_FAILS_ON_0, address, str(i),
                                    str(tmp_path / "run")], env=_env(1),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for i in range(2)]) as procs:
        outs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    errors = [[line for line in err.splitlines() if line.startswith("error: ")]
              for _, err in outs]
    assert [p.returncode for p in procs] == [2, 2], [err[-2000:] for _, err in outs]
    assert errors[0] == errors[1] and len(errors[0]) == 1, errors
    assert re.match(r"error: saving a checkpoint \(step 3\) into .*run' failed: OSError: "
                    r"\[Errno 28\] No space left on device.*; no checkpoint is complete$",
                    errors[0][0]), errors[0][0]
    # (intermittent once in a full suite: the message shows whose traceback it was)
    assert not any("Traceback" in err for _, err in outs), [err[-3000:] for _, err in outs]
