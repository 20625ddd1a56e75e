"""Hardening (issue 15, parts 3-6): unusable output paths and malformed run-control flags are
refused before anything is built, with one line and nothing written; a save that fills the disk
leaves the previous checkpoint the latest and the run resumable; a fuzz test of both command
lines, where nothing compiles for an invalid argv.

One tiny run (ppo, 6 iterations of 8 envs x 8 steps, a checkpoint every 2, one kept) is trained,
through the disk-full fault and its resume; the other tests read its directory and build no
model (`no_build` makes reaching the model build an error, or a recorded "valid" outcome).
"""

import contextlib
import errno
import io
import os
import re
import threading

import jax
import pytest
from etils import epath
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distillax
from distillax import checkpoint, cli, evaluate
from distillax.config import Config, ConfigError

pytestmark = pytest.mark.usefixtures("compile_cache")  # tests/conftest.py

ITERATION = 8 * 8
TINY = ["--num-envs", "8", "--num-steps", "8", "--num-minibatches", "2", "--update-epochs", "1",
        "--hidden-sizes", "8", "--kmeans-samples", "500", "--method", "ppo", "--partitions", "1",
        "--context-candidates", "8", "--eval-contexts", "4", "--eval-every", "100",
        "--log-every", "2", "--checkpoint-every", "2", "--max-to-keep", "1",
        "--total-steps", str(6 * ITERATION)]


class _Compiles:
    """Counts XLA compilations (real ones and persistent-cache loads) while `active`. JAX's
    listeners cannot be removed, so one is registered for the module."""

    def __init__(self):
        self.active, self.count = False, 0
        jax.monitoring.register_event_duration_secs_listener(
            lambda event, _, **kw: self._hit(event == "/jax/core/compile/backend_compile_duration"))
        jax.monitoring.register_event_listener(
            lambda event, **kw: self._hit(event == "/jax/compilation_cache/cache_hits"))

    def _hit(self, compiled: bool) -> None:
        if self.active and compiled:
            self.count += 1


COMPILES = _Compiles()


def _stderr_lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def _tree(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(r, n), root)
                  for r, ds, fs in os.walk(root) for n in ds + fs)


# --- 5. disk full during a save --------------------------------------------------------------


class _FullDisk:
    """A fault hook on etils' `PosixGPath.open`, through which orbax writes every file of a
    checkpoint but the array chunks (tensorstore's, in C++): the writes into step `step`'s
    unfinished directory fail with ENOSPC once `budget` bytes have gone through, the bytes that
    fit written first, as a full disk does. Orbax writes from its background threads."""

    def __init__(self, monkeypatch, step: int, budget: int):
        self.marker = f"{os.sep}{step}.orbax-checkpoint-tmp"
        self.left, self.failed = budget, []
        self.lock = threading.Lock()
        real = epath.gpath.PosixGPath.open
        hook = self

        def open_(path, mode="r", **kw):
            f = real(path, mode, **kw)
            if "w" in mode and hook.marker in str(path):
                real_write = f.write

                def write(data):
                    with hook.lock:
                        n, hook.left = min(len(data), hook.left), max(0, hook.left - len(data))
                    real_write(data[:n])
                    if n < len(data):
                        hook.failed.append(str(path))
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                    return n

                f.write = write
            return f

        monkeypatch.setattr(epath.gpath.PosixGPath, "open", open_)


@pytest.fixture(scope="module")
def disk_full(tmp_path_factory):
    """Train until the save of iteration 4 hits a full disk, then resume once the disk has
    room: what each step saw, and the run directory (step 6 at the end)."""
    d = str(tmp_path_factory.mktemp("disk") / "run")
    seen = {}
    with pytest.MonkeyPatch.context() as mp:
        fault = _FullDisk(mp, step=4, budget=64)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            seen["rc"] = cli.main(["--checkpoint-dir", d, *TINY])
        seen["failed"], seen["stderr"] = fault.failed, err.getvalue()
    seen["steps"], seen["listing"] = checkpoint.steps(d), sorted(os.listdir(d))
    seen["latest"] = checkpoint.read_run(d).step
    seen["policy_step"] = checkpoint.restore_policies(d)[0].step  # complete and verified
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        seen["resume_rc"] = cli.main(["--resume", d])
    seen["resume_out"], seen["resume_err"] = out.getvalue(), err.getvalue()
    return d, seen


def test_a_save_that_fills_the_disk_keeps_the_previous_checkpoint_and_resumes(disk_full):
    d, seen = disk_full
    assert seen["failed"], "the fault hook never fired"
    assert seen["rc"] == 2
    lines = seen["stderr"].splitlines()
    assert len(lines) == 1, seen["stderr"]  # one line, no traceback from orbax's threads
    assert re.match(r"error: saving a checkpoint \(step 4\) into .*run' failed: OSError: "
                    r"\[Errno 28\] No space left on device.*; the latest complete checkpoint "
                    r"is step 2 \(--resume continues from it\)$", lines[0]), lines[0]
    # The half-written step stays orbax's unfinished directory, never a step; with
    # max_to_keep = 1 the older step is only dropped once a newer one is complete.
    assert seen["steps"] == (2,) and seen["latest"] == seen["policy_step"] == 2
    assert [n for n in seen["listing"] if n.startswith("4.orbax-checkpoint-tmp")]
    assert seen["resume_rc"] == 0, seen["resume_err"][-2000:]
    assert f"resumed {d} from iteration 2" in seen["resume_out"]
    assert "Traceback" not in seen["resume_err"]
    assert checkpoint.steps(d) == (6,)
    assert not [n for n in os.listdir(d) if "tmp" in n]  # the leftover was cleaned up


# --- 3. output paths -------------------------------------------------------------------------


class _Built(Exception):
    """The model build was reached: every check before it passed."""


@pytest.fixture
def no_build(monkeypatch):
    """Make reaching the model build (training) or the checkpoint load (evaluation) an
    exception, and `jax.distributed` a recorder: what runs before them is what is tested."""
    calls = []

    def built(*args, **kwargs):
        raise _Built()

    monkeypatch.setattr(distillax.run, "build_model", built)
    monkeypatch.setattr("distillax.checkpoint.load", built)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **kw: calls.append(kw))
    old = jax.config.jax_cpu_collectives_implementation  # initialize_distributed sets it
    yield calls
    jax.config.update("jax_cpu_collectives_implementation", old)


def _unusable(tmp_path, kind: str, monkeypatch) -> str:
    """A path that cannot be a writable directory, of the kind named."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    if kind == "existing file":
        return str(a_file)
    if kind == "under a file":
        return str(a_file / "run")
    if kind == "dangling link":
        os.symlink(tmp_path / "nowhere", tmp_path / "link")
        return str(tmp_path / "link")
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root writes there all the same: answer as access(2) would
        real = os.access         # for any other user
        monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(ro) else real(p, m))
    return str(ro / "run")


KINDS = ["existing file", "under a file", "dangling link", "read-only dir"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_unusable_checkpoint_dir_is_refused_before_the_build(tmp_path, kind, no_build,
                                                                capsys, monkeypatch):
    path = _unusable(tmp_path, kind, monkeypatch)
    before = _tree(tmp_path)
    assert cli.main(["--checkpoint-dir", path, *TINY]) == 2  # _Built if the check let it by
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(
        f"error: config field `checkpoint_dir` (--checkpoint-dir) = {path!r} is invalid: "), lines
    assert _tree(tmp_path) == before  # nothing created
    with pytest.raises(ConfigError, match=r"config field `checkpoint_dir`"):
        distillax.train(Config(checkpoint_dir=path))  # the library call, too


def test_a_tensorboard_dir_in_the_way_is_refused(tmp_path, no_build, capsys):
    (tmp_path / "tensorboard").write_text("a file where the events would go")
    assert cli.main(["--checkpoint-dir", str(tmp_path), "--tensorboard", *TINY]) == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and "config field `tensorboard`" in lines[0], lines
    assert "it exists and is not a directory" in lines[0]


@pytest.mark.parametrize("kind", KINDS)
def test_an_unusable_evaluate_out_is_refused_before_the_restore(disk_full, tmp_path, kind,
                                                                no_build, capsys, monkeypatch):
    d, _ = disk_full
    path = _unusable(tmp_path, kind, monkeypatch)
    before = _tree(tmp_path), _tree(d)
    assert evaluate.main([d, "--out", path]) == 2  # _Built if the check let it by
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"error: --out = {path!r} is invalid: "), lines
    assert (_tree(tmp_path), _tree(d)) == before


# --- 4. run control --------------------------------------------------------------------------


RUN_CONTROL = [
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
     r"--coordinator = 'localhost' is invalid: HOST:PORT .* a port in 1\.\.65535"),
    (["--coordinator", ":1234", "--num-processes", "2", "--process-id", "0"], r"--coordinator"),
    (["--coordinator", "h:65536", "--num-processes", "2", "--process-id", "0"], r"--coordinator"),
    (["--coordinator", "h:12a", "--num-processes", "2", "--process-id", "0"], r"--coordinator"),
    (["--coordinator", "h:1", "--num-processes", "0", "--process-id", "0"],
     r"--num-processes = 0 is invalid: an integer >= 1"),
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
     r"--process-id = 2 is invalid: 0\.\.1 \(--num-processes = 2\)"),
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "-1"], r"--process-id = -1"),
    (["--process-id", "1"], r"needs --coordinator, --num-processes and --process-id together"),
    (["--distributed", "auto", "--num-processes", "2"], r"--distributed auto takes"),
    (["--distributed", "slurm"], r"argument --distributed: invalid choice: 'slurm'"),
    (["--num-processes", "two"], r"argument --num-processes: invalid int value: 'two'"),
    (["--resume-step", "2"], r"--resume-step needs --resume DIR"),
    (["--resume", "{run}", "--resume-step", "-1"], r"--resume-step = -1 is invalid"),
    (["--resume", "{run}", "--resume-step", "3"], r"no checkpoint step 3 in .*; steps: \[6\]"),
]


@pytest.mark.parametrize("argv, message", RUN_CONTROL)
def test_malformed_run_control_exits_2_with_one_line(disk_full, argv, message, no_build, capsys):
    argv = [a.format(run=disk_full[0]) for a in argv]
    try:
        rc = cli.main(argv + TINY)
    except SystemExit as e:  # argparse's own checks (types, choices)
        rc = e.code
    assert rc == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert no_build == []  # jax.distributed never saw it


def test_well_formed_run_control_reaches_jax_distributed(no_build):
    with pytest.raises(_Built):
        cli.main(["--coordinator", "[::1]:1234", "--num-processes", "2", "--process-id", "1",
                  *TINY])
    assert no_build == [{"coordinator_address": "[::1]:1234", "num_processes": 2,
                         "process_id": 1}]


def test_evaluate_seed_out_of_range_is_refused(disk_full, no_build, capsys):
    assert evaluate.main([disk_full[0], "--seed", str(2**63)]) == 2
    assert _stderr_lines(capsys) == [
        f"error: --seed = {2**63} is invalid: an integer in [0, 2**31) (as config `seed`)"]


# --- 6. fuzz: both command lines -------------------------------------------------------------


def _flags(parser_help: str) -> list[str]:
    return sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", parser_help)))


def _evaluate_flags() -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        evaluate.main(["--help"])  # (its parser is built inside main)
    return _flags(out.getvalue())


def _argv(flags: list[str], paths: list[str]) -> st.SearchStrategy[list[str]]:
    """argv lists: real and invented flags, with and without values, the values numbers,
    near-miss literals, paths (the run, a file, under a file, nowhere) or any short text."""
    value = st.one_of(
        st.integers(-3, 2**64).map(str), st.floats(allow_nan=True).map(str),
        st.sampled_from(["0", "1", "2", "-1", "nan", "inf", "1e309", "64,64", "a,b", "0,",
                         "coupling_coef=0.1,1", "gamma=", "nope=1", "central", "dnc",
                         "cartpole", "pendulum", "auto", "kmeans", "h", "h:0", "h:1234",
                         ":1", "h:99999", "[::1]:80", ""]),
        st.sampled_from(paths), st.text(max_size=6))
    flag = st.one_of(st.sampled_from(flags), st.text("abcdefgh-", min_size=1, max_size=8)
                     .map(lambda s: "--" + s))
    item = st.one_of(st.tuples(flag, value), st.tuples(flag), st.tuples(value))
    return st.lists(item, max_size=6).map(lambda items: [a for it in items for a in it])


def _outcome(main, argv: list[str], capsys) -> str:
    """Run one command line in-process: its exit status, or "built" where it reached the
    model build / checkpoint load (a valid argv). Anything else fails the test, and so does
    any traceback on stderr or any compilation."""
    COMPILES.active, COMPILES.count = True, 0
    try:
        outcome = str(main(argv))
    except SystemExit as e:
        outcome = str(e.code)
    except _Built:
        outcome = "built"
    finally:
        COMPILES.active = False
    err = capsys.readouterr().err
    assert outcome in {"0", "2", "3", "built"}, (argv, outcome, err)
    assert "Traceback" not in err, (argv, err)
    assert COMPILES.count == 0, (argv, f"{COMPILES.count} compilations")
    return outcome


FUZZ = settings(max_examples=60, deadline=5000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _paths(run: str, tmp: str) -> list[str]:
    a_file = os.path.join(tmp, "a_file")
    open(a_file, "w").close()
    return [run, a_file, os.path.join(a_file, "x"), os.path.join(tmp, "nowhere", "run"), ""]


def test_fuzz_the_training_command_line(disk_full, tmp_path, no_build, capsys):
    paths = _paths(disk_full[0], str(tmp_path))
    flags = _flags(cli._parser().format_help())
    seen = set()

    @FUZZ
    @given(_argv(flags, paths))
    def check(argv):
        seen.add(_outcome(cli.main, argv, capsys))

    check()
    assert "2" in seen  # (the strategy does reach the checks)
    assert not os.path.exists(os.path.join(str(tmp_path), "nowhere"))  # nothing written
    assert checkpoint.steps(disk_full[0]) == (6,)


def test_fuzz_the_evaluate_command_line(disk_full, tmp_path, no_build, capsys):
    paths = _paths(disk_full[0], str(tmp_path))
    flags = _evaluate_flags()
    assert {"--out", "--contexts", "--step", "--seed"} <= set(flags)
    seen = set()

    @FUZZ
    @given(st.sampled_from(paths + ["--help"]), _argv(flags, paths))
    def check(first, argv):
        seen.add(_outcome(evaluate.main, [first, *argv], capsys))

    check()
    assert "2" in seen
    assert not os.path.exists(os.path.join(str(tmp_path), "nowhere"))
