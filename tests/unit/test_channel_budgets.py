"""Every socket the grader opens to a kernel is bounded by ZeroMQ itself: largest message and queue depth.

The channels the grader never reads, or reads only small replies on (stdin, control, heartbeat),
each queued up to 64 MiB a message before; a kernel could fill them unseen."""
import zmq

from course.kernel import SandboxedKernelManager, channel_budgets
from course.sandbox import Limits


def test_each_channel_of_the_manager_and_its_client_has_its_budget(tmp_path):
    limits = Limits()
    km = SandboxedKernelManager(tmp_path / "channel", limits, use_bubblewrap=False)
    budgets = channel_budgets(limits)
    try:
        kc = km.client(context=km.context)
        sockets = {"iopub": kc.connect_iopub(), "shell": kc.connect_shell(), "stdin": kc.connect_stdin(),
                   "control": kc.connect_control(), "manager's control": km.connect_control()}
        kc.hb_channel._create_socket()
        sockets["hb"] = kc.hb_channel.socket
        for name, socket in sockets.items():
            budget = budgets[name.replace("manager's ", "")]
            assert socket.getsockopt(zmq.MAXMSGSIZE) == budget.max_message_bytes, name
            assert socket.getsockopt(zmq.RCVHWM) == budget.queued_messages, name
            socket.close(linger=0)
        # The budget of the channels the grader only reads small replies on: a few small messages.
        quiet = budgets["stdin"]
        assert quiet.max_message_bytes * quiet.queued_messages <= 1024**2
        worst = sum(b.max_message_bytes * b.queued_messages for k, b in budgets.items() if k != "quiet")
        assert worst <= 512 * 1024**2, f"{worst / 1024**2:.0f} MiB could wait in the grader for one kernel"
    finally:
        km.context.destroy(linger=0)
