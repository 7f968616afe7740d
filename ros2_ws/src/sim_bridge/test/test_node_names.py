"""One node per name: the live ROS graph of a running swarm has no duplicate node name.

Checked in both modes of ``swarm up``: composed (every node class in one process) and
processes (one console script per node with ``--ros-args -r __node:=<name> -r __ns:=<ns>
--params-file ...``, which is also what ``launch_ros``'s ``Node(name=..., namespace=...)``
passes under ``ros2 launch``). The graph is listed by a probe node in its own context.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import rclpy
from sim_bridge.bringup import plan
from sim_bridge.config import load_config
from sim_bridge.ros.graph import duplicates, node_fqns, wait_for_nodes
from sim_bridge.ros.runner import run_composed, run_processes

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[4]
#: the swarm_services node's second node (its fan-out worker, see services_node.py)
WORKER = "/swarm_services_worker"


def _graph_while_running(run, specs, cfg, graph_probe, **kwargs) -> list[str]:
    """Run ``run`` (run_composed / run_processes) until every node has been up for 1 s (so a
    late duplicate shows too); return the graph seen then."""
    expected = set([s.fqn for s in specs] + [WORKER, "/swarm_monitor"])
    state = {"up_at": None, "graph": []}
    t0 = time.monotonic()

    def should_stop() -> bool:
        now = time.monotonic()
        if state["up_at"] is None:
            if expected <= set(node_fqns(graph_probe)):
                state["up_at"] = now
        elif now - state["up_at"] > 1.0:
            state["graph"] = node_fqns(graph_probe)
            return True
        return now - t0 > 90.0

    res = run(specs, cfg, status_every=0.0, should_stop=should_stop, **kwargs)
    assert res.stop_reason == "should_stop" and not res.errors, res.errors
    assert state["graph"], f"not all nodes came up within 90 s: {node_fqns(graph_probe)}"
    return state["graph"]


@pytest.mark.parametrize("mode", ["composed", "processes"])
def test_live_graph_has_no_duplicate_node_name(small_demo, graph_probe, mode, tmp_path):
    cfg = load_config(small_demo)
    specs = plan(cfg, small_demo)
    assert len(specs) == 9 and len({s.fqn for s in specs}) == len(specs)
    if mode == "composed":
        seen = _graph_while_running(run_composed, specs, cfg, graph_probe)
    else:
        seen = _graph_while_running(run_processes, specs, cfg, graph_probe, log_dir=str(tmp_path))
    ours = [n for n in seen if n != "/graph_probe"]
    assert duplicates(ours) == []
    # every planned node exactly once, plus the services worker and the run's monitor
    assert sorted(ours) == sorted([s.fqn for s in specs] + [WORKER, "/swarm_monitor"])


def test_services_worker_keeps_its_name_under_a_process_wide_remap(small_demo, graph_probe):
    """``ros2 launch`` renames with a process-wide ``__node:=``; only the main node follows."""
    from sim_bridge.ros.services_node import SwarmServicesNode

    context = rclpy.Context()
    rclpy.init(
        context=context,
        args=[
            "--ros-args",
            "-r",
            "__node:=svc",
            "-r",
            "__ns:=/team",
            "-p",
            f"config:={small_demo}",
        ],
    )
    node = SwarmServicesNode(context=context)
    try:
        assert node.get_fully_qualified_name() == "/team/svc"
        assert node.worker.get_fully_qualified_name() == "/team/svc_worker"
        seen = wait_for_nodes(graph_probe, ["/team/svc", "/team/svc_worker"], 20.0)
        assert seen.count("/team/svc") == 1 and seen.count("/team/svc_worker") == 1
        # one parameter server under the node's name: the worker offers none
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            services = dict(graph_probe.get_service_names_and_types_by_node("svc", "/team"))
            worker = dict(graph_probe.get_service_names_and_types_by_node("svc_worker", "/team"))
            if "/team/svc/get_parameters" in services and "/all/land" in worker:
                break
            time.sleep(0.1)
        assert "/team/svc/get_parameters" in services
        assert "/all/land" in worker  # the fan-out services live on the worker
        assert not any("parameters" in name for name in worker)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
