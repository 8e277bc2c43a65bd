"""Reading the course's nbgrader configuration (course/config.py)."""
from traitlets.config import Config

from course.config import in_pipeline, is_step
from course.late import ApplyLatePolicy, policy_in_use
from course.plugins import SandboxedExecute


class LocalSandboxedExecute(SandboxedExecute):
    """A course's own subclass, as an instructor may configure one."""


def test_a_pipeline_step_is_found_by_class_subclass_or_import_path():
    assert is_step(SandboxedExecute, SandboxedExecute) and is_step(LocalSandboxedExecute, SandboxedExecute)
    assert is_step("course.plugins.SandboxedExecute", SandboxedExecute)
    assert not is_step("SandboxedExecute", SandboxedExecute)  # nbconvert cannot import a bare name either
    assert not is_step("no.such.Module", SandboxedExecute) and not is_step(ApplyLatePolicy, SandboxedExecute)
    config = Config({"Autograde": {"autograde_preprocessors": ["course.late.ApplyLatePolicy", LocalSandboxedExecute]}})
    assert in_pipeline(config, SandboxedExecute) and in_pipeline(config, ApplyLatePolicy) and policy_in_use(config)
    assert not policy_in_use(Config({"Autograde": {"autograde_preprocessors": [SandboxedExecute]}}))
    assert not in_pipeline(Config(), SandboxedExecute)
