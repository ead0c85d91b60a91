"""Multi-process runs: two processes on 127.0.0.1 draw what one process with as many devices
draws; bc.distributed.initialize reads the layout from the environment and checks it."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bayescore as bc
from bayescore.core.errors import ArgumentError

# Run by every process: the layout comes from BAYESCORE_* (unset: one process, four devices).
SCRIPT = textwrap.dedent("""
    import sys
    import bayescore as bc
    multi = bc.distributed.initialize()
    import jax, numpy as np, numpyro, numpyro.distributions as dist

    def model(x, y):
        w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
        with numpyro.plate("data", len(y), subsample_size=16) as idx:
            numpyro.sample("y", dist.Bernoulli(logits=x[idx] @ w), obs=y[idx])

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    logits = x @ np.array([1.0, -0.5, 0.2])
    y = (rng.uniform(size=400) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    target = bc.Target.from_numpyro(model, x, y)
    kwargs = dict(num_samples=80, num_warmup=0, key=3, progress=False, devices="all")
    data = bc.sample(bc.inference.sgld(1e-3, num_shards=4), target, num_chains=2,
                     shard="data", **kwargs)
    chains = bc.sample(bc.inference.sgld(1e-3), target, num_chains=4, **kwargs)
    assert jax.device_count() == 4 and multi == (jax.process_count() == 2)
    for result in (data, chains):  # every process holds the whole result
        assert all(leaf.is_fully_addressable for leaf in jax.tree.leaves(result.positions))
    np.savez(sys.argv[1], data=data.positions["w"], data_lp=data.stats["lp_estimate"],
             chains=chains.positions["w"])
""")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(path, devices, **layout):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BAYESCORE_", "JAX_COORDINATOR", "SLURM_", "OMPI_"))
    }
    env |= {
        "JAX_PLATFORMS": "cpu",
        # the session's flags (the root conftest.py's) and the forced device count
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
        f"--xla_force_host_platform_device_count={devices}".strip(),
        **{f"BAYESCORE_{name.upper()}": str(value) for name, value in layout.items()},
    }
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_draw_what_one_process_draws(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    runs = {
        "single": start(tmp_path / "single.npz", 4),
        **{
            f"process {i}": start(
                tmp_path / f"process{i}.npz",
                2,
                coordinator_address=address,
                num_processes=2,
                process_id=i,
            )
            for i in range(2)
        },
    }
    try:
        for name, run in runs.items():
            _, stderr = run.communicate(timeout=120)
            assert run.returncode == 0, f"{name}: {stderr[-3000:]}"
    finally:
        for run in runs.values():  # a hung or failed peer must not outlive the test
            if run.poll() is None:
                run.kill()
                run.communicate()
    single = np.load(tmp_path / "single.npz")
    for i in range(2):
        multi = np.load(tmp_path / f"process{i}.npz")
        for name in single.files:
            # The same program on the same device layout; only the order of the cross-device
            # sums differs (in-process vs TCP collectives): float32 rounding.
            np.testing.assert_allclose(multi[name], single[name], rtol=1e-5, atol=1e-5)
    assert np.std(single["data"][:, -20:]) > 0  # the chains move


@pytest.mark.parametrize(
    "environment, message",
    [
        (
            {"BAYESCORE_NUM_PROCESSES": "2"},
            "BAYESCORE_COORDINATOR_ADDRESS and BAYESCORE_PROCESS_ID are not set",
        ),
        (
            {
                "BAYESCORE_COORDINATOR_ADDRESS": "127.0.0.1:1234",
                "BAYESCORE_NUM_PROCESSES": "2",
                "BAYESCORE_PROCESS_ID": "2",
            },
            "BAYESCORE_PROCESS_ID=2 but BAYESCORE_NUM_PROCESSES=2",
        ),
        (
            {
                "BAYESCORE_COORDINATOR_ADDRESS": "127.0.0.1",
                "BAYESCORE_NUM_PROCESSES": "2",
                "BAYESCORE_PROCESS_ID": "0",
            },
            "BAYESCORE_COORDINATOR_ADDRESS='127.0.0.1' is not host:port",
        ),
        ({"BAYESCORE_NUM_PROCESSES": "two"}, "BAYESCORE_NUM_PROCESSES='two'"),
        (
            {
                "BAYESCORE_COORDINATOR_ADDRESS": "127.0.0.1:1",
                "JAX_COORDINATOR_ADDRESS": "127.0.0.1:2",
            },
            "disagree",
        ),
        ({"BAYESCORE_LOCAL_DEVICE_IDS": "0,x"}, "BAYESCORE_LOCAL_DEVICE_IDS='0,x'"),
    ],
)
def test_inconsistent_environment_names_the_variable(monkeypatch, environment, message):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ArgumentError, match=message):
        bc.distributed.initialize()


def test_a_layout_asked_for_after_jax_started_is_a_clear_error():
    with pytest.raises(bc.BayescoreError, match="before Python starts"):
        bc.distributed.initialize("127.0.0.1:1234", num_processes=2, process_id=0)


def test_one_process_initializes_nothing(monkeypatch):
    for name in ("BAYESCORE_COORDINATOR_ADDRESS", "BAYESCORE_NUM_PROCESSES"):
        monkeypatch.delenv(name, raising=False)
    assert bc.distributed.initialize() is False
    assert bc.distributed.initialize(num_processes=1, process_id=0) is False
