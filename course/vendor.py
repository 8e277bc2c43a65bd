"""Every private name of nbgrader, nbclient and jupyter_client that ``course/`` relies on, in this one module.

Each is used here and only here, behind a name of the course's own; ``tests/unit/test_vendor.py`` pins every one
of them (that it exists, and its signature), so that an upgrade that renames or reshapes one fails ``make unit``
instead of a semester's grading.  The pins are the versions in ``requirements.lock``.

* nbclient: ``NotebookClient._async_poll_output_msg`` and ``_update_display_id`` (the hooks where every output
  message passes, overridden through ``NotebookClientHooks``), ``_async_cleanup_kernel`` and ``_display_id_map``;
* jupyter_client: ``ConnectionFileMixin._create_connected_socket`` (``ConnectedSocketHook``);
* nbgrader: ``BaseConverter._format_source`` (``submission_folder_pattern``), ``Autograde._sanitizing`` and
  ``_init_preprocessors`` (``sanitizing_preprocessors``), and the module globals ``nbgrader.api.create_engine``
  and ``nbgrader.nbgraderformat.common.jsonschema`` (``nbgrader_speedups``).
"""
from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from types import ModuleType

    import zmq
    from nbclient import NotebookClient
    from nbformat import NotebookNode
    from nbgrader.converters import Autograde
    from nbgrader.converters.base import BaseConverter


class ConnectedSocketHook:
    """Mixed into a jupyter_client kernel manager or client (before it): ``connected_socket`` makes the socket of
    each of the kernel's channels, where jupyter_client's private ``_create_connected_socket`` does."""

    def _create_connected_socket(self, channel: str, identity: bytes | None = None) -> zmq.Socket[Any]:
        return self.connected_socket(channel, identity)

    def connected_socket(self, channel: str, identity: bytes | None = None) -> zmq.Socket[Any]:
        # a mixin: the class it is mixed into (after it) has the method
        return super()._create_connected_socket(channel, identity)  # type: ignore[misc]


def submission_folder_pattern(converter: BaseConverter, escape: bool = True) -> str:
    """An nbgrader converter's pattern for a student's assignment folder, with named groups ``assignment_id``
    and ``student_id`` (``BaseConverter._format_source``)."""
    return converter._format_source("(?P<assignment_id>.*)", "(?P<student_id>.*)", escape=escape)


def sanitizing_preprocessors(converter: Autograde) -> None:
    """Set up an ``Autograde`` converter for its sanitize pass alone, as ``Autograde.convert_single_notebook``
    does before its first pass (``_sanitizing``, ``_init_preprocessors``)."""
    converter._sanitizing = True
    converter._init_preprocessors()


class nbgrader_speedups:
    """Two caches for nbgrader internals while ``course grade`` runs; behaviour is unchanged.

    * nbgrader opens a new SQLAlchemy engine for every ``Gradebook(...)`` (dozens per submission),
      so every query is compiled again; here the engine of a URL is made once and kept, with its
      compiled-statement cache (each ``Gradebook`` still has its own session, and closing one still
      returns the pool's connections).
    * nbgrader validates each cell's metadata with ``jsonschema.validate``, which checks the
      schema itself against the metaschema on every call; here a validator is made once per schema
      and used the same way (``best_match`` of its errors raised, as ``jsonschema.validate`` does).
    """

    def __enter__(self) -> nbgrader_speedups:
        import jsonschema
        import nbgrader.api
        import nbgrader.nbgraderformat.common as metadata_format

        self.api, self.format = nbgrader.api, metadata_format
        self.create_engine, self.jsonschema = nbgrader.api.create_engine, metadata_format.jsonschema
        engines: dict[tuple[object, ...], Any] = {}
        create_engine = self.create_engine

        def cached_create_engine(url: object, *args: Any, **kwargs: Any) -> Any:
            key = (str(url), args, tuple(sorted(kwargs.items())))
            if key not in engines:
                engines[key] = create_engine(url, *args, **kwargs)
            return engines[key]

        self.api.create_engine = cached_create_engine
        self.format.jsonschema = _CachedJsonschema(jsonschema)
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.api.create_engine = self.create_engine
        self.format.jsonschema = self.jsonschema
        return False


class _CachedJsonschema:
    def __init__(self, module: ModuleType) -> None:
        self._module: Any = module  # jsonschema
        self._validators: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def validate(self, instance: object, schema: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            return self._module.validate(instance, schema, *args, **kwargs)
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            cls = self._module.validators.validator_for(schema)
            cls.check_schema(schema)
            validator = self._validators[key] = cls(schema)
        error = self._module.exceptions.best_match(validator.iter_errors(instance))
        if error is not None:
            raise error


@functools.cache
def _notebook_client_hooks() -> type[NotebookClient]:
    # Made on first use: nbclient imports nbformat and so jsonschema, which a worker process imports only after
    # it has left out jsonschema's slow optional extra (course.workers.skip_slow_optional_imports).
    from nbclient import NotebookClient

    class NotebookClientHooks(NotebookClient):
        """nbclient's ``NotebookClient`` with the private hooks the grader overrides given names of its own:
        ``poll_output_messages`` (every message of the output channel, as it arrives, for one cell) and
        ``update_display`` (an update of an earlier output by its display id)."""

        async def _async_poll_output_msg(self, parent_msg_id: str, cell: NotebookNode, cell_index: int) -> None:
            return await self.poll_output_messages(parent_msg_id, cell, cell_index)

        async def poll_output_messages(self, parent_msg_id: str, cell: NotebookNode, cell_index: int) -> None:
            return await super()._async_poll_output_msg(parent_msg_id, cell, cell_index)

        def _update_display_id(self, display_id: str, msg: dict[str, Any]) -> None:
            return self.update_display(display_id, msg)

        def update_display(self, display_id: str, msg: dict[str, Any]) -> None:
            return super()._update_display_id(display_id, msg)

        async def cleanup_kernel(self) -> None:
            """Stop the kernel and its client, as nbclient does when its start fails."""
            await self._async_cleanup_kernel()

        @property
        def display_outputs(self) -> dict[str, Any]:
            """nbclient's map of display id -> {cell index: [output indices]}: where an update of that id goes."""
            return self._display_id_map

    return NotebookClientHooks


def __getattr__(name: str) -> Any:
    if name == "NotebookClientHooks":
        return _notebook_client_hooks()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
