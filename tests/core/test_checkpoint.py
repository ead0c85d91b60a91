"""Checkpoint and resume: a run killed by SIGKILL and resumed gives exactly the draws of the
uninterrupted run, and loses at most the chunk that was running."""

import json
import os
import pathlib
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayescore as bc
from bayescore.core.errors import ArgumentError
from bayescore.inference import vi

SIZES = dict(num_warmup=100, num_samples=150, num_chains=2, checkpoint_every=30)
RUN = """
import jax, jax.numpy as jnp
import bayescore as bc
from bayescore.inference import vi

target = bc.Target.from_logdensity(
    lambda p: -0.5 * jnp.sum((p["x"] - jnp.array([1.0, -2.0])) ** 2 / jnp.array([1.0, 4.0])),
    {"x": jnp.zeros(2)},
)
SIZES = {sizes!r}


def run(**kwargs):
    return bc.sample(
        bc.inference.nuts(), target, key=jax.random.key(7), progress=False, **SIZES, **kwargs
    )
""".replace("{sizes!r}", repr(SIZES))

# The child runs RUN and SIGKILLs itself when it is about to write its `kill_at`-th state file,
# i.e. after the draws of that chunk are on disk but before the commit that records them.
CHILD = """
import os, signal, sys
from bayescore.core import checkpoint

folder, kill_at, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
writes, write = [0], checkpoint._write_atomically


def write_or_die(path, content):
    if path.name == checkpoint.STATE:
        writes[0] += 1
        if writes[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    write(path, content)


checkpoint._write_atomically = write_or_die
exec(sys.argv[4])
run(**({"resume": folder} if resume else {"checkpoint": folder}))
"""


def run_child(folder, kill_at, resume, script=RUN):
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), str(kill_at), resume, script],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == -9, completed.stderr[-3000:]  # killed, not crashed
    return json.loads((folder / "meta.json").read_text())


def test_a_run_killed_twice_and_resumed_equals_the_uninterrupted_run(tmp_path):
    namespace = {}
    exec(RUN, namespace)
    folder = tmp_path / "run"
    # Chunks of 30 steps: warmup commits after steps 30, 60, 90, 100, then a commit per 30
    # draws. Killed writing commit 3 (warmup step 90): warmup 60 was the last commit.
    meta = run_child(folder, 3, "new")
    assert (meta["warmup_done"], meta["steps_done"]) == (60, 0)
    # Resumed (warmup 90, 100, draws 0-29) and killed writing its 4th commit (draws 30-59,
    # whose netCDF is already on disk): the last commit is draws 0-29, one chunk is lost.
    meta = run_child(folder, 4, "resume")
    assert (meta["warmup_done"], meta["steps_done"], meta["chunks"]) == (
        100,
        30,
        ["chunk-000000000.nc"],
    )
    first_chunk = (folder / "chunk-000000000.nc").stat().st_mtime_ns
    resumed = namespace["run"](resume=folder)
    uninterrupted = namespace["run"]()
    for got, want in zip(
        jax.tree.leaves(resumed.positions), jax.tree.leaves(uninterrupted.positions), strict=True
    ):
        assert got.shape == (2, 150, 2)
        np.testing.assert_array_equal(got, want)
    assert sorted(resumed.stats) == sorted(uninterrupted.stats)
    for name in uninterrupted.stats:
        np.testing.assert_array_equal(resumed.stats[name], uninterrupted.stats[name])
    for got, want in zip(
        jax.tree.leaves(resumed.parameters), jax.tree.leaves(uninterrupted.parameters), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    # The committed chunk was read back, not recomputed; the run ends fully committed.
    assert (folder / "chunk-000000000.nc").stat().st_mtime_ns == first_chunk
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["steps_done"] == 150 and len(meta["chunks"]) == 5
    assert not list(folder.glob("*.tmp"))


FIT = """
import jax, jax.numpy as jnp
import bayescore as bc
from bayescore.inference import vi
from bayescore.inference import vi

target = bc.Target.from_logdensity(
    lambda x: -0.5 * jnp.sum((x - jnp.array([1.0, -2.0])) ** 2 / jnp.array([1.0, 4.0])),
    jnp.zeros(2),
)


def run(**kwargs):
    return bc.fit(
        target, vi.full_rank(target), num_steps=300, checkpoint_every=50, key=3,
        progress=False, **kwargs,
    )
"""


def test_a_fit_killed_and_resumed_equals_the_uninterrupted_fit(tmp_path):
    namespace = {}
    exec(FIT, namespace)
    folder = tmp_path / "fit"
    meta = run_child(folder, 3, "new", FIT)  # killed writing steps 100-149: 2 chunks kept
    assert (meta["steps_done"], len(meta["chunks"])) == (100, 2)
    resumed = namespace["run"](resume=folder)
    uninterrupted = namespace["run"]()
    for name in ("loss", "objective"):
        assert resumed.history[name].shape == (300,)
        np.testing.assert_array_equal(resumed.history[name], uninterrupted.history[name])
    for got, want in zip(
        jax.tree.leaves(eqx.filter(resumed.family, eqx.is_array)),
        jax.tree.leaves(eqx.filter(uninterrupted.family, eqx.is_array)),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ArgumentError, match="estimator is 'reparameterisation'"):
        bc.fit(
            namespace["target"],
            vi.full_rank(namespace["target"]),
            estimator=vi.sticking_the_landing(),
            num_steps=300,
            checkpoint_every=50,
            key=3,
            progress=False,
            resume=folder,
        )


def test_checkpoint_folders_are_not_mixed_up(tmp_path):
    target = bc.Target.from_logdensity(lambda p: -0.5 * p["x"] ** 2, {"x": jnp.zeros(())})
    run = lambda **kwargs: bc.sample(  # noqa: E731
        bc.inference.nuts(),
        target,
        key=0,
        num_warmup=10,
        num_chains=1,
        progress=False,
        **{"num_samples": 20, "checkpoint_every": 10, **kwargs},
    )
    folder = tmp_path / "run"
    done = run(checkpoint=folder)
    again = run(resume=folder)  # a finished run resumes to its draws, with nothing to run
    np.testing.assert_array_equal(again.positions["x"], done.positions["x"])
    with pytest.raises(ArgumentError, match="already holds a checkpoint.*resume="):
        run(checkpoint=folder)
    with pytest.raises(ArgumentError, match="num_samples is 20, this call's is 30"):
        run(resume=folder, num_samples=30)
    with pytest.raises(ArgumentError, match="holds no checkpoint"):
        run(resume=tmp_path / "empty")
    with pytest.raises(ArgumentError, match="differ"):
        run(checkpoint=tmp_path / "a", resume=folder)
    with pytest.raises(ArgumentError, match="checkpoint_every"):
        run(checkpoint=tmp_path / "b", checkpoint_every=0)
    assert not (tmp_path / "b").exists()
    assert os.path.isdir(pathlib.Path(folder))
