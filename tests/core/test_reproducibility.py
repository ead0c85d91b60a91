"""Reproducibility: the same key gives bit-identical draws on the same device in another
process (a fresh JAX runtime): a stochastic-gradient sampler (its minibatch stream too) and a
variational fit. NUTS's draws are compared across processes bit for bit in
tests/core/test_checkpoint.py (a run killed and resumed in child processes)."""

import subprocess
import sys

import numpy as np

RUNS = """
import jax, numpy as np, numpyro, numpyro.distributions as dist
import bayescore as bc

def model(x, y):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([2]).to_event(1))
    with numpyro.plate("data", x.shape[0], subsample_size=16) as idx:
        numpyro.sample("y", dist.Normal(x[idx] @ w, 1.0), obs=y[idx])

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 2)).astype(np.float32)
y = (x @ np.array([1.0, -1.0]) + rng.normal(size=64)).astype(np.float32)
target = bc.Target.from_numpyro(model, x, y)
settings = dict(num_samples=50, num_warmup=50, num_chains=2, key=7, progress=False)
sgld = bc.sample(bc.inference.sgld(1e-3), target, **settings)
fit = bc.fit(target, bc.inference.vi.mean_field(target), num_steps=100, key=7, progress=False)
RESULT = {"sgld": np.asarray(sgld.positions["w"]),
          "sgld_lp": np.asarray(sgld.stats["lp_estimate"]),
          "vi": np.asarray(fit.history["objective"]),
          "vi_draws": np.asarray(fit.sample(jax.random.key(7), 20)["w"])}
"""


def test_the_same_key_gives_bit_identical_draws_in_another_process(tmp_path):
    path = tmp_path / "other.npz"
    script = RUNS + f"\nnp.savez({str(path)!r}, **RESULT)\n"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    here: dict = {}
    exec(RUNS, here)
    other = np.load(path)
    for name, value in here["RESULT"].items():
        assert value.tobytes() == other[name].tobytes(), name  # bit for bit, not approximately
