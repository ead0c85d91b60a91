"""Scaling out: data-parallel SGLD on 1, 2, 4 devices and on 2 processes × 2 devices.

What is measured
================

Bayesian logistic regression, N = 10⁶ rows, d = 100 features (float32, fixed seed; a
N(0, I) prior on the weights), SGLD (``bc.inference.sgld(1e-6, num_shards=4)``) with
minibatches of B = 10⁵ rows (``numpyro.plate("data", N, subsample_size=B)``), one chain,
through ``bc.sample(..., devices="all", shard="data")``. Every device holds N / n rows and
evaluates the likelihood and gradient of its B / n rows of each minibatch; the gradient is
summed across devices at every step.

Four layouts, each in its own Python process (JAX fixes its device count when it starts):
1, 2 and 4 CPU devices forced with ``XLA_FLAGS=--xla_force_host_platform_device_count=n``,
and two processes of 2 devices each on 127.0.0.1, joined by ``BAYESCORE_*`` variables
(``bayescore.distributed``; collectives over TCP by gloo). Each process generates the full
data from the seed, as every process of a multi-process run holds it.

Per layout, ``bc.sample`` runs with 50 and with 250 draws, each once to compile and then
three times: *step ms* is the difference of the fastest repeated calls' wall times over the
200 extra steps (so placing the data on the devices, starting the chains and gathering the
draws, which every call does once, are left out; they are *call overhead s*); *compile s*
is the first call minus the fastest repeat at 250 draws. The minimum, because on a shared
machine other processes only ever add time. *speed-up* is the 1-device step time over the
layout's; *efficiency* is speed-up ÷ devices. *max |Δ draw|*: the largest difference of
the 250 draws from the 1-device run's (the same ``num_shards`` gives the same minibatches
on every layout: float32 rounding only).

The machine's core count bounds what can be seen: XLA's CPU devices share the cores, and one
device already runs its matrix products on several threads, so on a 2-core machine no layout
can be more than 2× faster than one device, and 4 devices oversubscribe it. The table shows
what the layouts cost here; on GPUs (one device each) the per-step work divides by n.

``--quick``: N = 10⁵, d = 20, B = 10⁴. Run ``python benchmarks/scale.py [--quick]`` or
``bayescore bench scale [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0
STEPS = (50, 250)
REPEATS = 3  # timed calls per size after the compiling one; the fastest counts
LAYOUTS = ((1, 1), (1, 2), (1, 4), (2, 2))  # (processes, devices per process)


def sizes(quick: bool) -> dict[str, int]:
    return (
        {"rows": 10**5, "dim": 20, "batch": 10**4}
        if quick
        else {
            "rows": 10**6,
            "dim": 100,
            "batch": 10**5,
        }
    )


# ----------------------------------------------------------------------------- worker


def worker(rows: int, dim: int, batch: int, out: str) -> None:
    """One process of one layout: time bc.sample, write timings and draws (process 0)."""
    import bayescore as bc  # joins the multi-process run the BAYESCORE_* variables describe

    multi = bc.distributed.initialize()
    import jax
    import numpyro
    import numpyro.distributions as dist

    def model(x: Any, y: Any) -> None:
        w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
        with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
            numpyro.sample("y", dist.Bernoulli(logits=x[idx] @ w), obs=y[idx])

    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    truth = rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim)
    y = (rng.random(rows, dtype=np.float32) < 1 / (1 + np.exp(-(x @ truth)))).astype(np.float32)
    target = bc.Target.from_numpyro(model, x, y)
    method = bc.inference.sgld(1e-6, num_shards=4)

    def call(num_samples: int) -> tuple[float, Any]:
        start = time.perf_counter()
        result = bc.sample(
            method,
            target,
            num_samples=num_samples,
            num_warmup=0,
            num_chains=1,
            key=SEED,
            progress=False,
            devices="all",
            shard="data",
        )
        draws = np.asarray(result.positions["w"])
        return time.perf_counter() - start, draws

    times = {}
    for steps in STEPS:
        first, _ = call(steps)
        repeats = [call(steps) for _ in range(REPEATS)]
        times[steps] = (first, min(seconds for seconds, _ in repeats))
        draws = repeats[-1][1]
    short, long = STEPS
    step = (times[long][1] - times[short][1]) / (long - short)
    if jax.process_index() == 0:
        np.save(out + ".npy", draws)
        record = {
            "processes": jax.process_count(),
            "devices": jax.device_count(),
            "multi_process": multi,
            "step_ms": 1e3 * step,
            "compile_s": times[long][0] - times[long][1],
            "overhead_s": times[short][1] - short * step,
        }
        Path(out + ".json").write_text(json.dumps(record))


# ----------------------------------------------------------------------------- driver


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_layout(processes: int, devices: int, size: dict[str, int], folder: str) -> dict:
    """Start the layout's processes, wait for them, return process 0's record."""
    out = os.path.join(folder, f"{processes}x{devices}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAYESCORE_")}
    env |= {
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    if processes > 1:
        env |= {
            "BAYESCORE_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}",
            "BAYESCORE_NUM_PROCESSES": str(processes),
        }
    command = [
        sys.executable,
        __file__,
        "--worker",
        *map(str, (size["rows"], size["dim"], size["batch"])),
        out,
    ]
    runs = [
        subprocess.Popen(
            command,
            env=env | {"BAYESCORE_PROCESS_ID": str(i)} if processes > 1 else env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        for run in runs:
            _, stderr = run.communicate(timeout=1800)
            if run.returncode:
                raise RuntimeError(f"layout {processes}x{devices} failed:\n{stderr[-3000:]}")
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    record = json.loads(Path(out + ".json").read_text())
    record["draws"] = np.load(out + ".npy")
    return record


def markdown(rows: list[dict], size: dict[str, int], load: tuple[float, float]) -> str:
    lines = [
        f"Data-parallel SGLD on a logistic regression, N = {size['rows']:,}, d = {size['dim']}, "
        f"minibatches of {size['batch']:,} rows (num_shards = 4), one chain; cpu, "
        f"{os.cpu_count()} CPU cores, load average {load[0]:.1f} before / {load[1]:.1f} "
        "after. *step ms*: wall time per SGLD step (from 50 and 250 draws, fastest of 3 "
        "calls each); "
        "*speed-up* and *efficiency* against one device; *max |Δ draw|* against the "
        "1-device draws. Each layout runs in its own processes; 2 × 2 joins two processes "
        "by `BAYESCORE_*` variables (gloo collectives over TCP). With 2 cores, no layout "
        "can beat one device by more than 2×.",
        "",
        "| layout | devices | step ms | speed-up | efficiency | compile s | call overhead s "
        "| max \\|Δ draw\\| |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['layout']} | {row['devices']} | {row['step_ms']:.1f} | "
            f"{row['speedup']:.2f} | {row['efficiency']:.2f} | {row['compile_s']:.1f} | "
            f"{row['overhead_s']:.2f} | {row['max_draw_difference']:.1e} |"
        )
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    """Every layout in turn; returns rows and markdown."""
    size = sizes(quick)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for processes, devices in LAYOUTS:
            record = run_layout(processes, devices, size, folder)
            rows.append(record)
    base, reference = rows[0], rows[0]["draws"]
    for row in rows:
        row["layout"] = (
            f"{row['processes']} processes × {row['devices'] // row['processes']} devices"
            if row["processes"] > 1
            else f"1 process, {row['devices']} device{'s' if row['devices'] > 1 else ''}"
        )
        row["speedup"] = base["step_ms"] / row["step_ms"]
        row["efficiency"] = row["speedup"] / row["devices"]
        row["max_draw_difference"] = float(np.max(np.abs(row.pop("draws") - reference)))
    load = (load_before, os.getloadavg()[0])
    return {
        "area": "scale",
        "sizes": size,
        "rows": rows,
        "markdown": markdown(rows, size, load),
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 10^5, d = 20")
    parser.add_argument("--worker", nargs=4, metavar=("ROWS", "DIM", "BATCH", "OUT"))
    args = parser.parse_args()
    if args.worker:
        rows, dim, batch, out = args.worker
        worker(int(rows), int(dim), int(batch), out)
        return
    print(run(quick=args.quick)["markdown"])


if __name__ == "__main__":
    main()
