# cmproxy's prelude: the functions templates share (the projection of a role row, the
# per-server write lock), defined by both transports before a template runs (PSRP: dot-sourced
# by a runspace pool's first pipeline, ahead of its template, and kept by the pool's runspace;
# WinRS: run by the bootstrap before its steps), so a template calls them without a round trip
# of its own.
# Only function definitions: nothing runs, no variable is set.

# The embedded properties (Props) of a ConfigMgr object, by name.
function Get-CMProxyProps {
    param($Object)
    $props = @{}
    foreach ($prop in $Object.Props) {
        $props[$prop.PropertyName] = $prop
    }
    return $props
}

# The one projection of a role row for cmproxy's reader (cmproxy/reader.py): a live
# IResultObject's nested Props do not survive remoting, so a flat object with the row's own
# fields only (a field a role does not have is left out: the reader takes it as not set): the
# server proxy of 'SMS Site System', the proxy options of 'SMS Software Update Point', the cloud
# and Connected Cache flags of 'SMS Distribution Point', the properties a role's own setting
# declares (`Setting.row`: cmproxy.templates.load_prelude inserts them at ROLE SETTINGS); of any
# other role its name alone.
# $Index: the batch item it answers; $Kind: 'Role', or 'Conflict' for a row found by a
# compare; $Sup: that server's 'SMS Software Update Point' row, projected into property Sup.
function ConvertTo-CMProxyRow {
    param($Role, [string]$SiteCode, $Index = $null, [string]$Kind = 'Role', $Sup = $null)
    $roleName = [string]$Role.RoleName
    $row = @{
        Kind       = $Kind
        SiteCode   = $SiteCode
        ServerName = [string]$Role.NetworkOSPath
        RoleName   = $roleName
    }
    if ($null -ne $Index) {
        $row['Index'] = $Index
    }
    # The embedded properties by name, inline rather than through Get-CMProxyProps: a read of
    # a whole hierarchy projects thousands of rows, and a function call per row costs more
    # than its loop. The ROLE SETTINGS projections below read them from here too.
    $props = @{}
    foreach ($prop in $Role.Props) {
        $props[$prop.PropertyName] = $prop
    }
    if ($roleName -eq 'SMS Site System') {
        $row['UseProxy'] = $props['UseProxy'].Value
        $row['ProxyName'] = $props['ProxyName'].Value2
        $row['ProxyServerPort'] = $props['ProxyServerPort'].Value
        $row['ProxyUserName'] = $props['ProxyUserName'].Value2
        $row['AnonymousProxyAccess'] = $props['AnonymousProxyAccess'].Value
    } elseif ($roleName -eq 'SMS Software Update Point') {
        $row['UseProxy'] = $props['UseProxy'].Value
        $row['UseProxyForADR'] = $props['UseProxyForADR'].Value
    } elseif ($roleName -eq 'SMS Distribution Point') {
        $row['IsCloud'] = $props['IsCloud'].Value
        $row['ConnectedCacheEnabled'] = $props['ConnectedCacheEnabled'].Value
    }
    # ROLE SETTINGS: the read projections roles declare with their setting (Setting.row) follow.
    if ($null -ne $Sup) {
        $row['Sup'] = ConvertTo-CMProxyRow -Role $Sup -SiteCode $SiteCode
    }
    return [pscustomobject]$row
}

# Registers account $UserName at site $SiteCode with New-CMAccount (the password arrives as a
# SecureString parameter, never in script text) and reads it back with Get-CMAccount: the
# account object, or a cmproxy:AccountNotFound error when the site does not show it.
function Register-CMProxyAccount {
    param([string]$SiteCode, [string]$UserName, [securestring]$Password)
    $null = New-CMAccount -UserName $UserName -Password $Password -SiteCode $SiteCode
    $account = Get-CMAccount -UserName $UserName -SiteCode $SiteCode
    if (-not $account) {
        throw ('cmproxy:AccountNotFound: New-CMAccount did not register ' + $UserName + ' at site ' + $SiteCode)
    }
    return $account
}

# The security descriptor of cmproxy's write locks: Authenticated Users (S-1-5-11) may open
# them (Synchronize, Modify), so writers under other accounts wait for them too. The .NET Mutex
# constructor applies it to the kernel object it creates and keeps no hold on it: one object
# serves every lock a pipeline takes.
function Get-CMProxyLockSecurity {
    $security = New-Object -TypeName System.Security.AccessControl.MutexSecurity
    $users = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList 'S-1-5-11'
    $rule = New-Object -TypeName System.Security.AccessControl.MutexAccessRule -ArgumentList $users, 'Synchronize, Modify', 'Allow'
    $security.AddAccessRule($rule)
    return $security
}

# Takes server $Server's lock: a named system mutex on this machine (the one running the
# cmdlets), so that cmproxy writers reaching the site through it never interleave on a server
# (docs/transactions.md, "Limits"). Returns the mutex, or $null when another writer still holds
# it after $TimeoutMs. Kernel object names are case-sensitive, may not hold a backslash after
# the Global\ prefix and are at most 260 characters: the name is lower-cased, anything but
# letters, digits, '.' and '-' becomes '_', and it is cut at 260 (two servers sharing a cut
# name only share a lock). Its descriptor is Get-CMProxyLockSecurity's, so writers under
# other accounts wait for it too. A mutex whose holder ended without releasing it
# (AbandonedMutexException) is taken over: the caller's compare decides. Release it with
# Unlock-CMProxyServer, in a finally. $Security: Get-CMProxyLockSecurity's descriptor, built
# once by a caller taking many locks (three New-Object per lock otherwise); built here if absent.
function Lock-CMProxyServer {
    param([string]$SiteCode, [string]$Server, [int]$TimeoutMs = 60000, $Security = $null)
    $lockName = 'Global\cmproxy-' + (($SiteCode + '-' + $Server).ToLower() -replace '[^a-z0-9.-]', '_')
    if ($lockName.Length -gt 260) {
        $lockName = $lockName.Substring(0, 260)
    }
    $created = $false
    if ($null -eq $Security) {
        $Security = Get-CMProxyLockSecurity
    }
    $mutex = New-Object -TypeName System.Threading.Mutex -ArgumentList $false, $lockName, ([ref]$created), $Security
    $owned = $false
    try {
        $owned = $mutex.WaitOne($TimeoutMs)
    } catch {
        if ($_.FullyQualifiedErrorId -ne 'AbandonedMutexException') {
            $mutex.Dispose()
            throw
        }
        # Its holder ended without releasing it: it is ours now.
        $owned = $true
    }
    if (-not $owned) {
        $mutex.Dispose()
        return $null
    }
    return $mutex
}

# Releases and disposes a lock Lock-CMProxyServer took (on the thread that took it).
function Unlock-CMProxyServer {
    param($Mutex)
    $Mutex.ReleaseMutex()
    $Mutex.Dispose()
}
