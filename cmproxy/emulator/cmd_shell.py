"""The WinRS cmd shell (what pywinrm uses): `powershell -encodedcommand …` as a process.

Only PowerShell command lines are emulated: the script goes to `runspace.run_script`, stdin
(Send on the `stdin` stream) becomes `$input`, output is rendered as text on stdout, errors as
CLIXML on stderr (what powershell.exe writes when its stderr is redirected), exit code 1 when
there were errors. cmd.exe's 8,191-character command-line limit is enforced.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import re
import shlex
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from cmproxy.emulator import wsman
from cmproxy.emulator.engine.api import Runspace
from cmproxy.emulator.engine.values import ErrorRecord, InvocationResult, PSObj, SecureValue
from cmproxy.emulator.settings import AnswerLost

log = logging.getLogger(__name__)

#: cmd.exe refuses longer command lines (8191 = 8 KiB - 1).
MAX_COMMAND_LINE = 8191

_ENC_FLAGS = {"-encodedcommand", "-enc", "-e", "-ec", "-en", "-enco", "-encodedc"}
_VALUE_FLAGS = {"-executionpolicy", "-ep", "-ex", "-exec", "-inputformat", "-outputformat", "-if"}
_BARE_FLAGS = {
    "-noprofile",
    "-nop",
    "-noninteractive",
    "-noni",
    "-nologo",
    "-nol",
    "-sta",
    "-mta",
    "-noexit",
}


class CmdLineError(Exception):
    """The command line is not one the emulated host can run (stderr text, exit code)."""

    def __init__(self, stderr: str, exit_code: int = 1) -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.exit_code = exit_code


def parse_command_line(line: str) -> tuple[str, bool]:
    """`powershell [-flags] -EncodedCommand B64` → (script, reads_stdin_as_input)."""
    if len(line) > MAX_COMMAND_LINE:
        raise CmdLineError("The command line is too long.\r\n")
    try:
        tokens = shlex.split(line, posix=False)
    except ValueError:
        tokens = line.split()
    if not tokens:
        raise CmdLineError("")
    exe = tokens[0].strip('"').lower().replace("/", "\\").rsplit("\\", 1)[-1]
    if exe not in ("powershell", "powershell.exe", "pwsh", "pwsh.exe"):
        raise CmdLineError(
            f"'{tokens[0]}' is not recognized as an internal or external command,\r\n"
            "operable program or batch file.\r\n"
        )
    i = 1
    while i < len(tokens):
        tok = tokens[i].lower()
        if tok in _ENC_FLAGS:
            if i + 1 >= len(tokens):
                raise CmdLineError("Missing argument for -EncodedCommand.\r\n")
            try:
                script = base64.b64decode(tokens[i + 1], validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise CmdLineError(
                    "Cannot process the command because the value specified with "
                    "-EncodedCommand is not properly encoded. The value must be Base64 "
                    "encoded.\r\n"
                ) from None
            return script, True
        if tok in ("-command", "-c"):
            text = " ".join(tokens[i + 1 :])
            if len(text) >= 2 and text[0] == text[-1] == '"':
                text = text[1:-1]
            return text, True
        if tok in _VALUE_FLAGS:
            i += 2
            continue
        if tok in _BARE_FLAGS:
            i += 1
            continue
        raise CmdLineError(
            f"The argument '{tokens[i]}' is not recognized as the name of a script file. Check "
            "the spelling of the name, or if a path was included, verify that the path is "
            "correct and try again.\r\n",
            exit_code=64,
        )
    raise CmdLineError("", exit_code=0)


# -- rendering ---------------------------------------------------------------------------


def render_value(value: Any) -> str:
    """Text PowerShell's default formatter would print for one output object (plainly)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, datetime.datetime):
        return value.strftime("%A, %B %d, %Y %I:%M:%S %p").replace(" 0", " ")
    if isinstance(value, SecureValue):
        return "System.Security.SecureString"
    if isinstance(value, PSObj):
        if value.string is not None or not value.properties:
            return value.to_string()
        width = max(len(k) for k in value.properties)
        lines = [f"{k.ljust(width)} : {_inline(v)}" for k, v in value.properties.items()]
        return "\r\n" + "\r\n".join(lines) + "\r\n"
    if isinstance(value, dict):
        return "\r\n".join(f"{k} {_inline(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "\r\n".join(render_value(v) for v in value)
    return str(value)


def _inline(value: Any) -> str:
    if isinstance(value, PSObj):
        return value.to_string()
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(_inline(v) for v in value) + "}"
    return render_value(value)


def _clixml_text(text: str) -> str:
    out = escape(text)
    return out.replace("\r", "_x000D_").replace("\n", "_x000A_")


def error_text(rec: ErrorRecord) -> str:
    """What powershell.exe prints for an error record (message, position, category, id)."""
    prefix = f"{rec.command_name} : " if rec.command_name else ""
    reason = rec.reason or rec.exception_type.rsplit(".", 1)[-1]
    target = rec.target_name or (str(rec.target_object) if rec.target_object is not None else "")
    category = f"{rec.category}: ({target}:) [{rec.command_name}], {reason}"
    return (
        f"{prefix}{rec.message}\r\n"
        f"    + CategoryInfo          : {category}\r\n"
        f"    + FullyQualifiedErrorId : {rec.fully_qualified_error_id}\r\n"
        " \r\n"
    )


def render_stderr(result: InvocationResult) -> bytes:
    records = list(result.errors)
    if result.terminating is not None:
        records.append(result.terminating)
    parts: list[str] = []
    for rec in records:
        for line in error_text(rec).split("\r\n")[:-1]:
            parts.append(f'<S S="Error">{_clixml_text(line + chr(13) + chr(10))}</S>')
    for text in result.warnings:
        parts.append(f'<S S="warning">{_clixml_text(text)}</S>')
    for text in result.verbose:
        parts.append(f'<S S="verbose">{_clixml_text(text)}</S>')
    if not parts:
        return b""
    body = (
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        + "".join(parts)
        + "</Objs>"
    )
    return ("#< CLIXML\r\n" + body).encode("utf-8")


# -- the shell ---------------------------------------------------------------------------


class _Process:
    def __init__(self, command_id: str) -> None:
        self.command_id = command_id
        self.script: str | None = None
        self.wants_stdin = False
        self.stdin = b""
        self.stdin_closed = False
        self.started = False
        self.finished = False
        self.lost = False
        self.stdout = b""
        self.stderr = b""
        self.exit_code = 0
        self.stop = threading.Event()
        self.worker: threading.Thread | None = None


class CmdShell:
    """One WinRS cmd shell; each Command is a (powershell) process."""

    resource_uri = wsman.RESOURCE_CMD

    def __init__(
        self,
        shell_id: str,
        runspace_factory: Callable[[], Runspace],
        codepage: str = "437",
    ) -> None:
        self.shell_id = shell_id
        self._runspace_factory = runspace_factory
        self.codepage = "utf-8" if codepage == "65001" else f"cp{codepage}"
        try:
            "".encode(self.codepage)
        except LookupError:
            self.codepage = "cp437"
        self.cond = threading.Condition()
        self.procs: dict[str, _Process] = {}
        self.closed = False

    def create(self, req: wsman.Request) -> None:
        return None

    def command(self, req: wsman.Request) -> ET.Element:
        cl = req.body.find("rsp:CommandLine", wsman.NS)
        if cl is None:
            raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Command needs a CommandLine.")
        cmd_el = cl.find("rsp:Command", wsman.NS)
        parts = [(cmd_el.text or "").strip() if cmd_el is not None else ""]
        parts += [(a.text or "") for a in cl.findall("rsp:Arguments", wsman.NS)]
        line = " ".join(p for p in parts if p)
        command_id = (cl.attrib.get("CommandId") or str(uuid.uuid4())).upper()
        proc = _Process(command_id)
        with self.cond:
            if self.closed:
                raise wsman.shell_not_found(self.shell_id)
            self.procs[command_id] = proc
            try:
                proc.script, proc.wants_stdin = parse_command_line(line)
                if proc.wants_stdin and "$input" not in proc.script.lower():
                    proc.wants_stdin = False
                if not proc.wants_stdin:
                    self._start(proc)
            except CmdLineError as err:
                proc.stderr = err.stderr.encode(self.codepage, "replace")
                proc.exit_code = err.exit_code
                proc.started = proc.finished = True
        resp = wsman.el(wsman.q("rsp", "CommandResponse"))
        wsman.sub(resp, wsman.q("rsp", "CommandId"), command_id)
        return resp

    def _start(self, proc: _Process) -> None:
        proc.started = True
        proc.worker = threading.Thread(
            target=self._run, args=(proc,), name=f"winrs-{proc.command_id[:8]}", daemon=True
        )
        proc.worker.start()

    def _run(self, proc: _Process) -> None:
        try:
            text = _decode(proc.stdin, self.codepage)
            lines = stdin_lines(text)
            runspace = self._runspace_factory()
            try:
                result = runspace.run_script(proc.script or "", lines, proc.stop)
            finally:
                runspace.close()
            stdout = "".join(render_value(v) + "\r\n" for v in result.output)
            stderr = render_stderr(result)
            exit_code = 1 if result.had_errors else 0
        except AnswerLost:
            with self.cond:
                proc.lost = proc.finished = True
                self.cond.notify_all()
            return
        except Exception as exc:
            log.exception("engine failed on cmd command %s", proc.command_id)
            stdout = ""
            stderr = render_stderr(
                InvocationResult(
                    terminating=ErrorRecord(f"Emulator engine error: {exc}", "EmulatorEngineError")
                )
            )
            exit_code = 1
        with self.cond:
            proc.stdout = stdout.encode(self.codepage, "replace")
            proc.stderr = stderr
            proc.exit_code = exit_code
            proc.finished = True
            self.cond.notify_all()

    def send(self, req: wsman.Request) -> ET.Element:
        send = req.body.find("rsp:Send", wsman.NS)
        if send is None:
            raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Send needs rsp:Send.")
        with self.cond:
            for stream in send.findall("rsp:Stream", wsman.NS):
                cid = (stream.attrib.get("CommandId") or "").upper()
                proc = self.procs.get(cid)
                if proc is None:
                    raise wsman.WSManFault(
                        wsman.CODE_INVALID_SOAP_BODY, f"The command {cid} was not found."
                    )
                if stream.attrib.get("Name", "stdin") != "stdin":
                    raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Only stdin is an input.")
                try:
                    data = base64.b64decode((stream.text or "").strip(), validate=True)
                except (binascii.Error, ValueError):
                    raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Not base64.") from None
                if proc.stdin_closed:
                    continue
                if len(proc.stdin) + len(data) > wsman.MAX_BODY_BYTES:
                    raise wsman.WSManFault(wsman.CODE_ENVELOPE_TOO_LARGE, "Too much input.")
                proc.stdin += data
                if stream.attrib.get("End", "false").lower() in ("true", "1"):
                    proc.stdin_closed = True
                    if not proc.started:
                        self._start(proc)
        return wsman.el(wsman.q("rsp", "SendResponse"))

    def receive(self, req: wsman.Request, wait: float) -> ET.Element:
        rec = req.body.find("rsp:Receive", wsman.NS)
        ds = rec.find("rsp:DesiredStream", wsman.NS) if rec is not None else None
        if ds is None:
            raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Receive needs a DesiredStream.")
        cid = (ds.attrib.get("CommandId") or "").upper()
        budget = max(1024, req.max_envelope_size - wsman.RECEIVE_OVERHEAD) * 3 // 4
        with self.cond:
            proc = self.procs.get(cid)
            if proc is None:
                raise wsman.WSManFault(
                    wsman.CODE_INVALID_SOAP_BODY, f"The command {cid} was not found."
                )
            ok = self.cond.wait_for(lambda: self.closed or proc.finished, timeout=wait)
            if self.closed:
                raise wsman.shell_not_found(self.shell_id)
            if proc.lost:
                self.procs.pop(cid, None)
                raise wsman.DropConnection()
            if not ok:
                raise wsman.WSManFault(wsman.CODE_TIMED_OUT, wsman.MSG_TIMED_OUT)
            out = proc.stdout[:budget]
            proc.stdout = proc.stdout[len(out) :]
            err = proc.stderr[: max(0, budget - len(out))]
            proc.stderr = proc.stderr[len(err) :]
            done = not proc.stdout and not proc.stderr
        streams: list[tuple[str, bytes, str | None]] = [
            ("stdout", out, cid),
            ("stderr", err, cid),
        ]
        resp = wsman.receive_response(
            streams, cid, "Done" if done else "Running", proc.exit_code if done else None
        )
        if done:
            for s in resp.findall("rsp:Stream", wsman.NS):
                s.attrib["End"] = "true"
        return resp

    def signal(self, req: wsman.Request) -> ET.Element:
        sig = req.body.find("rsp:Signal", wsman.NS)
        code_el = sig.find("rsp:Code", wsman.NS) if sig is not None else None
        if sig is None or code_el is None:
            raise wsman.WSManFault(wsman.CODE_INVALID_SOAP_BODY, "Signal needs a Code.")
        code = (code_el.text or "").strip().lower()
        cid = (sig.attrib.get("CommandId") or "").upper()
        with self.cond:
            proc = self.procs.get(cid)
            if proc is not None:
                proc.stop.set()
                if code.endswith("terminate"):
                    self.procs.pop(cid, None)
                elif not proc.finished and not proc.started:
                    proc.started = proc.finished = True
                    proc.exit_code = 1
                self.cond.notify_all()
        if proc is not None and code.endswith("terminate"):
            wsman.await_stopped([proc.worker])
        return wsman.el(wsman.q("rsp", "SignalResponse"))

    def close(self) -> None:
        """Delete the shell: its processes are terminated, and the answer waits until they
        are (see `wsman.await_stopped`)."""
        with self.cond:
            self.closed = True
            procs = list(self.procs.values())
            for proc in procs:
                proc.stop.set()
            self.procs.clear()
            self.cond.notify_all()
        wsman.await_stopped([p.worker for p in procs])

    def running_commands(self) -> list[str]:
        """Ids of the commands (processes) still running, for the Command enumeration."""
        with self.cond:
            return [cid for cid, p in self.procs.items() if p.started and not p.finished]

    def command_ids(self) -> list[str]:
        with self.cond:
            return list(self.procs)

    def shell_info(self) -> dict[str, str]:
        return {
            "InputStreams": "stdin",
            "OutputStreams": "stdout stderr",
            "State": "Connected",
            "ShellRunTime": "P0DT0H0M1S",
            "ShellInactivity": "P0DT0H0M0S",
        }


_NEWLINE = re.compile(r"\r\n|\r|\n")


def stdin_lines(text: str) -> list[str]:
    """stdin as powershell.exe reads it into `$input` (TextReader.ReadLine): lines end only at
    CR LF, CR or LF (not at VT, FF, FS/GS/RS, NEL, LS, PS as `str.splitlines()` would); a
    final line terminator does not start another (empty) line."""
    if not text:
        return []
    lines = _NEWLINE.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def _decode(data: bytes, codepage: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(codepage, "replace")
