"""Logs: the progress bar (terminal) and plain lines (CI), JSON-lines repair on resume, and
TensorBoard events read back from the files tensorboardX writes."""

import glob
import io
import json
import struct

import numpy as np
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
