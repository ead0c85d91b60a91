"""The on-disk checkpoint of a long run: what ``bc.sample(..., checkpoint=path)`` writes.

(and ``bc.fit(..., checkpoint=path)``). A checkpoint is a folder:

* ``meta.json``: the run's configuration (method, sizes, key, the shapes of the state) and how
  far it got (``warmup_done`` warmup steps, ``steps_done`` draws per chain or optimiser
  steps). It is written last, so it is the commit point: a run killed at any moment leaves the
  folder at its last commit;
* ``state.npz``: every leaf of the run's state after the last committed chunk (the sampler's
  warmup state during warmup, then the tuned parameters and the chains' states; the
  optimiser's parameters and state);
* ``chunk-<first step>.nc``: what each committed chunk produced per step (draws and per-draw
  statistics, or losses), as an xarray Dataset in netCDF (h5netcdf), dims ``(chain, draw,
  ...)`` or ``(step, ...)``.

Every file is written to a temporary name and renamed into place (``os.replace`` is atomic on
POSIX and Windows), so a reader sees a whole file or the previous one, never a torn one. A
crash loses at most the chunk that was running.

Written by hand: the draws go through xarray (as ArviZ's own files do), the state through
``numpy.savez``; no library offers a resumable scan.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayescore.core.errors import ArgumentError, check_positive_int

FORMAT = 1
META = "meta.json"
STATE = "state.npz"


class Checkpoint:
    """A checkpoint folder for one run (see the module docstring for its layout).

    Args:
        path: the folder (created if missing).
        config: what identifies the run (JSON-serialisable); a resumed run must match it.
        resume: continue the run committed in ``path``; without it ``path`` must not hold a
            checkpoint already.
        dims: the names of the leading axes of the per-step outputs; the last is the step.

    Raises:
        ArgumentError: ``path`` holds a checkpoint and ``resume`` is false, holds none and
            ``resume`` is true, or holds one of a different run.

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> from bayescore.core.checkpoint import Checkpoint
        >>> folder = tempfile.mkdtemp()
        >>> saved = Checkpoint(folder, {"num_steps": 4}, resume=False, dims=("step",))
        >>> saved.commit({"x": jnp.ones(2)}, outputs={"loss": jnp.array([3.0, 2.0])})
        >>> again = Checkpoint(folder, {"num_steps": 4}, resume=True, dims=("step",))
        >>> again.steps_done, again.load_state({"x": jnp.zeros(2)})["x"].tolist()
        (2, [1.0, 1.0])
        >>> again.load_outputs()["loss"].tolist()
        [3.0, 2.0]
    """

    def __init__(
        self,
        path: str | os.PathLike,
        config: Mapping[str, Any],
        resume: bool,
        dims: tuple[str, ...] = ("chain", "draw"),
    ) -> None:
        self.path = pathlib.Path(path)
        self.dims = dims
        self.config = json.loads(json.dumps(dict(config)))  # as it reads back from disk
        meta_file = self.path / META
        if resume:
            if not meta_file.exists():
                raise ArgumentError(
                    f"resume={str(path)!r} holds no checkpoint ({META} is missing). Pass the "
                    "folder an earlier run wrote with checkpoint=..., or start a new run."
                )
            meta = json.loads(meta_file.read_text())
            for name, value in self.config.items():
                if meta["config"].get(name) != value:
                    raise ArgumentError(
                        f"resume={str(path)!r} is a checkpoint of another run: its {name} is "
                        f"{meta['config'].get(name)!r}, this call's is {value!r}. Call with the "
                        "arguments of the run that wrote it."
                    )
            self.warmup_done = int(meta["warmup_done"])
            self.steps_done = int(meta["steps_done"])
            self.chunks = list(meta["chunks"])
        else:
            if meta_file.exists():
                raise ArgumentError(
                    f"checkpoint={str(path)!r} already holds a checkpoint. Pass "
                    f"resume={str(path)!r} to continue that run, or choose an empty folder."
                )
            self.path.mkdir(parents=True, exist_ok=True)
            self.warmup_done = self.steps_done = 0
            self.chunks = []

    def commit(
        self,
        state: Any,
        *,
        warmup_done: int | None = None,
        outputs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write ``state`` and, when given, the chunk's per-step ``outputs`` (named arrays
        with leading axes ``dims``), then commit the new progress in ``meta.json``."""
        if outputs is not None:
            name = f"chunk-{self.steps_done:09d}.nc"
            dataset = self._dataset(outputs)
            _write_atomically(self.path / name, lambda f: dataset.to_netcdf(f, engine="h5netcdf"))
            self.chunks.append(name)
            self.steps_done += dataset.sizes[self.dims[-1]]
        if warmup_done is not None:
            self.warmup_done = warmup_done
        leaves = {f"leaf_{i}": _to_numpy(leaf) for i, leaf in enumerate(jax.tree.leaves(state))}
        _write_atomically(self.path / STATE, lambda f: np.savez(f, **leaves))
        meta = {
            "format": FORMAT,
            "config": self.config,
            "warmup_done": self.warmup_done,
            "steps_done": self.steps_done,
            "chunks": self.chunks,
        }
        _write_atomically(self.path / META, lambda f: f.write(json.dumps(meta, indent=1).encode()))

    def load_state(self, template: Any) -> Any:
        """The committed state, in the structure (and key types) of ``template``."""
        leaves, treedef = jax.tree.flatten(template)
        with np.load(self.path / STATE) as saved:
            if len(saved.files) != len(leaves):
                raise ArgumentError(
                    f"the checkpoint in {str(self.path)!r} holds a state of {len(saved.files)} "
                    f"arrays, this run's has {len(leaves)}: it was written by another method "
                    "or version. Start a new run."
                )
            loaded = [_from_numpy(saved[f"leaf_{i}"], leaf) for i, leaf in enumerate(leaves)]
        return jax.tree.unflatten(treedef, loaded)

    def load_outputs(self) -> dict[str, np.ndarray]:
        """The committed per-step outputs, concatenated over chunks along the step axis
        (empty before the first chunk)."""
        if not self.chunks:
            return {}
        datasets = [xr.load_dataset(self.path / name, engine="h5netcdf") for name in self.chunks]
        joined = xr.concat(datasets, dim=self.dims[-1])
        return {name: joined[name].values for name in joined.data_vars}

    def _dataset(self, outputs: Mapping[str, Any]) -> xr.Dataset:
        variables = {}
        for name, value in outputs.items():
            value = np.asarray(value)
            extra = (f"{name}_dim_{d}" for d in range(value.ndim - len(self.dims)))
            variables[name] = ((*self.dims, *extra), value)
        return xr.Dataset(variables)


def open_checkpoint(
    checkpoint: str | os.PathLike | None,
    resume: str | os.PathLike | None,
    checkpoint_every: int,
    dims: tuple[str, ...],
    **config: Any,
) -> Checkpoint | None:
    """The :class:`Checkpoint` of a run given its ``checkpoint=`` and ``resume=`` arguments
    (``None`` when neither is given); ``config`` identifies the run.

    Example:
        >>> from bayescore.core.checkpoint import open_checkpoint
        >>> open_checkpoint(None, None, 100, ("step",), num_steps=10) is None
        True
    """
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    if checkpoint is None and resume is None:
        return None
    if checkpoint is not None and resume is not None:
        if pathlib.Path(checkpoint).resolve() != pathlib.Path(resume).resolve():
            raise ArgumentError(
                f"checkpoint={str(checkpoint)!r} and resume={str(resume)!r} differ; a resumed "
                "run keeps writing to the folder it resumes. Pass resume alone."
            )
    config = {**config, "checkpoint_every": checkpoint_every}
    path = resume if resume is not None else checkpoint
    return Checkpoint(path, config, resume=resume is not None, dims=dims)


def _write_atomically(path: pathlib.Path, write: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _is_key(leaf: Any) -> bool:
    return jnp.issubdtype(getattr(leaf, "dtype", np.float64), jax.dtypes.prng_key)


def _to_numpy(leaf: Any) -> np.ndarray:
    return np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)


def _from_numpy(value: np.ndarray, template: Any) -> Any:
    if _is_key(template):
        return jax.random.wrap_key_data(jnp.asarray(value), impl=jax.random.key_impl(template))
    if np.shape(value) != np.shape(template):
        raise ArgumentError(
            f"a checkpointed state array has shape {np.shape(value)}, this run's has "
            f"{np.shape(template)}: the checkpoint is of another run. Start a new run."
        )
    return jnp.asarray(value, dtype=jnp.result_type(template))


__all__ = ["Checkpoint", "open_checkpoint"]
