"""dask_join.py — the Dask peer of the elastic_join row, done the way
dask-jobqueue's SLURMCluster does it (dask-jobqueue itself is not packaged
in Debian): a scheduler in this process, JOBS sbatch jobs whose script is
the one SLURMCluster.job_script() writes (`dask-worker tcp://ADDR:PORT
--nworkers W --nthreads 1 ...`), timed from before the scheduler starts to
client.wait_for_workers(JOBS * W) plus one client.run on every worker.
Prints `workers N seconds S`; cancels its jobs on every path.

    python3 dask_join.py ADDR JOBS W LOGDIR
"""
import os
import subprocess
import sys
import time

addr, jobs, per, logdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

from distributed import Client, LocalCluster  # noqa: E402  (import not timed)

SCRIPT = """#!/usr/bin/env bash

#SBATCH -J dask-worker
#SBATCH -e {logdir}/dask-worker-%J.err
#SBATCH -o {logdir}/dask-worker-%J.out
#SBATCH -n 1
#SBATCH --cpus-per-task={per}
#SBATCH -t 00:10:00

{python} -m distributed.cli.dask_worker {sched} --nthreads 1 --nworkers {per} --memory-limit 0 --name {name} --nanny --death-timeout 60 --local-directory {logdir}
"""

ids = []
t0 = time.time()
cluster = LocalCluster(n_workers=0, host=addr, scheduler_port=0,
                       dashboard_address=None, protocol="tcp://")
try:
    client = Client(cluster)
    # One script per job, as dask-jobqueue names each job's workers apart.
    for j in range(jobs):
        path = os.path.join(logdir, "dask-job-%d-%d.sh" % (os.getpid(), j))
        with open(path, "w") as f:
            f.write(SCRIPT.format(logdir=logdir, per=per, python=sys.executable,
                                  sched=cluster.scheduler_address,
                                  name="SLURMCluster-%d" % j))
        out = subprocess.run(["sbatch", "--parsable", path], check=True,
                             capture_output=True, text=True).stdout
        ids.append(out.strip().split(";")[0])
    client.wait_for_workers(jobs * per, timeout=120)
    res = client.run(lambda: 1)
    t1 = time.time()
    print("workers %d seconds %.6f" % (len(res), t1 - t0), flush=True)
finally:
    if ids:
        subprocess.run(["scancel"] + ids)
    try:
        client.close()
    except Exception:
        pass
    cluster.close()
