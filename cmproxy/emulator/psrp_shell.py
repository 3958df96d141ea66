"""The PowerShell (PSRP) shell: psrpcore's server side glued to WSMan and the engine.

psrpcore is sans-IO: we feed it the bytes of Create/Command/Send and pull fragments out of its
single send queue. A Receive asks per target (the pool, or one CommandId), so the queue is split
per target here. Each pipeline runs on its own worker thread so a Receive can long-poll while
the engine works.

The pool holds up to `MaxRunspaces` engine runspaces (the client's `max_runspaces`), opened on
demand, as PowerShell's RunspacePool does: a pipeline takes a free runspace (the most recently
released first, PowerShell's pool is a stack), a new one while fewer than MaxRunspaces exist, or
waits for one. So up to MaxRunspaces pipelines run at the same time, each on its own runspace
with its own variables, location, drives and imported modules: a client that runs pipelines
concurrently must bootstrap (Import-Module, Set-Location) in each of them. Sequential pipelines
reuse the same runspace. A runspace runs one pipeline at a time.
"""

from __future__ import annotations

import base64
import collections
import datetime
import enum
import logging
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import psrpcore
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    NETException,
    PSInvocationState,
    PSObject,
    PSSecureString,
    add_note_property,
)

from cmproxy.emulator import wsman
from cmproxy.emulator.engine import versiontable
from cmproxy.emulator.engine.api import Runspace
from cmproxy.emulator.engine.values import (
    SWITCH_PRESENT,
    CommandSpec,
    ErrorRecord,
    InvocationResult,
    PSObj,
    SecureValue,
)
from cmproxy.emulator.settings import AnswerLost

log = logging.getLogger(__name__)

#: Largest PSRP fragment we emit; Receives then pack whole fragments up to MaxEnvelopeSize.
FRAGMENT_SIZE = 32 * 1024

# -- values: PSRP → engine ---------------------------------------------------------------


#: Scalars by type, checked in this order (an IntEnum is an Enum before it is an int; psrpcore's
#: PSString/PSInt32… subclasses become the plain str/int the engine expects).
_SCALARS: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (PSSecureString, lambda v: SecureValue(str(v.decrypt()))),
    (enum.Enum, lambda v: v.value),
    (str, str),
    (int, int),
    (float, float),
    (datetime.datetime, lambda v: datetime.datetime.fromtimestamp(v.timestamp(), tz=v.tzinfo)),
    (bytes, bytes),
)


def from_ps(value: Any, depth: int = 0) -> Any:
    """A deserialised psrpcore value → the plain Python value the engine expects."""
    if depth > 16:
        return str(value)
    if value is None or isinstance(value, bool):
        return value
    for kind, convert in _SCALARS:
        if isinstance(value, kind):
            return convert(value)
    if isinstance(value, dict):
        return {from_ps(k, depth + 1): from_ps(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [from_ps(v, depth + 1) for v in value]
    if isinstance(value, PSObject):
        return _object_from_ps(value, depth)
    return value


def _object_from_ps(value: PSObject, depth: int) -> PSObj:
    """A PSObject → a PSObj with its adapted and extended properties, converted."""
    meta = value.PSObject
    props: dict[str, Any] = {}
    for prop in [*meta.adapted_properties, *meta.extended_properties]:
        try:
            props[prop.name] = from_ps(prop.get_value(value), depth + 1)
        except Exception:  # a property psrpcore cannot produce
            props[prop.name] = None
    return PSObj(type_names=list(meta.type_names), properties=props, string=meta.to_string)


def command_specs(pipeline_meta: Any) -> list[list[CommandSpec]]:
    """CreatePipeline's commands → statements (lists of CommandSpec), in order."""
    statements: list[list[CommandSpec]] = [[]]
    for cmd in pipeline_meta.commands:
        params: list[tuple[str | None, Any]] = []
        for name, value in cmd.parameters:
            pname = str(name) if name is not None else None
            if pname is not None and pname.startswith("-"):
                pname = pname[1:]
            if pname is not None and value is None:
                params.append((pname, SWITCH_PRESENT))  # <Nil/>: a switch given bare
            else:
                params.append((pname, from_ps(value)))
        statements[-1].append(
            CommandSpec(
                name=str(cmd.command_text),
                is_script=bool(cmd.is_script),
                parameters=tuple(params),
                use_local_scope=bool(cmd.use_local_scope),
            )
        )
        if cmd.end_of_statement:
            statements.append([])
    return [s for s in statements if s]


# -- values: engine → PSRP ---------------------------------------------------------------


def _type_names(names: list[str]) -> list[str]:
    """pypsrp hands back raw XML unless the chain ends in System.Object or is Deserialized."""
    names = list(names) or ["System.Management.Automation.PSCustomObject"]
    if names[-1] != "System.Object" and not names[0].startswith("Deserialized."):
        names.append("System.Object")
    return names


def to_ps(value: Any, depth: int = 2) -> Any:
    """An engine value → something psrpcore serialises as PowerShell would send it.

    `depth` is what remains of the serialisation depth: at 0 an object becomes its string.
    Live objects (IResultObject) arrive at depth 1, so their nested objects become strings.
    """
    if value is None or isinstance(value, (bool, int, float, str, bytes, datetime.datetime)):
        return value
    if isinstance(value, SecureValue):
        return PSSecureString(value.reveal())
    if isinstance(value, ErrorRecord):
        return value.message
    if isinstance(value, PSObj):
        if depth <= 0:
            return value.to_string()
        inner = 0 if value.live else depth - 1
        obj = PSObject()
        obj.PSObject.type_names = _type_names(value.type_names)
        obj.PSObject.to_string = value.to_string()
        for name, prop in value.properties.items():
            add_note_property(obj, name, to_ps(prop, inner))
        return obj
    if isinstance(value, dict):
        if depth <= 0:
            return "System.Collections.Hashtable"
        return {str(k): to_ps(v, depth - 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if depth <= 0:
            return " ".join(str(to_ps(v, 0)) for v in value)
        return [to_ps(v, depth - 1) for v in value]
    return str(value)


_PBE_CHAIN = [
    "System.Management.Automation.ParameterBindingException",
    "System.Management.Automation.RuntimeException",
    "System.SystemException",
]
_EXCEPTION_BASES = {
    "System.Management.Automation.ParameterBindingValidationException": _PBE_CHAIN,
    "System.Management.Automation.ParameterBindingArgumentTransformationException": _PBE_CHAIN,
    "System.Management.Automation.ParameterBindingException": [
        "System.Management.Automation.RuntimeException",
        "System.SystemException",
    ],
    "System.Management.Automation.CommandNotFoundException": [
        "System.Management.Automation.RuntimeException",
        "System.SystemException",
    ],
    "System.Management.Automation.ItemNotFoundException": [
        "System.Management.Automation.SessionStateException",
        "System.Management.Automation.RuntimeException",
        "System.SystemException",
    ],
    "System.Management.Automation.DriveNotFoundException": [
        "System.Management.Automation.SessionStateException",
        "System.Management.Automation.RuntimeException",
        "System.SystemException",
    ],
    "System.Management.Automation.RuntimeException": ["System.SystemException"],
    "System.Management.Automation.ParseException": [
        "System.Management.Automation.RuntimeException",
        "System.SystemException",
    ],
    "System.ArgumentException": ["System.SystemException"],
    "System.ArgumentOutOfRangeException": ["System.ArgumentException", "System.SystemException"],
    "System.InvalidOperationException": ["System.SystemException"],
}


def to_ps_error(rec: ErrorRecord) -> psrpcore.types.ErrorRecord:
    """An engine ErrorRecord → psrpcore's, with the real .NET type chain and ids."""
    exc = NETException(Message=rec.message, HResult=-2146233087)
    chain = [rec.exception_type, *_EXCEPTION_BASES.get(rec.exception_type, [])]
    for base in ("System.Exception", "System.Object"):
        if base not in chain:
            chain.append(base)
    exc.PSObject.type_names = chain
    try:
        category = ErrorCategory[rec.category]
    except KeyError:
        category = ErrorCategory.NotSpecified
    target_type = ""
    if rec.target_object is not None:
        target_type = (
            rec.target_object.type_names[0]
            if isinstance(rec.target_object, PSObj) and rec.target_object.type_names
            else {str: "String", int: "Int32", bool: "Boolean"}.get(
                type(rec.target_object), "Object"
            )
        )
    info = ErrorCategoryInfo(
        Category=category,
        Activity=rec.command_name or None,
        Reason=rec.reason or rec.exception_type.rsplit(".", 1)[-1],
        TargetName=rec.target_name
        or (str(rec.target_object) if rec.target_object is not None else None),
        TargetType=target_type or None,
    )
    return psrpcore.types.ErrorRecord(
        Exception=exc,
        CategoryInfo=info,
        TargetObject=to_ps(rec.target_object, 1),
        FullyQualifiedErrorId=rec.fully_qualified_error_id,
    )


# -- the shell ---------------------------------------------------------------------------


class _Pipe:
    """Server-side bookkeeping of one pipeline."""

    def __init__(self, pipeline: psrpcore.ServerPipeline, command_id: str) -> None:
        self.pipeline = pipeline
        self.command_id = command_id
        self.inputs: list[Any] = []
        self.stop = threading.Event()
        self.started = False
        self.finished = False
        self.lost = False
        self.is_metadata = False
        self.worker: threading.Thread | None = None


class PSRPShell:
    """One WSMan shell on the Microsoft.PowerShell resource = one PSRP runspace pool."""

    resource_uri = wsman.RESOURCE_PWSH

    def __init__(
        self,
        shell_id: str,
        runspace_factory: Callable[[], Runspace],
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.shell_id = shell_id
        self._runspace_factory = runspace_factory
        #: Engine runspaces of this pool: every one opened, and the free ones (a stack).
        self._runspaces: list[Runspace] = []
        self._free: list[Runspace] = []
        self._slots = threading.Condition()
        self.pool = psrpcore.ServerRunspacePool(
            application_private_data={
                "PSVersionTable": {
                    "PSVersion": psrpcore.types.PSVersion(versiontable.PS_VERSION),
                    "PSEdition": "Desktop",
                    "CLRVersion": psrpcore.types.PSVersion(versiontable.CLR_VERSION),
                    "BuildVersion": psrpcore.types.PSVersion(versiontable.BUILD_VERSION),
                    "WSManStackVersion": psrpcore.types.PSVersion(versiontable.WSMAN_STACK_VERSION),
                }
            }
        )
        self.cond = threading.Condition()
        self.queues: dict[str | None, collections.deque[bytes]] = collections.defaultdict(
            collections.deque
        )
        self.pipes: dict[str, _Pipe] = {}
        self.closed = False

    # -- feeding psrpcore ------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Feed client fragments and act on every event; call with self.cond held."""
        try:
            self.pool.receive_data(psrpcore.PSRPPayload(data, psrpcore.StreamType.default, None))
            while True:
                event = self.pool.next_event()
                if event is None:
                    break
                self._on_event(event)
        except wsman.WSManFault:
            raise
        except Exception as exc:
            # Garbage fragments: forget the partial input so the pool stays usable.
            self.pool._receive_buffer = bytearray()
            self.pool._incoming_fragments.clear()
            log.info("bad PSRP data on shell %s: %r", self.shell_id, exc)
            raise wsman.WSManFault(
                wsman.CODE_INVALID_SOAP_BODY,
                f"The PowerShell remoting data could not be processed: {type(exc).__name__}.",
            ) from None
        self._drain()

    def _on_event(self, event: Any) -> None:
        name = type(event).__name__
        pid = str(event.pipeline_id).upper() if getattr(event, "pipeline_id", None) else None
        pipe = self.pipes.get(pid) if pid else None
        if name in ("CreatePipelineEvent", "GetCommandMetadataEvent") and pipe is not None:
            pipe.is_metadata = name == "GetCommandMetadataEvent"
            if pipe.is_metadata or getattr(event.pipeline, "no_input", True):
                self._start(pipe)
        elif name == "PipelineInputEvent" and pipe is not None:
            pipe.inputs.append(from_ps(event.data))
        elif name == "EndOfPipelineInputEvent" and pipe is not None:
            self._start(pipe)
        elif name in ("SetMaxRunspacesEvent", "SetMinRunspacesEvent", "ResetRunspaceStateEvent"):
            self.pool.runspace_availability_response(event.ci, True)
        elif name == "GetAvailableRunspacesEvent":
            with self._slots:
                busy = len(self._runspaces) - len(self._free)
            self.pool.runspace_availability_response(event.ci, max(0, self.max_runspaces - busy))

    def _drain(self) -> None:
        """Move psrpcore's outgoing messages to per-target queues; wake long-polls."""
        while True:
            payload = self.pool.data_to_send(FRAGMENT_SIZE)
            if payload is None:
                break
            target = str(payload.pipeline_id).upper() if payload.pipeline_id else None
            self.queues[target].append(payload.data)
        self.cond.notify_all()

    # -- pipelines -------------------------------------------------------------------------

    def _start(self, pipe: _Pipe) -> None:
        if pipe.started:
            return
        pipe.started = True
        pipe.pipeline._change_state(PSInvocationState.Running, emit=False)
        pipe.worker = threading.Thread(
            target=self._run, args=(pipe,), name=f"psrp-{pipe.command_id[:8]}", daemon=True
        )
        pipe.worker.start()

    @property
    def max_runspaces(self) -> int:
        return max(1, int(self.pool.max_runspaces or 1))

    def _acquire(self, pipe: _Pipe) -> Runspace | None:
        """A runspace for the pipeline: a free one, a new one, or wait (None: stopped/closed)."""
        with self._slots:
            while True:
                if self.closed or pipe.stop.is_set():
                    return None
                if self._free:
                    return self._free.pop()
                if len(self._runspaces) < self.max_runspaces:
                    break
                self._slots.wait(0.1)
        runspace = self._runspace_factory()
        with self._slots:
            self._runspaces.append(runspace)
        return runspace

    def _release(self, runspace: Runspace) -> None:
        with self._slots:
            if not self.closed:
                self._free.append(runspace)
                self._slots.notify()
                return
            self._runspaces.remove(runspace)
        _close_runspace(runspace)

    def _run(self, pipe: _Pipe) -> None:
        """Worker: run the statements on the engine, then publish the results."""
        results: list[InvocationResult] = []
        lost = False
        crash: BaseException | None = None
        try:
            if pipe.is_metadata:
                statements: list[list[CommandSpec]] = []
            else:
                statements = command_specs(pipe.pipeline.metadata)
            runspace = self._acquire(pipe) if statements else None
            if runspace is not None:
                try:
                    for commands in statements:
                        if pipe.stop.is_set():
                            break
                        result = runspace.invoke(commands, pipe.inputs, pipe.stop)
                        results.append(result)
                        if result.terminating is not None or result.stopped:
                            break
                finally:
                    self._release(runspace)
        except AnswerLost:
            lost = True
        except Exception as exc:  # an engine bug must still end the pipeline
            log.exception("engine failed on pipeline %s", pipe.command_id)
            crash = exc
        with self.cond:
            if self.closed or pipe.command_id not in self.pipes:
                return
            if lost:
                pipe.lost = True
                pipe.finished = True
                self.cond.notify_all()
                return
            try:
                self._publish(pipe, results, crash)
            except Exception:
                log.exception("could not publish pipeline %s", pipe.command_id)
                self._fail(pipe, ErrorRecord("Internal emulator error.", "EmulatorError"))
            pipe.finished = True
            self._drain()

    def _publish(
        self, pipe: _Pipe, results: list[InvocationResult], crash: BaseException | None
    ) -> None:
        p = pipe.pipeline
        stopped = pipe.stop.is_set()
        terminating: ErrorRecord | None = None
        for result in results:
            for obj in result.output:
                p.write_output(to_ps(obj))
            for rec in result.errors:
                ps_rec = to_ps_error(rec)
                p.write_error(
                    ps_rec.Exception,
                    ps_rec.CategoryInfo,
                    ps_rec.TargetObject,
                    ps_rec.FullyQualifiedErrorId,
                )
            for text in result.warnings:
                p.write_warning(text)
            for text in result.verbose:
                p.write_verbose(text)
            for text in result.debug:
                p.write_debug(text)
            for info in result.information:
                try:
                    p.write_information(to_ps(info), source="cmproxy-emulator")
                except Exception:  # older protocol versions have no information stream
                    log.debug("information record dropped")
            stopped = stopped or result.stopped
            terminating = terminating or result.terminating
        if crash is not None:
            terminating = ErrorRecord(
                f"The emulator's engine failed: {type(crash).__name__}: {crash}",
                "EmulatorEngineError",
                exception_type="System.InvalidOperationException",
            )
        if stopped:
            p.stop()
        elif terminating is not None:
            self._fail(pipe, terminating)
        else:
            p.complete()

    @staticmethod
    def _fail(pipe: _Pipe, rec: ErrorRecord) -> None:
        """PipelineState=Failed carrying the ErrorRecord; psrpcore has no public call for it."""
        pipe.pipeline._change_state(PSInvocationState.Failed, error=to_ps_error(rec))

    # -- WSMan operations ------------------------------------------------------------------

    def create(self, req: wsman.Request) -> None:
        shell = req.body.find("rsp:Shell", wsman.NS)
        creation = shell.find("pwsh:creationXml", wsman.NS) if shell is not None else None
        if creation is None or not (creation.text or "").strip():
            raise wsman.WSManFault(
                wsman.CODE_INVALID_SOAP_BODY, "The PowerShell shell needs a creationXml."
            )
        data = _b64(creation.text)
        with self.cond:
            self._feed(data)

    def command(self, req: wsman.Request) -> ET.Element:
        cl = req.body.find("rsp:CommandLine", wsman.NS)
        if cl is None:
            raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Command needs a CommandLine.")
        command_id = (cl.attrib.get("CommandId") or str(uuid.uuid4())).upper()
        try:
            pid = uuid.UUID(command_id)
        except ValueError:
            raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Bad CommandId.") from None
        args = cl.find("rsp:Arguments", wsman.NS)
        data = _b64(args.text if args is not None else "")
        with self.cond:
            if self.closed:
                raise wsman.shell_not_found(self.shell_id)
            if command_id in self.pipes:
                raise wsman.WSManFault(wsman.CODE_ALREADY_EXISTS, "The command already exists.")
            pipeline = psrpcore.ServerPipeline(self.pool, pid)
            self.pipes[command_id] = _Pipe(pipeline, command_id)
            try:
                self._feed(data)
            except wsman.WSManFault:
                self.pipes.pop(command_id, None)
                self.pool.pipeline_table.pop(pid, None)
                raise
        resp = wsman.el(wsman.q("rsp", "CommandResponse"))
        wsman.sub(resp, wsman.q("rsp", "CommandId"), command_id)
        return resp

    def send(self, req: wsman.Request) -> ET.Element:
        send = req.body.find("rsp:Send", wsman.NS)
        if send is None:
            raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Send needs rsp:Send.")
        with self.cond:
            for stream in send.findall("rsp:Stream", wsman.NS):
                self._feed(_b64(stream.text))
        return wsman.el(wsman.q("rsp", "SendResponse"))

    def receive(self, req: wsman.Request, wait: float) -> ET.Element:
        rec = req.body.find("rsp:Receive", wsman.NS)
        ds = rec.find("rsp:DesiredStream", wsman.NS) if rec is not None else None
        if ds is None:
            raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Receive needs a DesiredStream.")
        cid = ds.attrib.get("CommandId")
        target = cid.upper() if cid else None
        budget = max(1024, req.max_envelope_size - wsman.RECEIVE_OVERHEAD) * 3 // 4
        with self.cond:
            if target is not None and target not in self.pipes:
                raise wsman.WSManFault(
                    wsman.CODE_INVALID_SOAP_BODY,
                    f"The command {cid} was not found on shell {self.shell_id}.",
                )
            ok = self.cond.wait_for(
                lambda: (
                    self.closed
                    or bool(self.queues.get(target))
                    or (target is not None and self.pipes[target].lost)
                ),
                timeout=wait,
            )
            if self.closed:
                raise wsman.shell_not_found(self.shell_id)
            pipe = self.pipes.get(target) if target else None
            if pipe is not None and pipe.lost and not self.queues.get(target):
                self._forget(pipe)
                raise wsman.DropConnection()
            if not ok:
                raise wsman.WSManFault(wsman.CODE_TIMED_OUT, wsman.MSG_TIMED_OUT)
            queue = self.queues[target]
            chunks: list[bytes] = []
            size = 0
            while queue and (not chunks or size + len(queue[0]) <= budget):
                chunk = queue.popleft()
                chunks.append(chunk)
                size += len(chunk)
            state: str | None = None
            if pipe is not None:
                done = pipe.finished and not queue
                state = "Done" if done else "Running"
        streams = [("stdout", b"".join(chunks), cid.upper() if cid else None)]
        return wsman.receive_response(streams, cid.upper() if cid else None, state)

    def signal(self, req: wsman.Request) -> ET.Element:
        sig = req.body.find("rsp:Signal", wsman.NS)
        code_el = sig.find("rsp:Code", wsman.NS) if sig is not None else None
        if sig is None or code_el is None:
            raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Signal needs a Code.")
        code = (code_el.text or "").strip().lower()
        cid = (sig.attrib.get("CommandId") or "").upper()
        with self.cond:
            pipe = self.pipes.get(cid)
            if code.endswith(("ctrl_c", "crtl_c")):
                if pipe is not None:
                    pipe.stop.set()
                    if not pipe.started:
                        pipe.started = pipe.finished = True
                        pipe.pipeline._change_state(PSInvocationState.Running, emit=False)
                        pipe.pipeline.stop()
                        self._drain()
            elif code.endswith("terminate"):
                if pipe is not None:
                    pipe.stop.set()
                    self._forget(pipe)
            else:
                raise wsman.WSManFault(
                    wsman.CODE_INVALID_SOAP_BODY, f"Unsupported signal code {code!r}."
                )
        if pipe is not None and code.endswith("terminate"):
            wsman.await_stopped([pipe.worker])
        return wsman.el(wsman.q("rsp", "SignalResponse"))

    def _forget(self, pipe: _Pipe) -> None:
        self.pipes.pop(pipe.command_id, None)
        self.pool.pipeline_table.pop(pipe.pipeline.pipeline_id, None)
        self.queues.pop(pipe.command_id, None)

    def close(self) -> None:
        """Close the pool (Delete of its shell): its pipelines are stopped, and the answer
        waits until they are (see `wsman.await_stopped`)."""
        with self.cond:
            self.closed = True
            pipes = list(self.pipes.values())
            for pipe in pipes:
                pipe.stop.set()
            self.pipes.clear()
            self.cond.notify_all()
        wsman.await_stopped([p.worker for p in pipes])
        # Free runspaces close now; busy ones when their pipeline ends (see _release).
        with self._slots:
            free, self._free = self._free, []
            for runspace in free:
                self._runspaces.remove(runspace)
            self._slots.notify_all()
        for runspace in free:
            _close_runspace(runspace)

    def running_commands(self) -> list[str]:
        """Ids of the pipelines still running, for the Command enumeration."""
        with self.cond:
            return [cid for cid, p in self.pipes.items() if p.started and not p.finished]

    def command_ids(self) -> list[str]:
        with self.cond:
            return list(self.pipes)

    def shell_info(self) -> dict[str, str]:
        return {
            "InputStreams": "stdin pr",
            "OutputStreams": "stdout",
            "State": "Connected",
            "ShellRunTime": "P0DT0H0M1S",
            "ShellInactivity": "P0DT0H0M0S",
        }


def _close_runspace(runspace: Runspace) -> None:
    try:
        runspace.close()
    except Exception:
        log.exception("runspace close failed")


def _b64(text: str | None) -> bytes:
    try:
        return base64.b64decode((text or "").strip(), validate=True)
    except Exception:
        raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Stream data is not base64.") from None
