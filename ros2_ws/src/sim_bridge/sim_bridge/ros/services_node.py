"""``swarm_services``: the swarm-wide ``/all/{takeoff,land,emergency_stop}`` services.

Each call fans out to every robot's ``/<robot>/<service>`` (offered by the world for sim
robots, by the bridges for real ones) concurrently and answers once all replied or
``timeout_s`` passed: ``success`` only if every robot succeeded; ``message`` lists each
robot that failed or did not answer. The services run on a worker node with its own
executor thread, so a fan-out never blocks the executor that spins this node (it works
composed in one process with the world, under any executor). The worker is named
``<this node's name>_worker`` in this node's namespace and ignores the process's command-line
arguments, so the ``-r __node:=...`` remap that ``ros2 launch`` and ``swarm up --mode
processes`` pass for this node renames this node only: one node per name in the graph.

Parameters: ``config`` (swarm file), ``timeout_s`` (2.0).
"""

from __future__ import annotations

import sys
import threading
import time

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, ShutdownException
from rclpy.node import Node
from rclpy.task import Future
from std_srvs.srv import Trigger

from sim_bridge import topics
from sim_bridge.config import load_config
from sim_bridge.ros.params import (
    SWARM_CONFIG,
    Param,
    config_error,
    declare_and_read,
    timer_period,
)
from sim_bridge.ros.spin import run_node

FANOUT = {
    topics.ALL_TAKEOFF: topics.TAKEOFF,
    topics.ALL_LAND: topics.LAND,
    topics.ALL_EMERGENCY_STOP: topics.EMERGENCY_STOP,
}

PARAMETERS = (
    SWARM_CONFIG,
    Param(
        "timeout_s",
        2.0,
        "longest wait for the robots' answers [s]",
        timer_period("a duration [s] such as 2.0"),
    ),
)


class SwarmServicesNode(Node):
    """Fan-out of the ``/all/...`` services to every robot."""

    def __init__(self, node_name: str = "swarm_services", **kwargs):
        super().__init__(node_name, **kwargs)
        values = declare_and_read(self, PARAMETERS, config_error)
        self.timeout_s = float(values["timeout_s"])
        self.cfg = load_config(values["config"])
        # The services and clients live on a worker node spun by this node's own
        # multi-threaded executor: a fan-out awaits robot services that may be served by the
        # same process (composed mode), and this works whatever executor runs this node
        # (rclpy's EventsExecutor does not await coroutine service callbacks). Reentrant: a
        # suspended fan-out must not block the responses and the timer it waits for.
        # use_global_arguments=False: a process-wide `__node:=` remap would otherwise give the
        # worker this node's name too (two nodes, two parameter servers under one name)
        self.worker = Node(
            f"{self.get_name()}_worker",
            namespace=self.get_namespace(),
            context=self.context,
            use_global_arguments=False,
            start_parameter_services=False,
        )
        self.group = ReentrantCallbackGroup()
        self.clients_by_srv = {}
        for all_name, srv in FANOUT.items():
            self.clients_by_srv[srv] = [
                (
                    name,
                    self.worker.create_client(
                        Trigger, topics.robot_topic(name, srv), callback_group=self.group
                    ),
                )
                for name in self.cfg.robot_names
            ]
            self.worker.create_service(
                Trigger, all_name, self._callback(srv), callback_group=self.group
            )
        # one polling timer shared by the fan-outs in flight, cancelled while idle
        self._polls: list = []
        self._poll_timer = self.worker.create_timer(0.02, self._poll_all, callback_group=self.group)
        self._poll_timer.cancel()
        self._stop = threading.Event()
        self._executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self._executor.add_node(self.worker)
        self._thread = threading.Thread(target=self._spin, name="swarm_services", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.1)
            except (ExternalShutdownException, ShutdownException):
                return

    def destroy_node(self) -> None:
        """Stop the worker thread and the handlers it started, then destroy both nodes."""
        self._stop.set()
        if self.context.ok():
            self._executor.wake()
        self._thread.join(timeout=2.0)
        # as sim_bridge.ros.runner.stop_executor: Jazzy's shutdown() does not wait for the
        # handlers the thread pool already runs, and one that outlives the worker node fails
        pool = getattr(self._executor, "_executor", None)
        if pool is not None:
            pool.shutdown(wait=True)
        self._executor.shutdown(timeout_sec=1.0)
        self.worker.destroy_node()
        super().destroy_node()

    def _poll_all(self) -> None:
        for poll in list(self._polls):
            poll()

    def _callback(self, srv: str):
        # a real coroutine function: the executor awaits it without blocking other callbacks
        async def callback(request: Trigger.Request, response: Trigger.Response):
            return await self._fan_out(srv, response)

        return callback

    async def _fan_out(self, srv: str, response: Trigger.Response) -> Trigger.Response:
        todo = list(self.clients_by_srv[srv])
        pending: list[tuple[str, Future]] = []
        deadline = time.monotonic() + self.timeout_s
        done = Future()

        def poll() -> None:
            # call each robot as soon as its service is discovered (a bridge may still be
            # connecting); finish when all answered or at the deadline
            for item in list(todo):
                if item[1].service_is_ready():
                    pending.append((item[0], item[1].call_async(Trigger.Request())))
                    todo.remove(item)
            finished = not todo and all(f.done() for _, f in pending)
            if not done.done() and (finished or time.monotonic() >= deadline):
                done.set_result(finished)

        self._polls.append(poll)
        self._poll_timer.reset()
        poll()
        await done
        self._polls.remove(poll)
        if not self._polls:
            self._poll_timer.cancel()
        failures = [f"{name}: service not available" for name, _ in todo]
        ok = 0
        for name, fut in pending:
            if not fut.done():
                fut.cancel()
                failures.append(f"{name}: no answer within {self.timeout_s} s")
            elif fut.result() is None or not fut.result().success:
                why = fut.result().message if fut.result() is not None else "no result"
                failures.append(f"{name}: {why}")
            else:
                ok += 1
        total = len(self.clients_by_srv[srv])
        response.success = not failures
        response.message = f"{srv}: {ok}/{total} robots ok" + (
            "; " + "; ".join(failures) if failures else ""
        )
        if response.success:
            self.worker.get_logger().info(response.message)
        else:
            self.worker.get_logger().warning(response.message)
        return response


def main(args=None) -> int:
    """``swarm_services --ros-args -p config:=swarm.yaml``; exit status 2 on a bad config."""
    return run_node(SwarmServicesNode, "swarm_services", args)


if __name__ == "__main__":
    sys.exit(main())
