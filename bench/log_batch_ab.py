"""The query log's writer CPU per hit in served processes of several checkouts, in turn (A/B of a
change in the log, e.g. querylog.PROCESS_BATCH), beside (d) without the log.

    python bench/log_batch_ab.py --variant /path/to/other/checkout [--rounds 3] [--seconds 4]

Why (issue #17): a writer batch made hot in a loop (bench/log_hits_cpu.py) misses what a served
writer pays: it wakes per hand-over with its memos gone cold from the server's and the client's
work on the same 2 cores. Each target is started from its own checkout (cwd and PYTHONPATH) and
measured with bench/log_split.run (QPS, resolver and children CPU per hit). Prints the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402
from log_split import run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", type=Path, action="append", default=[], help="another checkout: a (d') from it")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-ab-"))
    files = compare.query_files(work, 200_000, random.Random(7), 1000)
    upstream = compare.free_port()
    procs: list[Any] = [compare.start_nsd(work, upstream)]
    here = compare.ROOT
    log = {"log": True, "writer": "process"}
    trees = {"d": (here, {}), "d'": (here, log), **{f"d' {v}": (v.resolve(), log) for v in a.variant}}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    try:
        compare.wait_ready(upstream)
        targets = {}
        for key, (tree, options) in trees.items():
            os.environ["PYTHONPATH"] = str(tree)
            compare.ROOT = tree  # start_resolverguard starts the server in ROOT (python -m: cwd first on sys.path)
            port = compare.free_port()
            targets[key] = (compare.start_resolverguard(work, port, upstream, True, **options), port)  # type: ignore[arg-type]
            procs.append(targets[key][0])
        compare.ROOT = here
        for _, port in targets.values():
            compare.wait_ready(port)
        time.sleep(5.0)
        for _ in range(a.rounds):
            for key, (proc, port) in targets.items():
                runs[key].append(run(proc, port, files, a.seconds))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    print(json.dumps({"load": os.getloadavg(), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
