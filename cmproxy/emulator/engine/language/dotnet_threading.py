"""System.Threading.Mutex for the emulator's interpreter: a named system mutex shared by every
runspace, shell and user of one emulated host, and the access-control types a script builds a
`MutexSecurity` from.

What is emulated, and where it is stated (learn.microsoft.com unless said):
- `Mutex(Boolean, String, out Boolean, MutexSecurity)` and its shorter overloads
  (system.threading.mutex.-ctor, .NET Framework 4.x): a name longer than 260 characters is an
  ArgumentException; an existing name opens that mutex (createdNew false, initiallyOwned
  ignored: CreateMutexW); an existing mutex whose security does not grant the caller is an
  UnauthorizedAccessException. The .NET Framework opens an existing mutex with
  MUTEX_MODIFY_STATE | SYNCHRONIZE when full access is refused (referencesource mutex.cs,
  CreateMutexHandle), so `Synchronize, Modify` suffices. Names compare case-sensitively
  (CreateMutexW; "Object Names").
- `WaitOne(Int32)` (system.threading.waithandle.waitone): true once owned, false after the
  timeout; -1 waits forever; below -1 is an ArgumentOutOfRangeException. The owner may wait
  again without blocking and must call `ReleaseMutex` once per acquisition (Mutex.ReleaseMutex
  remarks; ReleaseMutex function, synchapi.h).
- A thread that ends owning a mutex abandons it: the next thread to acquire it gets an
  AbandonedMutexException and owns it (system.threading.abandonedmutexexception; Mutex class
  remarks).
- `ReleaseMutex()` by a thread that does not own it: ApplicationException "Object
  synchronization method was called from an unsynchronized block of code." (Mutex.ReleaseMutex
  exceptions; referencesource mutex.cs: Arg_SynchronizationLockException).
- A method's .NET exception reaches the script as a MethodInvocationException whose error id
  is the inner exception's type name (PowerShell's ExceptionHandlingOps /
  MethodInvocationException); a constructor's, through New-Object, as the terminating
  `ConstructorInvokedThrowException` (PowerShell's NewObjectCommand.CallConstructor).

The emulator's thread and process: one PSRP pipeline or one powershell.exe run
(`Session.current`) runs its script on one thread, which ends with it (`thread_ended`):
what it still owns is abandoned. Handles belong to the process (the runspace): they close on
Dispose or when it ends (`process_ended`: the powershell.exe of a WinRS command exits, a PSRP
runspace pool closes). Whether a PSRP runspace pool reuses one thread for its next pipeline is
not modelled (a template releases what it takes in a `finally`, so only a killed process
leaves a mutex owned). A named object lives while a handle to it is open or a thread owns it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.errors import NotSupportedByEmulator, PSError, record
from cmproxy.emulator.engine.language.values import PSObj

if TYPE_CHECKING:
    from cmproxy.emulator.engine.language.session import Session

__all__ = [
    "VOID",
    "NamedObjects",
    "NetObject",
    "Reference",
    "construct",
    "constructs",
]

#: MutexRights (System.Security.AccessControl.MutexRights).
MUTEX_RIGHTS = {
    "modify": 0x1,
    "delete": 0x10000,
    "readpermissions": 0x20000,
    "changepermissions": 0x40000,
    "takeownership": 0x80000,
    "synchronize": 0x100000,
    "fullcontrol": 0x1F0001,
}
_SYNC_MODIFY = MUTEX_RIGHTS["synchronize"] | MUTEX_RIGHTS["modify"]
#: Well-known SIDs every authenticated caller holds: Everyone, Authenticated Users.
_EVERYONE_SIDS = {"s-1-1-0", "s-1-5-11"}
#: Kernel object names are limited to MAX_PATH characters (CreateMutexW).
MAX_NAME = 260

_MUTEX = "system.threading.mutex"
_SECURITY = "system.security.accesscontrol.mutexsecurity"
_RULE = "system.security.accesscontrol.mutexaccessrule"
_SID = "system.security.principal.securityidentifier"


class _Void:
    def __repr__(self) -> str:
        return "VOID"


#: What a void method returns: it writes nothing to the pipeline (not even $null).
VOID: Any = _Void()


@attrs.define(eq=False)
class Reference:
    """`[ref]$variable` (System.Management.Automation.PSReference): a method's out parameter
    writes the variable through it."""

    get: Callable[[], Any]
    set: Callable[[Any], None]

    def __str__(self) -> str:
        # Windows PowerShell 5.1's PSReference is not generic and does not override
        # ToString (System.Management.Automation.dll, class PSReference): Object.ToString(),
        # its type's full name. (The call log shows it so, not a Python address.)
        return "System.Management.Automation.PSReference"


@attrs.define(eq=False)
class NetObject(PSObj):
    """A .NET object a script created with New-Object; its methods are emulated here."""

    def call(self, rs: Session, name: str, args: list[Any]) -> Any:
        raise NotSupportedByEmulator(f"The method {self.type_names[0]}.{name}()")


@attrs.define(eq=False)
class _Ace:
    """One access rule: who (a SID or an account name, lower case), which rights, allow?"""

    who: str
    rights: int
    allow: bool


@attrs.define(eq=False)
class _Mutant:
    """The kernel object behind a named mutex."""

    name: str
    creator: str
    #: None: the default security descriptor (from the creator's token).
    dacl: list[_Ace] | None
    owner: object | None = None
    count: int = 0
    abandoned: bool = False
    handles: int = 0
    waiters: int = 0


class NamedObjects:
    """One emulated host's named-object namespace, shared by all its runspaces and users."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._by_name: dict[str, _Mutant] = {}
        self._owned: dict[int, list[_Mutant]] = {}
        self._handles: dict[int, list[_MutexObject]] = {}

    def open(
        self,
        rs: Session,
        name: str,
        initially_owned: bool,
        dacl: list[_Ace] | None,
        argc: int,
    ) -> tuple[_MutexObject, bool]:
        """CreateMutex: the existing mutex of that name (if the caller may open it) or a new
        one. Returns the handle and whether it was created."""
        thread = rs.current
        with self._cond:
            mutant = self._by_name.get(name)
            created = mutant is None
            if mutant is None:
                mutant = self._by_name[name] = _Mutant(name, rs.user, dacl)
                if initially_owned:
                    self._take(mutant, thread)
            elif not _may_open(mutant, rs):
                raise _method_error(
                    ".ctor",
                    argc,
                    f"Access to the path '{name}' is denied.",
                    "UnauthorizedAccessException",
                    ctor=True,
                )
            mutant.handles += 1
            handle = _MutexObject(["System.Threading.Mutex", "System.Object"], space=self)
            handle.mutant = mutant
            self._handles.setdefault(id(rs), []).append(handle)
            return handle, created

    def _take(self, mutant: _Mutant, thread: object) -> None:
        mutant.owner = thread
        mutant.count = 1
        self._owned.setdefault(id(thread), []).append(mutant)

    def wait(self, mutant: _Mutant, thread: object, timeout_ms: int) -> bool:
        """WaitOne: owned (True) or timed out (False); raises `_Abandoned` when it became the
        owner of an abandoned mutex."""
        deadline = None if timeout_ms == -1 else time.monotonic() + timeout_ms / 1000.0
        with self._cond:
            while mutant.owner is not None and mutant.owner is not thread:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                mutant.waiters += 1
                try:
                    self._cond.wait(left)
                finally:
                    mutant.waiters -= 1
            if mutant.owner is thread:
                mutant.count += 1
                return True
            self._take(mutant, thread)
            if mutant.abandoned:
                mutant.abandoned = False
                raise _method_error(
                    "WaitOne",
                    1,
                    "The wait completed due to an abandoned mutex.",
                    "AbandonedMutexException",
                )
            return True

    def release(self, mutant: _Mutant, thread: object) -> None:
        with self._cond:
            if mutant.owner is not thread:
                raise _method_error(
                    "ReleaseMutex",
                    0,
                    "Object synchronization method was called from an unsynchronized block of "
                    "code.",
                    "ApplicationException",
                )
            mutant.count -= 1
            if mutant.count == 0:
                mutant.owner = None
                self._owned[id(thread)].remove(mutant)
                self._drop_if_unused(mutant)
                self._cond.notify_all()

    def close(self, handle: _MutexObject, process: object) -> None:
        """Dispose: the handle closes (ownership stays with the thread: ReleaseMutex ends it)."""
        with self._cond:
            mine = self._handles.get(id(process), [])
            if handle in mine:
                mine.remove(handle)
            self._close(handle)

    def _close(self, handle: _MutexObject) -> None:
        mutant = handle.mutant
        if handle.closed or mutant is None:
            return
        handle.closed = True
        mutant.handles -= 1
        self._drop_if_unused(mutant)

    def _drop_if_unused(self, mutant: _Mutant) -> None:
        """The object goes when its last handle is closed and no thread owns it."""
        if (
            mutant.handles <= 0
            and mutant.owner is None
            and self._by_name.get(mutant.name) is mutant
        ):
            del self._by_name[mutant.name]

    def thread_ended(self, thread: object) -> None:
        """The thread ended: what it still owns is abandoned (the next owner is told)."""
        with self._cond:
            for mutant in self._owned.pop(id(thread), []):
                if mutant.owner is thread:
                    mutant.owner = None
                    mutant.count = 0
                    mutant.abandoned = True
                    self._drop_if_unused(mutant)
            self._cond.notify_all()

    def process_ended(self, process: object) -> None:
        """The process (runspace) ended: its handles close."""
        with self._cond:
            for handle in self._handles.pop(id(process), []):
                self._close(handle)

    def waiting(self, name: str) -> int:
        """How many threads wait for the mutex `name` now (for tests to order threads)."""
        with self._cond:
            mutant = self._by_name.get(name)
            return mutant.waiters if mutant is not None else 0

    def exists(self, name: str) -> bool:
        with self._cond:
            return name in self._by_name


def _may_open(mutant: _Mutant, rs: Session) -> bool:
    """May `rs`'s user open the existing mutex (full access, or Synchronize + Modify)?"""
    user = rs.user.lower()
    if mutant.dacl is None:
        return user == mutant.creator.lower() or rs.engine.settings.host.mutex_default_dacl_shared
    granted = 0
    for ace in mutant.dacl:
        if ace.who in _EVERYONE_SIDS or ace.who == user:
            granted |= ace.rights
    return granted & _SYNC_MODIFY == _SYNC_MODIFY


@attrs.define(eq=False)
class _MutexObject(NetObject):
    space: NamedObjects | None = None
    mutant: _Mutant | None = None
    closed: bool = False

    def call(self, rs: Session, name: str, args: list[Any]) -> Any:
        low = name.lower()
        assert self.space is not None
        assert self.mutant is not None
        if low in ("dispose", "close") and not args:
            self.space.close(self, rs)
            return VOID
        if self.closed:
            raise NotSupportedByEmulator(f"Mutex.{name}() after Dispose()")
        if low == "waitone" and len(args) <= 1:
            timeout = -1 if not args else conv.to_int(args[0])
            if timeout < -1:
                raise _method_error(
                    "WaitOne",
                    1,
                    "Number must be either non-negative and less than or equal to "
                    "Int32.MaxValue or -1.\r\nParameter name: millisecondsTimeout",
                    "ArgumentOutOfRangeException",
                )
            return self.space.wait(self.mutant, rs.current, timeout)
        if low == "releasemutex" and not args:
            self.space.release(self.mutant, rs.current)
            return VOID
        return super().call(rs, name, args)


@attrs.define(eq=False)
class _Security(NetObject):
    rules: list[_Ace] = attrs.field(factory=list)

    def call(self, rs: Session, name: str, args: list[Any]) -> Any:
        if name.lower() == "addaccessrule" and len(args) == 1 and isinstance(args[0], _Rule):
            self.rules.append(args[0].ace)
            return VOID
        return super().call(rs, name, args)


@attrs.define(eq=False)
class _Rule(NetObject):
    ace: _Ace = attrs.field(factory=lambda: _Ace("", 0, True))


def _method_error(
    method: str, count: int, message: str, exception: str, *, ctor: bool = False
) -> PSError:
    """A .NET exception as PowerShell reports it: from a method, a MethodInvocationException
    whose error id is the exception's type name; from New-Object's constructor call, the
    terminating ConstructorInvokedThrowException."""
    text = f'Exception calling "{method}" with "{count}" argument(s): "{message}"'
    if ctor:
        return PSError(
            record(
                text,
                "ConstructorInvokedThrowException",
                "Microsoft.PowerShell.Commands.NewObjectCommand",
                category="InvalidOperation",
                exception="System.Management.Automation.MethodInvocationException",
                command="New-Object",
            )
        )
    return PSError(
        record(
            text,
            exception,
            category="NotSpecified",
            exception="System.Management.Automation.MethodInvocationException",
        )
    )


def _rights(value: Any) -> int:
    """MutexRights from a number or its names ('Synchronize, Modify'), as PowerShell converts
    a string to a flags enum."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    total = 0
    for part in conv.to_str(value).split(","):
        bit = MUTEX_RIGHTS.get(part.strip().lower())
        if bit is None:
            raise NotSupportedByEmulator(f"MutexRights '{part.strip()}'")
        total |= bit
    return total


def _identity(value: Any) -> str:
    if isinstance(value, NetObject) and value.type_names[0].lower() == _SID:
        return conv.to_str(value.properties["Value"]).lower()
    if isinstance(value, str):
        return value.lower()
    raise NotSupportedByEmulator(f"A MutexAccessRule identity of type {conv.type_name(value)}")


def constructs(type_name: str) -> bool:
    """Does `construct` know the type (New-Object's -TypeName, `System.` optional)?"""
    low = type_name.lower()
    low = low if low.startswith("system.") else "system." + low
    return low in (_MUTEX, _SECURITY, _RULE, _SID)


def construct(rs: Session, type_name: str, args: Sequence[Any]) -> NetObject:
    """New-Object `type_name` with `args` (-ArgumentList)."""
    low = type_name.lower()
    low = low if low.startswith("system.") else "system." + low
    if low == _SID and len(args) == 1 and isinstance(args[0], str):
        sid = args[0]
        return NetObject(
            ["System.Security.Principal.SecurityIdentifier", "System.Object"],
            {"Value": sid},
            string=sid,
        )
    if low == _SECURITY and not args:
        return _Security(["System.Security.AccessControl.MutexSecurity", "System.Object"])
    if low == _RULE and len(args) == 3:
        kind = conv.to_str(args[2]).strip().lower()
        if kind not in ("allow", "0"):
            raise NotSupportedByEmulator(f"A MutexAccessRule of type {args[2]}")
        rule = _Rule(["System.Security.AccessControl.MutexAccessRule", "System.Object"])
        rule.ace = _Ace(_identity(args[0]), _rights(args[1]), True)
        return rule
    if low == _MUTEX and 2 <= len(args) <= 4:
        return _new_mutex(rs, args)
    raise NotSupportedByEmulator(f"New-Object {type_name} with {len(args)} argument(s)")


def _new_mutex(rs: Session, args: Sequence[Any]) -> NetObject:
    owned = conv.truthy(args[0])
    name = args[1]
    if not isinstance(name, str) or not name:
        raise NotSupportedByEmulator("An unnamed Mutex")
    if len(name) > MAX_NAME:
        # The message text of Argument_WaitHandleNameTooLong is not pinned here.
        raise _method_error(
            ".ctor",
            len(args),
            f"The name can be no more than {MAX_NAME} characters in length.",
            "ArgumentException",
            ctor=True,
        )
    rest = name.split("\\", 1)[1] if name.lower().startswith(("global\\", "local\\")) else name
    if "\\" in rest:
        raise NotSupportedByEmulator("A mutex name with a backslash after its Global\\ prefix")
    created_ref = args[2] if len(args) >= 3 else None
    if created_ref is not None and not isinstance(created_ref, Reference):
        raise NotSupportedByEmulator("Mutex(..., createdNew) without [ref]")
    security = args[3] if len(args) == 4 else None
    if security is not None and not isinstance(security, _Security):
        raise NotSupportedByEmulator(f"A MutexSecurity of type {conv.type_name(security)}")
    dacl = list(security.rules) if security is not None else None
    handle, created = rs.engine.named_objects.open(rs, name, owned, dacl, len(args))
    if created_ref is not None:
        created_ref.set(created)
    return handle
