"""PSRP transport (pypsrp): runspace pools per session, reused, health-checked, recreated.

Scripts run with `add_script(template, use_local_scope=True)` and their values are bound with
`add_parameter`, so no value ever becomes script text. Each runs in its own local scope: left
out, UseLocalScope means false and PowerShell dot-sources the script into the pool's global
scope, where its typed parameters would linger as type-constrained variables. A `Secret` is
sent as a PowerShell SecureString (`<SS>`), encrypted with the session key each pool agrees
with the server (`RunspacePool.exchange_keys()`; every pool of a transport sends the same RSA
public key, `session_keys.py`); the clear text only exists inside this process and inside the
remote runspace.

Each pool holds one runspace, so the session bootstrap (module import, site drive, location)
done once per pool stays in effect for every later pipeline on it. A sequential caller uses one
pool; concurrent callers (the bulk engine's threads) borrow up to `max_pools` pools, opened on
demand, so independent pipelines run side by side on the SMS Provider. When a pool dies (idle
timeout, server restart) it is recreated and the bootstrap runs again before the next step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pypsrp.complex_objects import GenericComplexObject, PSInvocationState, RunspacePoolState
from pypsrp.exceptions import AuthenticationError as PypsrpAuthenticationError
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import TaggedValue
from pypsrp.wsman import SelectorSet, WSMan

from cmproxy._exceptions import CMProxyError, PowerShellError, QuotaExceededError, TransportError
from cmproxy.connection import DEFAULT_MAX_POOLS, ConnectionInfo
from cmproxy.model import Secret
from cmproxy.retry import wait_for_quota
from cmproxy.slots import ShellSlots, Slot
from cmproxy.templates import load_prelude
from cmproxy.transports.base import (
    ErrorInfo,
    PipelineRef,
    RemoteShell,
    Result,
    Step,
    Transport,
    category_name,
    error_from_info,
    translate_exception,
)
from cmproxy.transports.import_turns import PROCESSOR_COUNT, ImportTurns, processor_count
from cmproxy.transports.session_keys import KeyPair, KeySharingRunspacePool

__all__ = ["DEFAULT_MAX_POOLS", "PSRPTransport"]

log = logging.getLogger(__name__)

#: WSMan fault codes meaning "that shell/pool no longer exists on the server".
_POOL_GONE = frozenset({0x8033805B, 0x80338029})


#: Runspace pools one session may open at most, by default, is `ConnectionInfo.max_pools`
#: (DEFAULT_MAX_POOLS, 12): each is one WinRM shell and one wsmprovhost process with the
#: ConfigurationManager module loaded on the SMS Provider. The endpoint refuses a user's shells
#: beyond its MaxShellsPerUser (25 for the PowerShell plug-in), whichever process asks, so the
#: pools of all of an account's cmproxy processes also share `account_max_shells` slots
#: (cmproxy.slots), and a quota fault is met with fewer pools or a bounded wait.

#: The second command of every step's pipeline: the step's output comes back as JSON text, at
#: most PACK_ROWS objects per string, instead of one CLIXML object (one PSRP message) per row.
#: Serialising thousands of rows as CLIXML objects, and deserialising them in pypsrp, costs
#: far more CPU on both ends than JSON, and the rows are flat (strings, numbers, booleans), so
#: nothing is lost: the values are the ones the WinRS transport already receives as JSON.
#: Chunks keep each string far below ConvertTo-Json's length limits in Windows PowerShell 5.1.
PACK_ROWS = 500
PACK_OUTPUT = f"""# cmproxy: the step's output as JSON arrays of at most {PACK_ROWS} objects
$rows = @($input)
$i = 0
while ($i -lt $rows.Count) {{
    $last = $i + {PACK_ROWS - 1}
    if ($last -ge $rows.Count) {{
        $last = $rows.Count - 1
    }}
    ConvertTo-Json -InputObject @($rows[$i..$last]) -Compress -Depth 6
    $i = $last + 1
}}
"""


class _Lane:
    """One runspace pool (one runspace) with its own WSMan connection and bootstrap, and the
    account-wide shell slot it holds while it has a pool (or is opening one)."""

    def __init__(self) -> None:
        self.wsman: WSMan | None = None
        self.pool: RunspacePool | None = None
        self.keys_exchanged = False
        #: The prelude text this pool's runspace has defined (None: not yet). Its functions
        #: live in the runspace's global scope, so later pipelines need not carry it again.
        self.prelude: str | None = None
        self.last_used = 0.0
        self.slot: Slot | None = None
        #: The pool's connection settings, to delete its shell if its own connection broke.
        self.info: ConnectionInfo | None = None

    def release_slot(self) -> None:
        slot, self.slot = self.slot, None
        if slot is not None:
            slot.release()


class _Fewer(Exception):  # noqa: N818 - internal signal
    """No shell for one more pool (quota or slots); carry on with the pools already open."""


class PSRPTransport(Transport):
    """Runs steps in long-lived remote runspace pools, reused, health-checked, recreated.

    Safe for concurrent use: each step borrows a *lane* (a runspace pool with one runspace and
    its own WSMan connection, bootstrapped once) for its duration. A single-threaded caller
    only ever uses one lane; concurrent callers open more, lazily, up to `max_pools`, so the
    module import runs once per lane, in parallel. `health_check_after` (seconds idle) decides
    when a lane's pool is probed with `is_alive()` before it is used again; a dead pool is
    replaced and the setup step re-run.
    """

    def __init__(
        self,
        info: ConnectionInfo,
        setup: Step | None = None,
        *,
        health_check_after: float = 10.0,
        max_pools: int | None = None,
    ) -> None:
        super().__init__(info, setup)
        self.health_check_after = health_check_after
        self.max_pools = max(1, max_pools if max_pools is not None else info.max_pools)
        self._slots = ShellSlots.for_connection(info)
        self._lock = threading.Lock()
        self._idle: list[_Lane] = []
        self._lanes: list[_Lane] = []
        # Pools are closed even when the transport is never closed: when it is garbage
        # collected, or at interpreter exit (the finalizer holds the lane list, not self).
        self._finalizer = weakref.finalize(self, _close_lanes, self._lanes, parallel=False)
        self._available = threading.Condition(self._lock)
        self._closed = False
        #: How many pools were opened; a new generation means a fresh runspace.
        self.generation = 0
        #: Pools exchange their session key during their bootstrap (`warm(secrets=True)`).
        self._keys_on_open = False
        #: The RSA key every pool's SecureString key exchange sends (session_keys.py).
        self._key_pair = KeyPair()
        #: Lanes `warm` has not finished (opened and bootstrapped) and not yet opened; the lock
        #: that opens them one at a time.
        self._warming = 0
        self._to_open = 0
        self._opening = threading.Lock()
        #: Bootstraps at a time (`warm(at_once=...)`).
        self._imports = ImportTurns()

    # -- lanes ------------------------------------------------------------------------------

    @property
    def pools(self) -> int:
        """Lanes currently held (open or being opened)."""
        with self._lock:
            return len(self._lanes)

    def lanes_ready(self) -> int | None:
        """Pools open and bootstrapped while others still warm (at least one: a step that
        finds none waits for the first); None when none is warming."""
        with self._lock:
            if not self._warming:
                return None
            return max(1, len(self._lanes) - self._warming)

    def _borrow(self) -> _Lane:
        with self._available:
            self._closed = False
            # Lanes being warmed will serve: wait for one rather than open yet another pool.
            while not self._idle and (len(self._lanes) >= self.max_pools or self._warming):
                self._available.wait()
            if self._idle:
                return self._idle.pop()
            lane = _Lane()
            self._lanes.append(lane)
            return lane

    def _give_back(self, lane: _Lane) -> bool:
        """Make the lane available again; False if the transport dropped it meanwhile."""
        with self._available:
            kept = lane in self._lanes
            if kept:
                self._idle.append(lane)
            self._available.notify()
        return kept

    # -- pool life cycle --------------------------------------------------------------------

    def _open_pool(
        self, lane: _Lane, one_at_a_time: bool = False, *, wait: bool = True
    ) -> RunspacePool:
        """Open (and bootstrap) the lane's pool. `one_at_a_time`: wait for the pools being
        opened before this one, so each starts its bootstrap as soon as it can. `wait`: when
        the account's shells are all taken (slots or the endpoint's quota), wait up to
        `info.quota_wait` for one; else raise QuotaExceededError at once."""
        self._discard_pool(lane)
        try:
            pool = (
                self._open_waiting(lane, one_at_a_time)
                if wait
                else self._open_once(lane, one_at_a_time)
            )
        finally:
            if one_at_a_time:  # one warming lane less to open (opened or failed)
                with self._available:
                    self._to_open -= 1
                    self._available.notify_all()
        lane.pool = pool
        lane.keys_exchanged = False
        lane.prelude = None
        with self._lock:
            self.generation += 1
            generation = self.generation
        log.debug("opened runspace pool #%d on %s", generation, self.info.endpoint)
        if self.setup is not None:
            with self._imports.turn(lambda: self._ask_cores(lane, pool)):
                self.last_setup = self._invoke(lane, pool, self.setup, keys=self._keys_on_open)
        return pool

    def _ask_cores(self, lane: _Lane, pool: RunspacePool) -> int | None:
        """The provider's logical processors, or None (logged) if it does not say."""
        try:
            cores = processor_count(self._invoke(lane, pool, PROCESSOR_COUNT))
        except CMProxyError as exc:
            log.info("asking %s its processor count failed: %s", self.info.endpoint, exc)
            return None
        log.debug("%s has %s logical processors", self.info.endpoint, cores)
        return cores

    @property
    def provider_cores(self) -> int | None:
        """The provider's logical processors, once a warm-up asked (None: not asked, or no
        answer)."""
        return self._imports.cores

    def _open_waiting(self, lane: _Lane, one_at_a_time: bool) -> RunspacePool:
        """`_open_once`, again while the quota is full, for up to `quota_wait` seconds."""
        return wait_for_quota(
            lambda: self._open_once(lane, one_at_a_time),
            deadline=self.info.quota_wait,
            what=f"a runspace pool on {self.info.endpoint}",
        )

    def _take_slot(self, lane: _Lane) -> None:
        if self._slots is not None and lane.slot is None:
            lane.slot = self._slots.take()

    def _open_once(self, lane: _Lane, one_at_a_time: bool) -> RunspacePool:
        """Take a slot and open a pool on the endpoint (one try)."""
        self._take_slot(lane)
        pool: RunspacePool | None = None
        try:
            with self._opening if one_at_a_time else contextlib.nullcontext():
                lane.info = self.info
                lane.wsman = WSMan(**self.info.to_pypsrp_kwargs())
                pool = KeySharingRunspacePool(
                    lane.wsman,
                    configuration_name=self.info.configuration_name,
                    min_runspaces=1,
                    max_runspaces=1,
                    key_pair=self._key_pair,
                )
                pool.open()
        except Exception as exc:
            lane.pool = pool  # a shell created before the failure is deleted, not leaked
            self._abandon_pool(lane)
            error = self._translate(exc, "opening the PowerShell runspace")
            if isinstance(error, QuotaExceededError):
                lane.release_slot()  # the endpoint has no shell for it: the slot is free
            raise error from None
        return pool

    @staticmethod
    def _discard_pool(lane: _Lane) -> None:
        """Close the lane's pool (its shell on the server); keeps the lane's slot."""
        pool, lane.pool = lane.pool, None
        if pool is not None and pool.state == RunspacePoolState.OPENED:
            try:
                pool.close()
            except Exception:  # closing a broken pool must not mask anything
                log.debug("closing a runspace pool failed", exc_info=True)
                _delete_shell(lane.info, pool)
        wsman, lane.wsman = lane.wsman, None
        if wsman is not None:
            try:
                wsman.close()
            except Exception:
                log.debug("closing the WSMan connection failed", exc_info=True)

    @staticmethod
    def _abandon_pool(lane: _Lane) -> None:
        """Forget a pool whose connection broke: its state and encryption context are unknown,
        so it is never used again. Its shell is deleted over a fresh connection (best effort):
        left on the server it would hold one of the account's shells until the endpoint's
        idle timeout (two hours by default)."""
        pool, lane.pool = lane.pool, None
        wsman, lane.wsman = lane.wsman, None
        if wsman is not None:
            try:
                wsman.close()
            except Exception:
                log.debug("closing a broken WSMan connection failed", exc_info=True)
        if pool is not None:
            _delete_shell(lane.info, pool)

    def _healthy_pool(self, lane: _Lane) -> RunspacePool:
        pool = lane.pool
        if pool is None or pool.state != RunspacePoolState.OPENED:
            return self._open_more(lane)
        if time.monotonic() - lane.last_used >= self.health_check_after:
            try:
                alive = pool.is_alive(timeout=int(self.info.connection_timeout))
            except Exception:  # any failure to probe means "not usable"
                alive = False
            if not alive:
                log.info("the runspace pool on %s died; opening a new one", self.info.endpoint)
                return self._open_more(lane)
        return pool

    def _open_more(self, lane: _Lane) -> RunspacePool:
        """Open the lane's pool. The first pool waits for a shell when the quota is full; one
        more beside pools already open does not: `_Fewer`, the step runs on those."""
        with self._lock:
            others = any(other is not lane and other.pool is not None for other in self._lanes)
        try:
            return self._open_pool(lane, wait=not others)
        except QuotaExceededError as exc:
            if not others:
                raise
            self._fewer(lane, exc)
            raise _Fewer from None

    def _fewer(self, lane: _Lane, exc: QuotaExceededError) -> None:
        """No shell for this lane: hold no more pools than are open now (steps wait for them)."""
        with self._available:
            open_now = sum(1 for other in self._lanes if other is not lane and other.pool)
            if open_now and open_now < self.max_pools:
                self.max_pools = open_now
                log.info(
                    "WinRM shell quota on %s: continuing with %d runspace pools (%s)",
                    self.info.endpoint,
                    open_now,
                    exc,
                )

    def _translate(self, exc: BaseException, stage: str) -> CMProxyError:
        return translate_exception(
            exc, self.info, auth_errors=(PypsrpAuthenticationError,), stage=stage
        )

    # -- running ----------------------------------------------------------------------------

    def connect(self) -> Result | None:
        while True:
            lane = self._borrow()
            try:
                self._healthy_pool(lane)
            except _Fewer:
                self._drop_lane(lane)  # no shell for it: wait for a lane already open
                continue
            except BaseException:
                self._drop_lane(lane)
                raise
            self._give_back(lane)
            return self.last_setup

    def warm(
        self,
        concurrency: int,
        *,
        secrets: bool = False,
        wait: bool = True,
        at_once: int | None = None,
    ) -> None:
        """Open pools for `concurrency` concurrent steps now (up to max_pools).

        Each new pool bootstraps (imports the module) in parallel with the others, instead of
        one by one on the critical path when concurrent steps first need them. Their
        connections and runspace pools are opened one after the other (each costs CPU on both
        ends; opened all at once, none is ready before the last), each starting its bootstrap
        as soon as it is open and has its turn. A pool that fails to open is dropped; the step
        that needs a lane later opens one and reports. Returns when no lane is warming any
        more, or at once with `wait=False`: steps meanwhile wait for a warming lane rather than
        open another pool. `secrets`: SecureStrings will be sent, so every pool opened from now
        on exchanges its session key while its bootstrap imports the module (the RSA work
        hides in the import instead of delaying the first step that carries a secret).
        `at_once`: at most that many pools bootstrap at a time; None: as many as the
        provider has logical processors, asked by the first pool before it imports
        (`import_turns`; `Tuning.imports_at_once`).
        """
        self._keys_on_open = self._keys_on_open or secrets
        with self._available:
            self._closed = False
            wanted = min(self.max_pools, max(1, concurrency)) - len(self._lanes)
            lanes = [_Lane() for _ in range(max(0, wanted))]
            self._lanes.extend(lanes)
            self._warming += len(lanes)
            self._to_open += len(lanes)
        if len(lanes) > 1 or at_once is not None:
            self._imports.limit_to(at_once)

        def open_one(lane: _Lane) -> None:
            try:
                # Never waits for a shell: a pool the quota refuses is one pool less.
                self._open_pool(lane, one_at_a_time=True, wait=False)
            except Exception as exc:  # the lane is dropped; a later step reports
                log.info("warming a runspace pool on %s failed: %s", self.info.endpoint, exc)
                if isinstance(exc, QuotaExceededError):
                    self._fewer(lane, exc)
                self._drop_lane(lane)
            else:
                if not self._give_back(lane):  # closed while it opened: not to be leaked
                    self._discard_pool(lane)
            finally:
                with self._available:
                    self._warming -= 1
                    self._available.notify_all()

        for lane in lanes:
            threading.Thread(target=open_one, args=(lane,), daemon=True).start()
        if wait:  # for these lanes and any still warming from an earlier call
            with self._available:
                self._available.wait_for(lambda: not self._warming)

    def _drop_lane(self, lane: _Lane) -> None:
        """A lane that failed to open is not kept (the next borrower opens a fresh one)."""
        self._discard_pool(lane)
        lane.release_slot()
        with self._available:
            if lane in self._lanes:
                self._lanes.remove(lane)
            self._available.notify()

    def run(self, step: Step) -> Result:
        while True:
            lane = self._borrow()
            try:
                return self._run_on(lane, step)
            except _Fewer:
                continue  # no shell for another pool: wait for one of those open
            finally:
                if lane.pool is None:
                    self._drop_lane(lane)
                elif not self._give_back(lane):  # closed meanwhile: not to be leaked
                    self._discard_pool(lane)
                    lane.release_slot()

    def _run_on(self, lane: _Lane, step: Step) -> Result:
        pool = self._healthy_pool(lane)
        try:
            return self._invoke(lane, pool, step)
        except _PoolGone:
            # The command never started (the server did not know the pool): safe to retry once
            # on a new pool, which also re-runs the bootstrap.
            log.info("runspace pool vanished on %s; retrying on a new pool", self.info.endpoint)
            return self._invoke(lane, self._open_more(lane), step)
        except PowerShellError:
            raise  # a remote error record: the pool itself is fine
        except CMProxyError:
            # The exchange broke (connection dropped, HTTP error, fault): the pool's state and
            # the message-encryption context are unknown. Never reuse them; the next step opens
            # a fresh connection and pool (and re-runs the bootstrap). Not retried here: the
            # caller decides, because a write may have happened.
            self._abandon_pool(lane)
            raise

    def _exchange_keys(self, lane: _Lane, pool: RunspacePool) -> None:
        if lane.keys_exchanged:
            return
        try:
            pool.exchange_keys()
        except Exception as exc:
            raise self._translate(exc, "exchanging the SecureString session key") from None
        lane.keys_exchanged = True

    def _invoke(self, lane: _Lane, pool: RunspacePool, step: Step, *, keys: bool = False) -> Result:
        """Run `step`; `keys`: exchange the session key while it runs (a pool-level message
        pair, answered by the server while the pipeline works)."""
        log.debug("PSRP run %s", step.describe())
        if step.has_secret:
            self._exchange_keys(lane, pool)
        ps = PowerShell(pool)
        # UseLocalScope: without it PowerShell dot-sources the script into the runspace's global
        # scope (Command.UseLocalScope => _useLocalScope ?? false), where its variables, typed
        # parameters included, would outlive it as type-constrained variables and break the
        # next template on this (reused) pool that assigns to the same name. The setup step's
        # effects survive: its module is imported -Global, its drive made -Scope Global, and
        # the location belongs to the runspace.
        # First the prelude (the functions templates share), dot-sourced: its functions are
        # defined before the template's body runs (it is the first command of the pipeline,
        # and it only defines functions, so it writes nothing into the template). Dot-sourced
        # means into the runspace's global scope, which the pool keeps: only a pool's first
        # pipeline carries it (the bootstrap, normally), or the next one after the prelude
        # changed (a role setting registered since: its projection is part of the text).
        prelude = load_prelude()
        if lane.prelude != prelude:
            ps.add_script(prelude, use_local_scope=False)
        ps.add_script(step.script.text, use_local_scope=True)
        for name, value in step.parameters:
            ps.add_parameter(name, _to_wire(value))
        # Piped: the template's output, packed (see PACK_OUTPUT); local scope too.
        ps.add_script(PACK_OUTPUT, use_local_scope=True)
        # Before it is sent: which pool and command will carry it (a watcher may refuse).
        self.announce(
            PipelineRef(pool.shell.resource_uri, str(pool.shell.id).upper(), str(ps.id).upper())
        )
        started = False
        try:
            ps.begin_invoke()
            started = True
            if keys:
                # After the pools still to open (their set-up is on the critical path, the
                # RSA work is not); never more than a few seconds, whatever happens to them.
                with self._available:
                    self._available.wait_for(lambda: self._to_open <= 0, timeout=10)
                self._exchange_keys(lane, pool)
            output = ps.end_invoke()
            if ps.state == PSInvocationState.COMPLETED:
                lane.prelude = prelude  # it ran: the runspace has its functions
        except WSManFaultError as exc:
            if not started and exc.code in _POOL_GONE:
                raise _PoolGone from None
            raise self._translate(exc, f"running {step.script.name}") from None
        except Exception as exc:
            raise self._translate(exc, f"running {step.script.name}") from None
        finally:
            lane.last_used = time.monotonic()
        try:
            ps.close()
        except Exception:  # the result is in; a failed close is not the user's
            log.debug("closing a pipeline failed", exc_info=True)
        result = Result(
            output=_unpack(output),
            errors=tuple(_error_info(e, step) for e in ps.streams.error),
            warnings=tuple(str(w) for w in ps.streams.warning),
            verbose=tuple(str(v) for v in ps.streams.verbose),
            information=tuple(str(i) for i in ps.streams.information),
        )
        if ps.state == PSInvocationState.FAILED or ps.had_errors:
            raise error_from_info(
                result.errors[-1]
                if result.errors
                else ErrorInfo(f"{step.script.name} failed without an error record")
            )
        if ps.state == PSInvocationState.STOPPED:
            raise TransportError(f"{step.script.name} was stopped on the server")
        return result

    def list_shells(self) -> list[RemoteShell] | None:
        from cmproxy.transports import shells  # noqa: PLC0415 - only recovery lists shells

        return shells.list_shells(self.info)

    def delete_shell(self, resource_uri: str, shell_id: str) -> bool:
        from cmproxy.transports import shells  # noqa: PLC0415 - only recovery deletes shells

        return shells.delete_shell(self.info, resource_uri, shell_id)

    def own_shells(self) -> frozenset[str]:
        with self._available:
            return frozenset(
                str(lane.pool.shell.id).upper()
                for lane in self._lanes
                if lane.pool is not None and lane.pool.shell.id
            )

    def close(self) -> None:
        """Close every pool, side by side (each close is a round trip to the server)."""
        with self._available:
            lanes = list(self._lanes)
            self._lanes.clear()  # in place: the finalizer holds this list
            self._idle.clear()
            self._available.notify_all()
        _close_lanes(lanes)


def _close_lanes(lanes: list[_Lane], *, parallel: bool = True) -> None:
    """Close the lanes' pools, side by side or (the finalizer: at interpreter exit no new
    thread may start) one by one, and free their slots."""
    lanes = list(lanes)
    if not lanes:
        return

    def close_one(lane: _Lane) -> None:
        try:
            PSRPTransport._discard_pool(lane)
        finally:
            lane.release_slot()

    if not parallel:
        for lane in lanes:
            close_one(lane)
        return
    with ThreadPoolExecutor(len(lanes), thread_name_prefix="cmproxy-close") as pool:
        list(pool.map(close_one, lanes))


def _delete_shell(info: ConnectionInfo | None, pool: RunspacePool) -> None:
    """Delete the pool's shell over a fresh connection, best effort, with short timeouts."""
    shell = getattr(pool, "shell", None)
    shell_id = getattr(shell, "id", None)
    if info is None or shell is None or not shell_id or not getattr(shell, "opened", False):
        return  # no shell was created (pypsrp marks it opened once Create succeeded)
    kwargs = info.to_pypsrp_kwargs()
    kwargs.update(
        connection_timeout=min(info.connection_timeout, 5.0),
        read_timeout=min(info.read_timeout, 10.0),
        operation_timeout=min(int(info.operation_timeout), 5),
    )
    selectors = SelectorSet()
    selectors.add_option("ShellId", shell_id)
    try:
        with WSMan(**kwargs) as wsman:
            wsman.delete(shell.resource_uri, selector_set=selectors)
        log.debug("deleted the shell %s of a broken runspace pool", shell_id)
    except Exception:  # gone already, or the endpoint is unreachable: the idle timeout will
        log.debug("could not delete the shell %s", shell_id, exc_info=True)


class _PoolGone(Exception):  # noqa: N818 - internal signal
    """The server no longer knows our runspace pool; the command was not started."""


def _to_wire(value: Any) -> Any:
    if isinstance(value, Secret):
        return TaggedValue("SS", value.reveal())
    if isinstance(value, tuple):
        return list(value)
    return value


def _unpack(output: list[Any]) -> tuple[Any, ...]:
    """The rows of a packed output (JSON arrays, see PACK_OUTPUT), in order."""
    rows: list[Any] = []
    for text in output:
        try:
            packed = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            packed = None
        if packed is None:
            raise TransportError("the server sent output that is not packed JSON")
        rows.extend(packed if isinstance(packed, list) else [packed])
    return tuple(rows)


def _error_info(record: Any, step: Step) -> ErrorInfo:
    exception = getattr(record, "exception", None)
    message = ""
    exception_type = ""
    if isinstance(exception, GenericComplexObject):
        message = str(
            exception.adapted_properties.get("Message")
            or exception.extended_properties.get("Message")
            or ""
        )
        exception_type = exception.types[0] if exception.types else ""
    message = message or str(getattr(record, "details_message", None) or "") or str(record)
    category = getattr(record, "category", None)
    return ErrorInfo(
        message=message,
        fully_qualified_error_id=str(getattr(record, "fq_error", None) or ""),
        category=category_name(category),
        target=str(getattr(record, "target_name", None) or ""),
        command=str(
            getattr(record, "command_name", None)
            or getattr(record, "activity", None)
            or step.script.name
        ),
        exception_type=exception_type.removeprefix("Deserialized."),
    )
