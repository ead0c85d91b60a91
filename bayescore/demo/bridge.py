r"""Demo section: Schrödinger bridges.

Two uses of a Schrödinger bridge. **Transport between sample sets**: LightSB (Korotin et al.
2024) fitted between draws of a 2-D standard normal and of a mixture of eight Gaussians on a
circle, with ε = 0.1; the figure shows Euler–Maruyama trajectories of the fitted SB and its
exact marginals at t = 0, ¼, ½, ¾, 1 (Brownian-bridge sampling). **Posterior sampling**: the
Schrödinger–Föllmer sampler on a Bayesian logistic regression, beside NUTS, with the default
N(0, I) reference and with the reference set from a mean-field fit.

The data and functions are also used by ``examples/bridge_eight_gaussians.py`` and
``examples/bridge_follmer_logistic.py``.

Example:
    >>> from bayescore.demo.bridge import eight_gaussians
    >>> import jax
    >>> eight_gaussians(jax.random.key(0), 10).shape
    (10, 2)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

TITLE = "Schrödinger bridges: LightSB transport and Schrödinger–Föllmer sampling"

EPSILON = 0.1
RADIUS = 4.0
SPREAD = 0.3


def eight_gaussians(key: Any, num: int) -> Any:
    """Draws of an equal mixture of eight ``N(c_k, 0.3² I)``, ``c_k`` on the circle of radius 4.

    Example:
        >>> import jax
        >>> from bayescore.demo.bridge import eight_gaussians
        >>> float(abs(eight_gaussians(jax.random.key(0), 4000).mean()) < 0.2)
        1.0
    """
    key_component, key_noise = jax.random.split(key)
    angle = 2 * jnp.pi * jax.random.randint(key_component, (num,), 0, 8) / 8
    centres = RADIUS * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    return centres + SPREAD * jax.random.normal(key_noise, (num, 2))


def fit_translation(num_steps: int, num_rows: int = 20_000, key: int = 0) -> tuple[Any, Any]:
    """LightSB from ``N(0, I)`` to :func:`eight_gaussians` (K = 16, ε = 0.1); returns
    ``(model, losses)``.

    Example:
        >>> from bayescore.demo.bridge import fit_translation
        >>> model, losses = fit_translation(20, num_rows=200)
        >>> model.num_components, losses.shape
        (16, (20,))
    """
    from bayescore.inference.bridge import fit_lightsb

    x0 = jax.random.normal(jax.random.key(key), (num_rows, 2))
    x1 = eight_gaussians(jax.random.key(key + 1), num_rows)
    return fit_lightsb(
        x0,
        x1,
        epsilon=EPSILON,
        num_components=16,
        key=key,
        num_steps=num_steps,
        learning_rate=1e-2,
        s_init=0.1,
        progress=False,
    )


def translation_figure(model: Any, num_paths: int = 400) -> Any:
    """Trajectories of the fitted bridge and its marginals at five times.

    Example:
        >>> from bayescore.demo.bridge import fit_translation, translation_figure
        >>> model, _ = fit_translation(20, num_rows=200)
        >>> len(translation_figure(model, num_paths=20).axes)
        6
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    x0 = jax.random.normal(jax.random.key(10), (num_paths, 2))
    paths = np.asarray(model.simulate(jax.random.key(11), x0, num_steps=100))
    figure, axes = plt.subplots(1, 6, figsize=(16, 3.0), sharex=True, sharey=True)
    target = np.asarray(eight_gaussians(jax.random.key(12), 2000))
    axes[0].scatter(target[:, 0], target[:, 1], s=1, color="0.8")
    for path in paths.transpose(1, 0, 2)[:60]:
        axes[0].plot(path[:, 0], path[:, 1], lw=0.5, alpha=0.6)
    axes[0].scatter(paths[0, :, 0], paths[0, :, 1], s=3, color="tab:blue", zorder=3)
    axes[0].scatter(paths[-1, :, 0], paths[-1, :, 1], s=3, color="tab:red", zorder=3)
    axes[0].set_title("SDE trajectories (Euler–Maruyama)", fontsize=9)
    starts = jax.random.normal(jax.random.key(13), (2000, 2))
    for axis, time in zip(axes[1:], (0.0, 0.25, 0.5, 0.75, 1.0), strict=True):
        draws = np.asarray(model.sample_marginal(jax.random.key(14), starts, time))
        axis.scatter(target[:, 0], target[:, 1], s=1, color="0.85")
        axis.scatter(draws[:, 0], draws[:, 1], s=1, alpha=0.5, color="tab:purple")
        axis.set_title(f"marginal at t = {time:g}", fontsize=9)
    for axis in axes:
        axis.set_aspect("equal")
        axis.set_xlim(-6, 6)
        axis.set_ylim(-6, 6)
    figure.tight_layout()
    return figure


def logistic_regression(x: Any, y: Any = None) -> None:
    """Bayesian logistic regression with a standard normal prior on the weights.

    Example:
        >>> import bayescore as bc
        >>> from bayescore.demo.bridge import logistic_data, logistic_regression
        >>> bc.Target.from_numpyro(logistic_regression, *logistic_data()).dim
        5
    """
    import numpyro
    import numpyro.distributions as dist

    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def logistic_data(seed: int = 0, num: int = 200, dim: int = 5) -> tuple[Any, Any]:
    """A simulated data set for :func:`logistic_regression`: ``(x, y)``.

    Example:
        >>> from bayescore.demo.bridge import logistic_data
        >>> tuple(a.shape for a in logistic_data())
        ((200, 5), (200,))
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num, dim)).astype(np.float32)
    logits = x @ (1.5 * rng.normal(size=dim))
    return x, (rng.uniform(size=num) < 1 / (1 + np.exp(-logits))).astype(np.float32)


def follmer_comparison(num_samples: int, num_warmup: int = 500) -> dict[str, Any]:
    """NUTS and Schrödinger–Föllmer (default reference, and reference from a mean-field fit)
    on :func:`logistic_regression`; returns ArviZ ``DataTree`` objects by name.

    It runs NUTS, a mean-field fit and two Schrödinger–Föllmer runs (about 15 s), so the
    example is not run as a doctest; ``examples/bridge_follmer_logistic.py`` and the demo
    run it.

    Example:
        >>> from bayescore.demo.bridge import follmer_comparison
        >>> sorted(follmer_comparison(20, num_warmup=20))[0]  # doctest: +SKIP
        'NUTS'
    """
    import paramax

    import bayescore as bc
    from bayescore.inference import vi
    from bayescore.inference.bridge import schrodinger_follmer

    target = bc.Target.from_numpyro(logistic_regression, *logistic_data())
    nuts = bc.sample(
        bc.inference.nuts(),
        target,
        num_samples=num_samples,
        num_warmup=num_warmup,
        num_chains=4,
        key=jax.random.key(0),
        progress=False,
    )
    pilot = paramax.unwrap(
        bc.fit(target, vi.mean_field(target), num_steps=500, key=1, progress=False).family
    )
    trees = {"NUTS": nuts.to_arviz()}
    for name, loc, scale in (
        ("SF, N(0, I) reference", 0.0, 1.0),
        ("SF, reference from mean-field VI", pilot.loc, pilot.scale),
    ):
        result = schrodinger_follmer(
            target,
            num_samples=num_samples,
            num_chains=4,
            loc=loc,
            scale=scale,
            key=jax.random.key(2),
            progress=False,
        )
        trees[name] = result.to_arviz()
    return trees


def follmer_table(trees: dict[str, Any]) -> Any:
    """Posterior means and sds per weight and sampler, and each mean's error in NUTS sds.

    Example:
        >>> import arviz as az, numpy as np
        >>> from bayescore.demo.bridge import follmer_table
        >>> rng = np.random.default_rng(0)
        >>> trees = {name: az.from_dict({"posterior": {"w": rng.normal(size=(2, 50, 3))}})
        ...          for name in ("NUTS", "SF")}
        >>> follmer_table(trees).shape
        (2, 4)
    """
    import pandas as pd

    nuts = trees["NUTS"].posterior["w"]
    nuts_mean = nuts.mean(("chain", "draw")).values
    nuts_sd = nuts.std(("chain", "draw")).values
    rows = []
    for name, tree in trees.items():
        w = tree.posterior["w"]
        mean, sd = w.mean(("chain", "draw")).values, w.std(("chain", "draw")).values
        rows.append(
            {
                "sampler": name,
                "means": " ".join(f"{v:+.2f}" for v in mean),
                "sds": " ".join(f"{v:.2f}" for v in sd),
                "largest mean error (NUTS sds)": float(np.max(np.abs(mean - nuts_mean) / nuts_sd)),
            }
        )
    return pd.DataFrame(rows)


def run(section: Any, quick: bool) -> None:
    """Fill the demo section (see the module docstring)."""
    import arviz as az

    num_steps = 1000 if quick else 5000
    model, losses = fit_translation(num_steps)
    section.text(
        f"LightSB with K = 16 Gaussian components, fitted in {num_steps} Adam steps between "
        f"20,000 draws of N(0, I) and 20,000 of the eight-Gaussian mixture (ε = {EPSILON}, the "
        "Brownian variance of the reference process). No simulation and no neural network: "
        "the conditional plan, the drift and the marginals are closed forms of the mixture. "
        f"Final minibatch loss {float(np.mean(losses[-100:])):.3f}."
    )
    section.figure(
        translation_figure(model),
        "bridge_eight_gaussians",
        "left: SDE trajectories from N(0, I) (blue) to the mixture (red, grey: target draws); "
        "right: exact marginals of the fitted bridge at five times",
    )
    trees = follmer_comparison(250 if quick else 1000)
    section.text(
        "Schrödinger–Föllmer sampler (100 Euler steps, 100 inner draws per step) on a Bayesian "
        "logistic regression (N = 200, d = 5), beside NUTS. With the default reference "
        "N(0, I) the drift's importance weights collapse at t = 0 (see the inner ESS) and the "
        "draws are off; a reference centred and scaled by a mean-field fit fixes that."
    )
    section.table(follmer_table(trees), "posterior of w by sampler")
    ess = {
        name: float(tree.sample_stats["inner_ess"].median())
        for name, tree in trees.items()
        if "inner_ess" in tree.sample_stats
    }
    section.text(
        "Median smallest inner ESS (of 100) over the run: "
        + ", ".join(f"{name}: {value:.1f}" for name, value in ess.items())
        + "."
    )
    figure = az.plot_dist(trees, var_names=["w"], kind="kde", backend="matplotlib")
    figure.add_legend("model")
    section.figure(figure, "bridge_follmer_logistic", "marginal posteriors of w by sampler")


__all__ = [
    "eight_gaussians",
    "fit_translation",
    "follmer_comparison",
    "follmer_table",
    "logistic_data",
    "logistic_regression",
    "translation_figure",
]
