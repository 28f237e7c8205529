"""A real multi-node Ray cluster on this machine, every node and the driver on 127.0.0.1.

::

    with local_ray_cluster(nodes=3) as cluster:       # a head and two worker nodes, one CPU each
        evaluate(bench, out, agent, workers=3, ray_address=cluster.address)
        cluster.remove_node(cluster.worker_nodes[0])   # a node lost mid-run

Ray (2.60) picks a node's address once, when ``ray._private.ray_constants`` is imported:
unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is in the environment then, every node, and the
driver's view of the head, takes the machine's outward address (``node_ip_address`` alone
does not change the workers' view), so traffic leaves loopback. :func:`loopback_only` sets
the variable for this process and the node processes it starts; called after ``ray`` was
imported, it also turns the imported constant off, which every later call reads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from revseg.errors import SpecError

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for "no real cluster": off, it puts every node on 127.0.0.1."""


def loopback_only() -> None:
    """Make every Ray node this process starts, and this driver, use 127.0.0.1."""
    os.environ[LOOPBACK_ENV] = "0"
    import ray._private.ray_constants as constants

    constants.ENABLE_RAY_CLUSTER = False  # read at call time by ray._private.services.get_node_ip_address


@contextlib.contextmanager
def local_ray_cluster(
    nodes: int = 3,
    cpus_per_node: int = 1,
    *,
    object_store_mb: int = 100,
    system_config: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """Start a head and ``nodes - 1`` worker nodes (``ray.cluster_utils.Cluster``) on loopback; stop them after.

    Yields the ``Cluster``: ``.address`` for ``ray.init`` or ``--ray``, ``.worker_nodes`` and
    ``.remove_node`` to lose one. ``cpus_per_node`` 1 with one-CPU actors makes the work
    spread over the nodes. ``system_config`` goes to the head (e.g. faster health checks).
    """
    try:
        loopback_only()
        import ray
        from ray.cluster_utils import Cluster
    except ImportError as exc:
        raise SpecError("a local Ray cluster needs the ray package: pip install 'revseg[ray]'") from exc
    node: dict[str, Any] = {"num_cpus": cpus_per_node, "object_store_memory": object_store_mb * 2**20}
    head = {**node, "include_dashboard": False, "_system_config": system_config or {}}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**node)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
