"""Logs: the progress bar (terminal) and plain lines (CI), JSON-lines repair on resume, and
TensorBoard events read back from the files tensorboardX writes, and wandb's offline runs
read back from the files the real wandb package writes."""

import glob
import io
import json
import struct

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from distillax import logs


def _record(it, central=None):
    r = {"iteration": it, "env_steps": it * 128, "steps_per_s": 1000.0,
         "teacher_return": np.asarray([10.0 * it, 20.0]), "loss": 0.5 / it}
    if central is not None:
        r["central_return"] = central
    return r


def test_plain_lines_with_eta_when_not_a_terminal():
    lines = []
    progress = logs.Progress(total=10, start=0, log=lines.append, interactive=False)
    progress.update(_record(2))
    progress.update(_record(4, central=12.5))
    progress.close()
    assert len(lines) == 2
    assert lines[0].startswith("iter     2/10 |") and "| ETA 0:00" in lines[0]
    assert "central held-out return   12.5 (greedy)" in lines[1]


def test_print_to_a_pipe_is_not_interactive():
    stream = io.StringIO()  # isatty() is False, as for CI logs and redirected output
    assert not logs.Progress(10, 0, print, stream=stream).interactive


def test_bar_rewrites_one_line_on_a_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the bar is cut to the terminal's width
    stream, lines = io.StringIO(), []
    progress = logs.Progress(total=10, start=0, log=lines.append, interactive=True,
                             stream=stream)
    progress.update(_record(5, central=42.0))
    progress.update(_record(6))
    out = stream.getvalue()
    assert out.count("\r") == 2 and "\n" not in out  # rewritten in place
    last = out.split("\r")[-1]
    assert "[############--------]  60% 6/10" in last and "ETA" in last
    assert "central 42.0" in last  # the last held-out return stays on the bar
    progress.close()
    assert stream.getvalue().endswith("\n") and lines == []


def test_eta_counts_from_the_resumed_iteration():
    progress = logs.Progress(total=100, start=50, log=lambda s: None, interactive=False)
    assert progress.eta(50) is None
    progress._t0 -= 10.0  # 10 s for 5 iterations since the start -> 2 s each
    assert abs(progress.eta(55) - 90.0) < 0.5


def test_format_duration():
    assert logs.format_duration(75.2) == "1:15"
    assert logs.format_duration(3725) == "1:02:05"
    assert logs.format_duration(-3) == "0:00"


def test_truncate_jsonl_drops_later_and_cut_short_records(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    with open(path, "w") as f:
        for it in (2, 4, 6):
            f.write(json.dumps({"iteration": it}) + "\n")
        f.write('{"iteration": 8, "lo')  # a writer killed mid-line
    assert logs.truncate_jsonl(path, 4) == 2
    assert [r["iteration"] for r in logs.read_jsonl(path)] == [2, 4]
    assert logs.truncate_jsonl(path, 4) == 0
    assert logs.truncate_jsonl(str(tmp_path / "absent.jsonl"), 4) == 0


def read_events(logdir):
    """Every event in a TensorBoard log directory (TFRecord: length, crc, data, crc)."""
    events = []
    for path in sorted(glob.glob(f"{logdir}/events.out.tfevents.*")):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[pos + 12:pos + 12 + n])
            events.append(event)
            pos += 12 + n + 4
    return events


def test_tensorboard_scalars_per_partition_at_env_steps(tmp_path):
    sink = logs.TensorBoardSink(str(tmp_path))
    sink.write(_record(2))
    sink.write(_record(4, central=12.5))
    sink.close()
    scalars = {(v.tag, e.step): v.simple_value for e in read_events(tmp_path)
               for v in e.summary.value}
    assert scalars[("teacher_return/0", 256)] == 20.0
    assert scalars[("teacher_return/1", 512)] == 20.0
    assert scalars[("loss", 512)] == 0.125
    assert scalars[("central_return", 512)] == 12.5
    assert ("central_return", 256) not in scalars  # not evaluated at that report
    assert not any(tag in ("iteration", "env_steps") for tag, _ in scalars)


def test_tensorboard_resume_purges_the_lost_steps(tmp_path):
    logs.TensorBoardSink(str(tmp_path), purge_step=512).close()
    starts = [e for e in read_events(tmp_path) if e.HasField("session_log")]
    assert [(e.step, e.session_log.status) for e in starts] == [
        (512, event_pb2.SessionLog.START)]


def test_scalars_flatten_partitions_and_sweep_members_and_drop_non_finite():
    record = {**_record(2), "central_return": None, "approx_kl": np.asarray([np.nan, 0.25]),
              "members": [{"member": 0, "teacher_return": np.asarray([1.0, 2.0])},
                          {"member": 1, "teacher_return": np.asarray([3.0, 4.0])}]}
    assert logs.scalars(record) == {
        "steps_per_s": 1000.0, "teacher_return/0": 20.0, "teacher_return/1": 20.0,
        "loss": 0.25, "approx_kl/1": 0.25, "member0/teacher_return/0": 1.0,
        "member0/teacher_return/1": 2.0, "member1/teacher_return/0": 3.0,
        "member1/teacher_return/1": 4.0}


def wandb_runs(directory):
    """{offline run dir: (run id, history rows)} from the `.wandb` files wandb writes: a
    7-byte header, then LevelDB-log records (crc, length, type; 32 KiB blocks) of protobufs."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = {}
    for path in sorted(glob.glob(f"{directory}/wandb/offline-run-*/run-*.wandb")):
        data, pos, buf, run_id, rows = open(path, "rb").read(), 7, b"", None, []
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
                pos += 32768 - pos % 32768
                continue
            _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
            buf, pos = buf + data[pos + 7:pos + 7 + n], pos + 7 + n
            if kind in (1, 4):  # a whole record, or the last piece of one
                r = pb.Record()
                r.ParseFromString(buf)
                buf = b""
                if r.WhichOneof("record_type") == "run":
                    run_id = r.run.run_id
                if r.WhichOneof("record_type") == "history":
                    rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                 for i in r.history.item})
        out[path] = (run_id, rows)
    return out


def test_wandb_offline_logs_the_records_and_a_resume_continues_the_same_run(tmp_path,
                                                                           compile_cache):
    """The real wandb package, offline: what it writes holds metrics.jsonl's records, and the
    resumed run (which recomputes nothing here: it stopped at a checkpoint) has the same id."""
    from distillax import Config
    from distillax.run import resume, train

    d = str(tmp_path / "run")
    config = Config(num_envs=8, num_steps=8, num_minibatches=2, update_epochs=1,
                    hidden_sizes=(8,), kmeans_samples=500, eval_contexts=4, partitions=2,
                    total_steps=8 * 8 * 4, log_every=2, eval_every=2, checkpoint_every=2,
                    checkpoint_dir=d, wandb=True, wandb_mode="offline")
    # (compile_cache=None: the run uses the fixture's cache, which the fixture undoes after)
    train(config, log=lambda _: None, stop_after=2, compile_cache=None)
    resume(d, log=lambda _: None, compile_cache=None)
    runs = wandb_runs(d)
    assert len(runs) == 2  # one offline run directory per process
    stored = json.load(open(f"{d}/wandb.json"))["id"]
    assert {run_id for run_id, _ in runs.values()} == {stored}
    # (wandb adds rows of its own, e.g. `_runtime` at a resume: the records are those with
    # distillax's x axis)
    rows = [r for _, rs in runs.values() for r in rs if "env_steps" in r]
    records = logs.read_jsonl(f"{d}/metrics.jsonl")
    assert [r["env_steps"] for r in rows] == [r["env_steps"] for r in records] == [128, 256]
    for row, rec in zip(rows, records):
        assert row["teacher_return/0"] == pytest.approx(rec["teacher_return"][0])
        assert row["loss"] == pytest.approx(rec["loss"])


def test_write_atomic_writes_text_or_bytes_whole_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "f"
    logs.write_atomic(str(path), "old")
    logs.write_atomic(str(path), b"\x00new")
    assert path.read_bytes() == b"\x00new"

    class Unwritable:  # fails midway, as a kill or a full disk would
        pass

    with pytest.raises(TypeError):
        logs.write_atomic(str(path), Unwritable())
    assert path.read_bytes() == b"\x00new"  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
