"""The private names of nbgrader, nbclient and jupyter_client that ``course/`` relies on (``course/vendor.py``), pinned:
each exists, with the parameters the course passes, and is still called where the course needs it to be.  An
upgrade that renames or reshapes one fails here, not in a semester's grading.  A hook that stopped being called
would be the worst case: the grader's output budgets (nbclient's output loop) or its sockets' budgets
(jupyter_client's channels) would silently no longer apply."""
import inspect
import re

import pytest

import course.vendor as vendor


def parameters(function):
    return list(inspect.signature(function).parameters)


def callers(owner, name):
    """The methods of ``owner`` whose source calls or reads ``name``."""
    return {member for member, function in inspect.getmembers(owner, inspect.isfunction)
            if member != name and name in inspect.getsource(function)}


def test_nbclient_hooks_where_every_output_passes():
    from nbclient import NotebookClient

    assert parameters(NotebookClient._async_poll_output_msg) == ["self", "parent_msg_id", "cell", "cell_index"]
    assert inspect.iscoroutinefunction(NotebookClient._async_poll_output_msg)
    assert "async_execute_cell" in callers(NotebookClient, "_async_poll_output_msg")
    assert parameters(NotebookClient._update_display_id) == ["self", "display_id", "msg"]
    assert "process_message" in callers(NotebookClient, "_update_display_id")
    assert parameters(NotebookClient._async_cleanup_kernel) == ["self"]
    assert inspect.iscoroutinefunction(NotebookClient._async_cleanup_kernel)
    assert {"output", "clear_display_id_mapping"} <= callers(NotebookClient, "_display_id_map")


def test_the_hooks_reach_the_course_client():
    """``NotebookClientHooks`` routes nbclient's private hooks to its own names, and the grader's client uses them."""
    import nbformat

    from course.execute import LimitedOutputClient

    client = LimitedOutputClient(nbformat.v4.new_notebook())
    assert client.display_outputs is client._display_id_map
    assert LimitedOutputClient.poll_output_messages is not vendor.NotebookClientHooks.poll_output_messages
    assert LimitedOutputClient.update_display is not vendor.NotebookClientHooks.update_display
    assert LimitedOutputClient._async_poll_output_msg is vendor.NotebookClientHooks._async_poll_output_msg
    assert LimitedOutputClient._update_display_id is vendor.NotebookClientHooks._update_display_id


def test_jupyter_client_makes_every_channel_socket_through_one_method():
    from jupyter_client.connect import ConnectionFileMixin

    assert parameters(ConnectionFileMixin._create_connected_socket) == ["self", "channel", "identity"]
    assert {f"connect_{channel}" for channel in ("iopub", "shell", "stdin", "control", "hb")} <= \
        callers(ConnectionFileMixin, "_create_connected_socket(")


@pytest.mark.parametrize("owner", ["course.kernel.SandboxedKernelManager", "course.kernel.SandboxedKernelClient"])
def test_the_course_kernel_classes_take_the_socket_hook(owner):
    import importlib

    module, name = owner.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    assert cls._create_connected_socket is vendor.ConnectedSocketHook._create_connected_socket
    assert cls.connected_socket is not vendor.ConnectedSocketHook.connected_socket  # its own budgets


def test_nbgrader_internals_the_grader_uses():
    import nbgrader.api
    import nbgrader.nbgraderformat.common as metadata_format
    from nbgrader.converters import Autograde
    from nbgrader.converters.base import BaseConverter

    assert parameters(BaseConverter._format_source) == ["self", "assignment_id", "student_id", "escape"]
    assert {"init_notebooks", "init_assignment"} <= callers(BaseConverter, "_format_source(")
    assert parameters(Autograde._init_preprocessors) == ["self"]
    assert {"_init_preprocessors", "convert_single_notebook"} <= callers(Autograde, "_sanitizing")
    # the module globals nbgrader_speedups replaces while course grade runs
    assert callable(nbgrader.api.create_engine) and "create_engine(" in inspect.getsource(nbgrader.api.Gradebook.__init__)
    assert metadata_format.jsonschema.__name__ == "jsonschema"
    assert "jsonschema.validate(" in inspect.getsource(metadata_format)


def test_the_course_touches_no_private_vendor_name_outside_vendor():
    """The names above appear in ``course/vendor.py`` and nowhere else in ``course/``."""
    from course import ROOT

    private = ("_async_poll_output_msg", "_update_display_id", "_async_cleanup_kernel", "_display_id_map",
               "_create_connected_socket", "_format_source", "_sanitizing", "_init_preprocessors",
               "api.create_engine", "format.jsonschema")
    found = {(path.name, name) for path in (ROOT / "course").glob("*.py") if path.name != "vendor.py"
             for name in private if re.search(rf"(?<!\w){re.escape(name)}\b", path.read_text())}
    assert not found, sorted(found)
