"""Output directories are checked by creating them (`paths.check_output_dir`), and what the
check created is removed again when nothing was written into it (`paths.removing_unused`):
directly, and through both command lines, in-process, with the model build and the checkpoint
load made errors (`no_build`) so that nothing compiles."""

import errno
import os

import pytest

import distillax
from distillax import cli, evaluate
from distillax.config import ConfigError
from distillax.paths import check_output_dir, removing_unused

pytestmark = pytest.mark.usefixtures("compile_cache")  # tests/conftest.py

NOENT = os.strerror(errno.ENOENT)  # "No such file or directory"


def _tree(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(r, n), root)
                  for r, ds, fs in os.walk(root) for n in ds + fs)


def test_a_missing_directory_is_created_and_removed_again_if_left_empty(tmp_path):
    with removing_unused():
        full = check_output_dir(str(tmp_path / "a" / "b" / "c"), "--out")
        assert full == str(tmp_path / "a" / "b" / "c")
        assert _tree(tmp_path) == ["a", "a/b", "a/b/c"]  # made, parents first
    assert _tree(tmp_path) == []  # all three were made here and stayed empty


def test_what_was_written_into_is_kept_and_only_the_empty_rest_goes(tmp_path):
    with removing_unused():
        check_output_dir(str(tmp_path / "run"), "--checkpoint-dir")
        check_output_dir(str(tmp_path / "run" / "tensorboard"), "tensorboard")
        (tmp_path / "run" / "config.json").write_text("{}")
    # tensorboard/ was empty (removed); run/ holds config.json (kept)
    assert _tree(tmp_path) == ["run", "run/config.json"]


def test_an_exception_removes_what_was_created_and_goes_on(tmp_path):
    with pytest.raises(KeyboardInterrupt), removing_unused():
        check_output_dir(str(tmp_path / "x" / "y"), "--out")
        raise KeyboardInterrupt
    assert _tree(tmp_path) == []


def test_an_existing_directory_is_probed_and_never_removed(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("kept")
    with removing_unused():
        for name in ("empty", "full"):
            assert check_output_dir(str(tmp_path / name), "--out") == str(tmp_path / name)
        assert _tree(tmp_path) == ["empty", "full", "full/f"]  # the probe left nothing
    assert _tree(tmp_path) == ["empty", "full", "full/f"]  # not made here: not removed


def test_a_failed_mkdir_removes_the_parents_it_made_and_names_the_os_reason(tmp_path,
                                                                          monkeypatch):
    real = os.mkdir

    def mkdir(path, *args, **kwargs):  # the innermost fails as on a full quota
        if os.path.basename(path) == "c":
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    path = str(tmp_path / "a" / "b" / "c")
    with pytest.raises(ConfigError) as e:
        check_output_dir(path, "--out")
    assert str(e.value) == (f"--out = {path!r} is invalid: creating {path!r} failed: "
                            f"{os.strerror(errno.EDQUOT)}")
    assert _tree(tmp_path) == []  # a and b were made, then removed


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_proc_is_refused_with_the_os_reason():
    # /proc passes every permission question (os.access says writable for root); mkdir fails.
    with pytest.raises(ConfigError) as e:
        check_output_dir("/proc/x", "--out")
    assert str(e.value) == f"--out = '/proc/x' is invalid: creating '/proc/x' failed: {NOENT}"
    with pytest.raises(ConfigError) as e:
        check_output_dir("/proc", "--out")
    assert str(e.value) == f"--out = '/proc' is invalid: writing into it failed: {NOENT}"


# --- through the command lines -----------------------------------------------------------------


class _Built(Exception):
    """The model build (training) or the checkpoint load (evaluation) was reached."""


@pytest.fixture
def no_build(monkeypatch):
    def built(*args, **kwargs):
        raise _Built()

    monkeypatch.setattr(distillax.run, "build_model", built)
    monkeypatch.setattr("distillax.checkpoint.load", built)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_proc_through_both_command_lines_exits_2_with_one_line(standin_run, no_build, capsys):
    assert cli.main(["--checkpoint-dir", "/proc/x"]) == 2  # _Built if the check let it by
    assert capsys.readouterr().err.splitlines() == [
        "error: config field `checkpoint_dir` (--checkpoint-dir) = '/proc/x' is invalid: "
        f"creating '/proc/x' failed: {NOENT}"]
    assert evaluate.main([standin_run, "--out", "/proc/x"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --out = '/proc/x' is invalid: creating '/proc/x' failed: {NOENT}"]


def test_a_run_stopped_before_writing_leaves_no_directory(standin_run, tmp_path, monkeypatch):
    seen = []  # what existed when the build / the load was reached

    def built(*args, **kwargs):
        seen.append((_tree(tmp_path), "eval" in os.listdir(standin_run)))
        raise _Built()

    monkeypatch.setattr(distillax.run, "build_model", built)
    monkeypatch.setattr("distillax.checkpoint.load", built)
    before = _tree(standin_run)
    with pytest.raises(_Built):
        cli.main(["--checkpoint-dir", str(tmp_path / "new" / "run"), "--tensorboard"])
    with pytest.raises(_Built):
        evaluate.main([standin_run, "--out", str(tmp_path / "new" / "eval")])
    with pytest.raises(_Built):  # the default --out, inside the run
        evaluate.main([standin_run])
    assert seen == [(["new", "new/run", "new/run/tensorboard"], False),
                    (["new", "new/eval"], False), ([], True)]  # the checks made them ...
    assert _tree(tmp_path) == [] and _tree(standin_run) == before  # ... and took them back


def test_a_file_where_wandb_writes_is_refused(tmp_path, no_build, capsys):
    pytest.importorskip("wandb")
    (tmp_path / "wandb").write_text("a file where wandb's directory would go")
    assert cli.main(["--checkpoint-dir", str(tmp_path), "--wandb"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: config field `wandb` (its files in checkpoint_dir/wandb) = "
        f"{str(tmp_path / 'wandb')!r} is invalid: it exists and is not a directory"]
