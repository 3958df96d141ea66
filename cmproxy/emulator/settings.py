"""Emulator settings: unconfirmed product behaviour, costs and faults.

Shared by the protocol layer (HTTP/WSMan/shells) and the engine (cmdlets). Every behaviour the
reference marks [UNCONFIRMED] is a field here, never a guess baked into a cmdlet. The object is
mutable on purpose: tests change faults between calls on a running emulator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import attrs


@attrs.define
class ProductBehaviour:
    """Choices where the ConfigMgr reference is [UNCONFIRMED] (configmgr-cmdlets.md §3.5, §9)."""

    #: `Set-CMSiteSystemServer -EnableProxy $false` also clears ProxyName/Port/UserName.
    disable_clears_proxy_fields: bool = False
    #: A Set that enables the proxy without -ProxyServerPort resets the port to 80.
    enable_without_port_resets_to_80: bool = True
    #: A Set that enables the proxy without -ProxyAccessAccount resets to the System account.
    enable_without_account_resets_to_system: bool = True
    #: `Set-CMSoftwareUpdatePoint -UseProxy $true` on a server without a proxy is accepted (the
    #: cmdlet does not check; WSUS fails later, reference §7 issue #33) and a WCM error is logged.
    sup_flags_without_server_proxy_accepted: bool = True
    #: `Set-CMSiteSystemServer -ProxyAccessAccount $null` clears the account (back to the System
    #: account) instead of being ignored (reference §9).
    null_proxy_account_clears: bool = True


#: Write-lock scopes (`Costs.write_lock`): one lock per site, or one for the whole provider.
WRITE_LOCK_SCOPES = ("site", "provider")
#: Slice of a contended import's sleep (`EmulatorSettings.charge_import`): its share of the
#: provider's cores is re-read this often.
IMPORT_SLICE = 0.01


@attrs.define
class Costs:
    """Simulated time, in seconds (0 = instant). Applied with the emulator's injectable sleep.

    Every figure is a modelling choice, not a measurement of a real SMS Provider; the ones
    below marked [UNCONFIRMED] are shapes no source describes (docs/performance.md).
    """

    http_exchange: float = 0.0
    module_import: float = 0.0
    #: Charged once per ConfigMgr Get call, before it runs.
    get_cmdlet: float = 0.0
    set_cmdlet: float = 0.0
    #: A real site serialises writes to its site control data; on by default.
    serialise_site_writes: bool = True
    #: [UNCONFIRMED] Charged per object a ConfigMgr Get returns, after it ran (a WMI query's
    #: instances are built and sent one by one): a Get of a whole site then costs more than a
    #: Get of one server. 0 = the per-call charge only.
    get_per_row: float = 0.0
    #: [UNCONFIRMED] Cores of the SMS Provider machine that concurrent module imports share
    #: (the import loads and JITs the AdminUI assemblies, taken as CPU-bound): with k imports
    #: running and k > cores, each progresses at cores / k. 0 = imports never contend. When
    #: set, it is also the machine's logical processors (`EmulatorSettings.logical_processors`):
    #: the cores the imports share are the machine's.
    provider_cores: int = 0
    #: [UNCONFIRMED] What one write lock covers when writes are serialised: "site" (each site's
    #: site control data) or "provider" (one SMS Provider applies one write at a time).
    write_lock: str = attrs.field(default="site", validator=attrs.validators.in_(WRITE_LOCK_SCOPES))

    def write_lock_key(self, site: str) -> str:
        """The name of the lock a write at `site` takes (its site, or the one provider's)."""
        return site.upper() if self.write_lock == "site" else "*provider*"

    def get_rows_seconds(self, rows: int) -> float:
        """The per-row part of a Get that returned `rows` objects."""
        return self.get_per_row * rows


@attrs.define
class Replication:
    """[UNCONFIRMED] Read-after-write lag of a child site's site control data (off by default).

    Why it may exist: a site's settings are its site control data, changed through "delta
    site control file" requests that SMS Site Control Manager processes (sitectrl.log); a
    change requested at another site for a child site is turned into such a request by SMS
    Hierarchy Manager (hman.log) and delivered to the child's Site Control Manager by
    replication, each request with a serial number so they are processed in order, and each
    child passes its processed site control data back up (ConfigMgr SDK, "About the
    Configuration Manager Site Control File"; status messages SMS_HIERARCHY_MANAGER 3307 and
    SMS_SITE_CONTROL_MANAGER 2807). So a provider may accept a write to a child site's server
    and keep showing the old value until the change has made that round trip. Whether current
    branch (site control data in the database, SQL replication) still shows this lag to the
    provider's reads, and for how long, is not confirmed: hence a setting.

    Model (what the engine does with it): a Set-CMSiteSystemServer / Set-CMSoftwareUpdatePoint
    write to a role of a lagging site is accepted and committed at once (the provider's own
    copy: a later Set builds on it, and -PassThru returns the object as written), but reading
    cmdlets (Get-CMSiteSystemServer, Get-CMSiteRole, Get-CMSoftwareUpdatePoint) keep returning
    the role as it was until `lag` seconds have passed. Writes become visible in the order
    they were made, each after its own lag (serial numbers): a second write during the lag
    is visible no earlier than the first. New-/Add- writes, components and accounts are not
    lagged. The pending changes live in memory: an emulator restart shows them all.
    """

    #: Site code (any case) → seconds a write to that site's roles stays invisible to reads.
    lag: dict[str, float] = attrs.field(factory=dict)

    def lag_for(self, site: str) -> float:
        return max(0.0, self.lag.get(site.upper(), self.lag.get(site, 0.0)))


@attrs.define
class Faults:
    """Faults to inject. Counters are 1-based and count since the fault was set."""

    #: Drop the TCP connection instead of answering the Nth WSMan request (0 = never).
    drop_connection_on_request: int = 0
    #: Answer the Nth WSMan request with this HTTP status (500 or 503) instead (0 = never).
    http_error_on_request: int = 0
    http_error_status: int = 503
    #: Answer the Nth WSMan request with a WSMan fault (code below) instead (0 = never).
    wsman_fault_on_request: int = 0
    wsman_fault_code: int = 2150858843
    #: Make the Nth call of this cmdlet fail with a terminating error ("" = none).
    fail_cmdlet: str = ""
    fail_cmdlet_on_call: int = 0
    fail_cmdlet_error_id: str = "ProviderBusy"
    #: Make every call of a cmdlet on a server fail (server name, lower case → cmdlet name),
    #: with `fail_cmdlet_error_id`: a fault that follows the server, however calls are batched.
    fail_servers: dict[str, str] = attrs.field(factory=dict)
    #: The ambiguous case: apply the Nth call of this cmdlet, then lose the answer (drop the
    #: connection) ("" = none).
    lose_answer_cmdlet: str = ""
    lose_answer_on_call: int = 0
    #: Refuse every Delete of a shell with an internal-error fault: a shell (and what runs in
    #: it) that cannot be stopped, as when the WinRM plug-in host hangs.
    refuse_shell_delete: bool = False


@attrs.define
class HostFacts:
    """The emulated SMS Provider machine and the session's logon: what makes the bootstrap or a
    log read fail on a real site (docs/emulator.md, "Host facts").

    Defaults are a healthy machine reached with NTLM/Negotiate or Basic credentials that cannot
    be delegated (the emulator has no CredSSP or Kerberos), so a second hop fails by default.
    """

    #: The session's credentials can make a second hop (CredSSP, or Kerberos with delegation):
    #: shares and WMI on other machines are reachable. Off: reading `\\other\share` or
    #: reaching an SMS Provider on another machine fails ("Making the second hop in PowerShell
    #: Remoting", learn.microsoft.com; about_Remote_Troubleshooting).
    credentials_delegated: bool = False
    #: [UNCONFIRMED] How Get-Content shows a second hop to a share: "access_denied"
    #: (GetContentReaderUnauthorizedAccessError, the anonymous logon is refused by the share) or
    #: "not_found" (PathNotFound, if the provider's existence check swallows the denial).
    second_hop_error: str = "access_denied"
    #: [UNCONFIRMED] The CMSite provider answers a path that is not its own (a UNC path used
    #: while the location is on a site drive) as not existing, so the engine's globber reports
    #: this error id (LocationGlobber: a provider-direct path goes to the current provider).
    cmsite_foreign_path_error: str = "PathNotFound"
    #: Execution policy in effect for the session (Get-ExecutionPolicy). Windows Server's default
    #: is RemoteSigned; the console sets AllSigned for the process it launches (PSOV).
    execution_policy: str = "RemoteSigned"
    #: ConfigurationManager.psd1 carries a valid Authenticode signature (Microsoft's).
    module_signed: bool = True
    #: Its signer is in Cert:\LocalMachine\TrustedPublisher (ConfigMgrCBDsc adds it there so
    #: AllSigned accepts the module non-interactively). Not by default.
    module_publisher_trusted: bool = False
    #: .NET Framework 4.x installed on the machine; from 2103 the module needs 4.7.2 (PSOV).
    dotnet_framework_version: str = "4.8"
    #: The SMS Provider of the local site is on this other machine ("" = on this machine, as the
    #: state says). SMS_ProviderLocation names it and the auto-created site drive points at it.
    sms_provider_machine: str = ""
    #: The account is not a Configuration Manager administrative user: root\sms and the site
    #: drive refuse it (WBEM_E_ACCESS_DENIED 0x80041003 / E_ACCESSDENIED).
    provider_access_denied: bool = False
    #: [UNCONFIRMED] The fault WinRM answers when a request names a shell another user created.
    #: That a shell belongs to its creator is documented (Connect-PSSession: "you cannot connect
    #: to sessions that were started by other users, unless you can provide the credentials of
    #: the user who created the session"; Get-PSSession -ComputerName lists only your own); the
    #: exact fault is not: "access_denied" (wsman:AccessDenied, WSManFault Code 5 =
    #: ERROR_ACCESS_DENIED, "Access is denied.") or "shell_not_found" (as for an unknown
    #: ShellId, 2150858843). Either way nothing runs and nothing is revealed.
    foreign_shell_fault: str = "access_denied"
    #: [UNCONFIRMED] Another account may open a named mutex created without a MutexSecurity.
    #: Its default security descriptor comes from the creator's token (CreateMutexW); whether
    #: that grants other accounts (an elevated administrator's may name BUILTIN\Administrators)
    #: depends on the accounts. Off: only its creator opens it (UnauthorizedAccessException).
    mutex_default_dacl_shared: bool = False
    #: Logical processors of the machine (`[Environment]::ProcessorCount`), unless
    #: `Costs.provider_cores` says otherwise. 16: Microsoft's recommended hardware for a
    #: stand-alone primary site server with the database on the same server ("Recommended
    #: hardware for Configuration Manager", learn.microsoft.com/mem/configmgr/core/plan-design/
    #: configs/recommended-hardware, "Site servers": 16 cores).
    logical_processors: int = 16


@attrs.define
class Quotas:
    r"""WinRM shell quotas, with Windows' defaults; tests lower them (0 = no limit).

    WinRS (`winrm get winrm/config/winrs`): the defaults of "Quota Management for Remote
    Shells" (learn.microsoft.com/windows/win32/winrm/quotas). Its MaxShellsPerUser counts every
    shell of the user, PowerShell sessions included: New-PSSession fails on it ("Configuring
    WSMAN Limits", PowerShell team blog, 2010). The Microsoft.PowerShell plug-in has its own
    quotas (`winrm get winrm/config/plugin?Name=microsoft.powershell`, `WSMan:\localhost\Plugin\
    microsoft.powershell\Quotas`): the values of the plug-in's ConfigXML as Windows registers it
    (HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WSMAN\Plugin\Microsoft.PowerShell).
    Enforced: MaxShellsPerUser (both, at Create, per authenticated user, across connections),
    IdleTimeout (both: a shell with no request for that long is deleted), the plug-in's
    MaxConcurrentCommandsPerShell and WinRS's MaxProcessesPerShell (at Command, counting the
    shell's commands still running: each runs on its own thread here). The others are
    advertised by a WSMan Get of the configuration but not enforced.
    """

    winrs_max_shells_per_user: int = 30
    winrs_idle_timeout_ms: int = 7_200_000
    winrs_max_concurrent_users: int = 10
    winrs_max_processes_per_shell: int = 25
    winrs_max_memory_per_shell_mb: int = 1024
    plugin_max_shells_per_user: int = 25
    plugin_max_shells: int = 25
    plugin_idle_timeout_ms: int = 7_200_000
    plugin_max_idle_timeout_ms: int = 2_147_483_647
    plugin_max_concurrent_users: int = 5
    plugin_max_processes_per_shell: int = 15
    plugin_max_memory_per_shell_mb: int = 1024
    plugin_max_concurrent_commands_per_shell: int = 1000
    #: [UNCONFIRMED] The WSManFault code when the plug-in's MaxShellsPerUser is exceeded:
    #: wsmerror.h has ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ (0x803381E4, "per plug-in quota") beside
    #: the WinRS one (ERROR_WSMAN_QUOTA_MAX_SHELLS, 0x803381A5); no capture of the plug-in's
    #: fault was found. The message is the same either way.
    plugin_max_shells_fault_code: int = 2150859236
    #: [UNCONFIRMED] The WSManFault code of a WinRS Command beyond MaxProcessesPerShell: no
    #: capture found; ERROR_WSMAN_QUOTA_MAX_OPERATIONS (0x803381A6) stands in. The plug-in's
    #: MaxConcurrentCommandsPerShell has its own code, ERROR_WSMAN_QUOTA_MAX_COMMANDS_PER_SHELL_PPQ.
    winrs_max_processes_fault_code: int = 2150859174
    #: The WinRM service's MaxConnections (`winrm get winrm/config/service`, default 300: "the
    #: maximum number of active requests that the service can process simultaneously",
    #: "Installation and configuration for Windows Remote Management"). Enforced per open TCP
    #: connection: one more is answered 503 and closed (http.sys logs such refusals as 503
    #: ConnLimit / QueueFull, "Error logging in HTTP APIs"); [UNCONFIRMED] that WinRM counts
    #: connections rather than requests in flight. 0 = no limit.
    max_connections: int = 300


@attrs.define
class Limits:
    """Resource caps of the emulated PowerShell host, so a hostile script gets PowerShell's
    error instead of exhausting the emulator.

    [UNCONFIRMED] `max_allocation`: on Windows `'x' * n` and `@(...) * n` allocate their result
    at once (StringOps.Multiply, ArrayOps.Multiply in PowerShell's source) and fail with
    System.OutOfMemoryException only when the CLR cannot allocate it, which depends on the
    machine's memory (and .NET's 2 GB object limit). The emulator stands that in with a cap on
    the elements (characters or items) one repetition may make; 0 = no cap.
    """

    max_allocation: int = 16_777_216


@attrs.define
class EmulatorSettings:
    behaviour: ProductBehaviour = attrs.field(factory=ProductBehaviour)
    host: HostFacts = attrs.field(factory=HostFacts)
    costs: Costs = attrs.field(factory=Costs)
    faults: Faults = attrs.field(factory=Faults)
    replication: Replication = attrs.field(factory=Replication)
    quotas: Quotas = attrs.field(factory=Quotas)
    limits: Limits = attrs.field(factory=Limits)
    #: Serialises updates of the counters below across server threads.
    lock: threading.Lock = attrs.field(factory=threading.Lock, eq=False, repr=False)
    request_count: int = 0
    cmdlet_calls: dict[str, int] = attrs.field(factory=dict)
    #: Per site: writes committed, and seconds the site's write lock was held (cost included),
    #: with the first and last moment it was taken (time.perf_counter) — for benchmarks.
    site_writes: dict[str, list[float]] = attrs.field(factory=dict)
    #: Module imports running now (`charge_import`, for `Costs.provider_cores`).
    imports_running: int = 0

    @property
    def logical_processors(self) -> int:
        """What `[Environment]::ProcessorCount` answers: the cores imports share when the
        costs model that (`Costs.provider_cores`), else the host's."""
        return self.costs.provider_cores or self.host.logical_processors

    def charge_import(self, sleep: Callable[[float], None]) -> None:
        """Sleep one `Import-Module ConfigurationManager`'s cost.

        With `costs.provider_cores`, the imports running at once share those cores (processor
        sharing, re-evaluated every IMPORT_SLICE): eight imports on four cores take twice as
        long each, and one import started alone speeds up when the others finish.
        """
        work, cores = self.costs.module_import, self.costs.provider_cores
        if work <= 0:
            return
        if cores <= 0:
            sleep(work)
            return
        with self.lock:
            self.imports_running += 1
        try:
            while work > 1e-9:
                with self.lock:
                    share = min(1.0, cores / self.imports_running)
                step = min(IMPORT_SLICE, work / share)
                sleep(step)
                work -= step * share
        finally:
            with self.lock:
                self.imports_running -= 1

    def note_site_write(self, site: str, start: float, end: float) -> None:
        with self.lock:
            seen = self.site_writes.setdefault(site.upper(), [0, 0.0, start, end])
            seen[0] += 1
            seen[1] += end - start
            seen[2] = min(seen[2], start)
            seen[3] = max(seen[3], end)

    def reset_faults(self) -> None:
        with self.lock:
            self.faults = Faults()
            self.request_count = 0
            self.cmdlet_calls = {}


class AnswerLost(Exception):  # noqa: N818 - a signal, not an error the user sees
    """Raised by the engine after a write was committed, to make the shell drop the answer."""
