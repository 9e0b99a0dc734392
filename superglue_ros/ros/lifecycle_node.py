"""superglue_lifecycle_node: the managed (rclpy.lifecycle) variant of superglue_node.

Why: nav2-style bring-ups start every node unconfigured and drive it through the standard
transitions (lifecycle_msgs ChangeState on ``<node>/change_state``). Same code as the plain
node (``SuperGlueNode``), cut at its state boundaries:

  unconfigured  parameters declared and checked (a bad one ends the process, exit code 2)
  configure     loads the models, one FrontEnd per camera, the (lifecycle) publishers;
                FAILURE with one error line when the weights or parameters are unusable
  activate      subscribes, offers verify_loop / get_keyframe / reset, starts the workers
                and the diagnostics timer; the publishers are enabled
  deactivate    stops the workers (the frame in progress is finished), drops the
                subscriptions, services and timers; publishers disabled
  cleanup       releases publishers, front-ends (keyframes) and models
  shutdown      from any state: what the above would release
Keyframe ids and the session id survive deactivate/activate; cleanup forgets the keyframes.
"""

from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn

from .node import NODE_NAME, StartupError, SuperGlueNode, main as node_main

LIFECYCLE_NODE_NAME = NODE_NAME  # the params file's /**/superglue_node key applies to both


class SuperGlueLifecycleNode(LifecycleNodeMixin, SuperGlueNode):
    """See the module docstring. Raises StartupError for unusable parameters."""

    def __init__(self, node_name: str = LIFECYCLE_NODE_NAME, **kwargs):
        SuperGlueNode.__init__(self, node_name, autostart=False, **kwargs)
        LifecycleNodeMixin.__init__(self, enable_communication_interface=True)
        self._active = False

    def _make_publisher(self, msg_type, topic: str, qos):
        return self.create_lifecycle_publisher(msg_type, topic, qos)

    def _drop_publisher(self, publisher) -> None:
        self.destroy_lifecycle_publisher(publisher)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure_pipeline()
        except StartupError as error:
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f"configured: {self.extractor.name}+{self.matcher.name} on "
            f"{self.device}, {len(self.cameras)} camera(s)"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers first
        if result == TransitionCallbackReturn.SUCCESS:
            self.activate_pipeline()
            self._active = True
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.get_logger().info("deactivated: inputs and workers stopped")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup_pipeline()
        self.get_logger().info("cleaned up: models and keyframes released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.cleanup_pipeline()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.cleanup_pipeline()
        self.get_logger().error(f"error in state {state.label}: released everything")
        return TransitionCallbackReturn.SUCCESS

    def _deactivate(self) -> None:
        if self._active:
            self.deactivate_pipeline()
            self._active = False


def main(argv: list[str] | None = None) -> int:
    """Entry point of `superglue-lifecycle-node` / `ros2 run superglue_ros superglue_lifecycle_node`:
    starts unconfigured; drive it with `ros2 lifecycle set <node> configure` / `activate`."""
    return node_main(argv, node_class=SuperGlueLifecycleNode, prog="superglue-lifecycle-node")


if __name__ == "__main__":
    sys.exit(main())
