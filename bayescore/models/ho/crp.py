r"""The Chinese restaurant process: a random partition, seated one customer at a time.

Customer :math:`n+1` joins table :math:`k` with probability :math:`n_k / (n + \alpha)` and a new
table with probability :math:`\alpha / (n + \alpha)` (Aldous 1985; the predictive rule of the
Dirichlet process). Each choice is a ``Categorical`` site at ``(name, n)``, so the partition
has no truncation, is enumerable, and trace MH can move single customers. Tables are
integers labelled in order of opening: equality-comparable, and usable as arguments of
memoized functions (:func:`~bayescore.models.ho.mem`) for per-table parameters, as in LazyPPL's
``newRestaurant``/``newCustomer`` (Dash et al., POPL 2023).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayescore.core.errors import check_positive_float
from bayescore.models.ho.keys import canonical
from bayescore.models.ho.runtime import current_frame


class Restaurant:
    """The seating state of one run's Chinese restaurant (see :func:`crp`).

    Attributes:
        name: the prefix of its sites' addresses.
        alpha: the concentration :math:`\\alpha`.
        counts: customers per table.

    Example:
        >>> Restaurant("r", 1.0).num_tables
        0
    """

    def __init__(self, name: Any, alpha: float):
        self.name = canonical(name)
        self.alpha = alpha
        self.counts: list[int] = []

    @property
    def num_customers(self) -> int:
        return sum(self.counts)

    @property
    def num_tables(self) -> int:
        return len(self.counts)

    def new_customer(self) -> int:
        """Seat one customer; return the table (``0, 1, ...`` in order of opening).

        Example:
            >>> import jax
            >>> from bayescore.models.ho.measure import Random
            >>> def first_two():
            ...     restaurant = crp("r", 1.0)
            ...     return restaurant.new_customer(), restaurant.new_customer()
            >>> Random.from_model(first_two).draw(jax.random.key(0))[0]
            0
        """
        current_frame(required="Restaurant.new_customer")
        weights = np.array(self.counts + [self.alpha], dtype=float)
        table = numpyro.sample(
            (self.name, self.num_customers),
            dist.Categorical(probs=jnp.asarray(weights / weights.sum())),
        )
        table = int(table)
        if table >= self.num_tables:
            # A new table. An index past it (a replayed value that an MH proposal made
            # impossible) has probability 0, so its run is rejected; it opens one too.
            self.counts.append(1)
            return self.num_tables - 1
        self.counts[table] += 1
        return table


def crp(name: Any, alpha: float) -> Restaurant:
    """A new Chinese restaurant with concentration ``alpha`` in the running program.

    Example:
        >>> import jax
        >>> from bayescore.models.ho.measure import Random
        >>> def tables(num_customers):
        ...     restaurant = crp("r", 1.0)
        ...     return [restaurant.new_customer() for _ in range(num_customers)]
        >>> len(Random.from_model(tables, 5).draw(jax.random.key(0)))
        5
    """
    alpha = check_positive_float("alpha", alpha)
    current_frame(required="ho.crp")
    return Restaurant(name, alpha)
