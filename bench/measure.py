"""Run a command and record its wall time and peak RSS (bench/processes.py runs this).

    python -S bench/measure.py OUT.json COMMAND [ARGS...]

A small launcher of its own, because a child forked straight from the benchmark would
report the benchmark's own peak RSS (ru_maxrss survives exec). Standard library only.
"""

import json
import os
import sys
import time

out, cmd = sys.argv[1], sys.argv[2:]
os.environ["NNCLI_BENCH_T0"] = repr(time.time())  # bench/phases.py counts from here
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
result = {
    "wall_s": time.perf_counter() - started,
    "max_rss_kb": usage.ru_maxrss,
    "code": os.waitstatus_to_exitcode(status),
}
with open(out, "w", encoding="utf-8") as f:  # noqa: PTH123  (no pathlib: start fast)
    json.dump(result, f)
