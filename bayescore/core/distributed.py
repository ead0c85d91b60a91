"""Multi-process runs: :func:`initialize` starts JAX's distributed runtime from the environment.

bayescore splits work over one mesh of devices (``bc.sample(devices=..., shard=...)``,
``bc.fit(devices=...)``). Once JAX's distributed runtime runs, ``jax.devices()`` lists the
devices of every process of the run, on one machine or many (JAX's multi-controller runtime),
and ``devices="all"`` spans them all: every process runs the same script on the same data,
places only its own devices' blocks of the data, and receives the same
:class:`~bayescore.Result`. There is no cluster code in bayescore; this module only reads the
run's layout.

``import bayescore`` calls :func:`initialize` before anything starts JAX's backend (importing
BlackJAX does, and ``jax.distributed`` cannot start after), so setting the variables below in
every process's environment is all a script needs. The layout comes from these variables,
and what they leave out from a cluster launcher that JAX recognises (Slurm's ``srun``, Open
MPI's ``mpirun``, Kubernetes, Cloud TPU):

- ``BAYESCORE_COORDINATOR_ADDRESS``: ``host:port`` of process 0, reachable by every process
  (JAX's own ``JAX_COORDINATOR_ADDRESS`` works too);
- ``BAYESCORE_NUM_PROCESSES``: the number of processes;
- ``BAYESCORE_PROCESS_ID``: this process's number, ``0 ... num_processes - 1``;
- ``BAYESCORE_LOCAL_DEVICE_IDS`` (optional): the devices of its machine this process uses,
  e.g. ``0,1`` (JAX's own ``JAX_LOCAL_DEVICE_IDS`` works too).

With none of them set, the run is a single process and :func:`initialize` does nothing, so
one script serves a laptop and a cluster. (A launcher alone does not make a run
multi-process: ``srun -n 4`` may as well start four independent runs. Set
``BAYESCORE_NUM_PROCESSES`` to join them into one.) A script that calls
``jax.distributed.initialize`` itself must do so before ``import bayescore``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import jax

from bayescore.core.errors import ArgumentError, BayescoreError

logger = logging.getLogger(__name__)

# Setting -> the environment variables read for it, bayescore's first.
VARIABLES = {
    "coordinator_address": ("BAYESCORE_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS"),
    "num_processes": ("BAYESCORE_NUM_PROCESSES",),
    "process_id": ("BAYESCORE_PROCESS_ID",),
    "local_device_ids": ("BAYESCORE_LOCAL_DEVICE_IDS", "JAX_LOCAL_DEVICE_IDS"),
}


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    initialization_timeout: int = 300,
) -> bool:
    """Join this process to a multi-process run laid out by the arguments or the environment.

    Each setting is taken from its argument, else from the environment (see the module's
    list: ``BAYESCORE_COORDINATOR_ADDRESS``, ``BAYESCORE_NUM_PROCESSES``,
    ``BAYESCORE_PROCESS_ID``, ``BAYESCORE_LOCAL_DEVICE_IDS``); if some are given, a cluster
    launcher JAX recognises fills in the others. Then ``jax.distributed.initialize``
    connects the processes. On CPU their collectives run over TCP
    (``jax_cpu_collectives_implementation="gloo"``, JAX's default, set here if it was
    switched off). ``import bayescore`` calls it with the environment's settings, so a
    script calls it only to learn whether the run is multi-process (or to check the
    layout); calling it again with the same layout does nothing.

    Args:
        coordinator_address: ``host:port`` of process 0; every process must reach it.
        num_processes: the number of processes of the run.
        process_id: this process's number, ``0 ... num_processes - 1``.
        local_device_ids: the devices of this machine that this process uses (default:
            all, or one per process under a launcher that says so).
        initialization_timeout: seconds to wait for every process to connect.

    Returns:
        ``True`` if this process is one of several, ``False`` for a single-process run
        (nothing configured, or one process): then nothing is initialised.

    Raises:
        ArgumentError: a setting is malformed or the settings disagree (a process id not
            below the number of processes, only some of the settings given, two variables
            for one setting with different values, a layout unlike the one already
            initialised); the message names the variable.
        BayescoreError: a multi-process layout was asked for after JAX's backend started
            (set the variables before Python starts instead).

    Example:
        >>> import bayescore as bc
        >>> bc.distributed.initialize()  # no BAYESCORE_* variables: a single process
        False
    """
    settings = _resolve(
        {
            "coordinator_address": coordinator_address,
            "num_processes": num_processes,
            "process_id": process_id,
            "local_device_ids": local_device_ids,
        },
        os.environ,
    )
    if jax.distributed.is_initialized():
        return _check_running(settings)
    layout = ("coordinator_address", "num_processes", "process_id")
    if all(settings[name] is None for name in layout):
        return False
    if any(settings[name] is None for name in layout):
        settings = _detected(settings, initialization_timeout)
    if settings["num_processes"] == 1:
        return False
    missing = [VARIABLES[name][0] for name in layout if settings[name] is None]
    if missing:
        given = [settings["sources"][name] for name in layout if settings[name] is not None]
        raise ArgumentError(
            f"a multi-process run was asked for ({' and '.join(given)} set), but "
            f"{' and '.join(missing)} are not set and no cluster launcher gave them. Set "
            f"{' and '.join(missing)} in every process's environment too."
        )
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            settings["coordinator_address"],
            num_processes=settings["num_processes"],
            process_id=settings["process_id"],
            local_device_ids=settings["local_device_ids"],
            initialization_timeout=initialization_timeout,
        )
    except RuntimeError as error:
        if "must be called before" not in str(error):
            raise
        raise BayescoreError(
            "a multi-process run was asked for after JAX's backend started (importing "
            "bayescore starts it). Set BAYESCORE_COORDINATOR_ADDRESS, BAYESCORE_NUM_PROCESSES "
            "and BAYESCORE_PROCESS_ID in the environment before Python starts: import "
            "bayescore then joins the run. (Or call jax.distributed.initialize before "
            "importing bayescore.)"
        ) from error
    logger.info(
        "process %d of %d joined %s; %d devices in all.",
        jax.process_index(),
        jax.process_count(),
        settings["coordinator_address"],
        jax.device_count(),
    )
    return True


def _resolve(arguments: Mapping[str, object], environ: Mapping[str, str]) -> dict:
    """Each setting from its argument, else its environment variables, parsed and checked."""
    settings, sources = {}, {}
    for name, variables in VARIABLES.items():
        if arguments[name] is not None:
            sources[name] = name
            settings[name] = _parse(name, arguments[name], name)
            continue
        found = {v: environ[v].strip() for v in variables if environ.get(v, "").strip()}
        if len(set(found.values())) > 1:
            shown = " and ".join(f"{v}={value!r}" for v, value in found.items())
            raise ArgumentError(f"{shown} disagree. Set one of them, or both to the same value.")
        sources[name] = next(iter(found), variables[0])
        settings[name] = _parse(name, found[sources[name]], sources[name]) if found else None
    settings["sources"] = sources
    count, index = settings["num_processes"], settings["process_id"]
    if count is not None and index is not None and not index < count:
        raise ArgumentError(
            f"{settings['sources']['process_id']}={index} but "
            f"{settings['sources']['num_processes']}={count}: process ids run from 0 to "
            f"{count - 1}. Give each process its own id below the number of processes."
        )
    return settings


def _parse(name: str, value: object, source: str) -> object:
    """One setting's value from an argument or a variable's text; ``source`` names it."""
    text = str(value).strip()
    if name == "coordinator_address":
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ArgumentError(
                f"{source}={text!r} is not host:port. Give process 0's address and a free "
                "port, e.g. 10.0.0.1:1234 (or 127.0.0.1:1234 on one machine)."
            )
        return text
    if name == "local_device_ids":
        if isinstance(value, Sequence) and not isinstance(value, str):
            parts = [str(part) for part in value]
        else:
            parts = [part.strip() for part in text.split(",")]
        if not parts or not all(part.isdigit() for part in parts):
            raise ArgumentError(
                f"{source}={text!r} is not a list of device numbers. Give e.g. 0,1."
            )
        return [int(part) for part in parts]
    lowest = 1 if name == "num_processes" else 0
    if isinstance(value, bool) or not text.isdigit() or int(text) < lowest:
        raise ArgumentError(
            f"{source}={text!r} is not an integer >= {lowest}. Give the "
            f"{'number of processes' if lowest else 'process id'} as a whole number."
        )
    return int(text)


def _detected(settings: dict, timeout: int) -> dict:
    """The settings a cluster launcher (Slurm, Open MPI, ...) gives, by JAX's own detection."""
    # JAX's cluster detection is not public API; JAX is pinned below 0.11, where it is this.
    from jax._src.clusters import ClusterEnv

    names = ("coordinator_address", "num_processes", "process_id", "local_device_ids")
    detected = ClusterEnv.auto_detect_unset_distributed_params(
        *(settings[name] for name in names), None, timeout
    )
    return settings | dict(zip(names, detected, strict=True))


def _check_running(settings: dict) -> bool:
    """``True`` if the initialised run has the requested layout, else :class:`ArgumentError`."""
    running = {"num_processes": jax.process_count(), "process_id": jax.process_index()}
    for name, value in running.items():
        if settings[name] is not None and settings[name] != value:
            raise ArgumentError(
                f"{settings['sources'][name]}={settings[name]} but this process already runs "
                f"as {name}={value} (JAX's distributed runtime starts once per process). "
                "Start a new process for another layout."
            )
    return True


__all__ = ["VARIABLES", "initialize"]
