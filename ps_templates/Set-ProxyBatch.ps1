# Writes several servers of one site in one pipeline: server proxies (Set-CMSiteSystemServer, as
# Set-ServerProxy.ps1) and software update point proxy options (Set-CMSoftwareUpdatePoint, as
# Set-SupProxyFlags.ps1), and reads every written server back in the same pipeline.
# Item i is element i of each array (Kind 'Proxy' or 'Sup'). Each write runs in its own
# try/catch, so one failure does not stop the others — except the later writes of the same
# Group (one transaction's writes, in order), which are skipped with a cmproxy:Skipped record.
# Each item gets exactly one record, with its Index: the role read back (the prelude's
# ConvertTo-CMProxyRow, as the single templates return it) or its own error. A group's written items are read back right after the
# group's last item (without Group, each item is its own group): after all of its
# transaction's writes, while the site takes the next writes. With -ReadBackBySite they are all
# read back after the last write, from one listing of the site. Each proxy account is looked
# up once per pipeline with Get-CMAccount (-ProxyAccessAccount takes the account object,
# configmgr-cmdlets.md §3.5).
# Compare-and-set: just before its Set, each write reads its server's roles (one
# Get-CMSiteRole) and compares them with the values it was planned from. ProxyOk[i] / SupOk[i]
# list the server proxy / SUP option values its transaction may find there (its snapshot and
# its own new value, as keys: see Get-ProxyKey / Get-SupKey and cmproxy/writer.py), each
# between newlines; empty: not checked. Anything else is someone else's change: the write is
# skipped with a Kind 'Conflict' record naming the value found (the server's site system row,
# its SUP row as Sup; no secret: a password cannot be read back), and its group's later writes
# are skipped too.
# The lock: the compare and the Set are two requests to the SMS Provider, so before its group's
# first compare the pipeline takes a named system mutex per server of the group on this machine
# (the prelude's Lock-CMProxyServer: Global\cmproxy-<site>-<server>, in name order, so two pipelines never wait on each other
# crosswise) and holds it across the group's compares, Sets and read-back; it is released (and
# disposed) after that, or in the finally when the script ends early. Every cmproxy writer that
# reaches the site through this machine waits for it, so of simultaneous writers one compares
# and writes, and the others compare after it and find its values. A lock still held after
# $LockTimeoutMs is a Kind 'Conflict' record with Locked set: nothing of that group is written.
# A mutex whose holder died (AbandonedMutexException) is ours: the compare decides. Writers
# through another machine are not serialised (docs/transactions.md, "Limits").
# -NewAccountName / -NewAccountPassword (a bulk run creating the proxy account it sets): before
# the first write, under a named mutex for that account at the site (the prelude's
# Lock-CMProxyServer on 'account:<name>', so the site's other pipelines wait rather than
# create it twice), the account is looked up; if it is not registered yet it is created with
# New-CMAccount (the password arrives as a SecureString parameter, never in script text) and
# read back, and a Kind 'Account' record (no Index) says so. The pipelines of one site all
# carry it; the first to take the mutex creates it, the others find it. If it cannot be
# created, the script stops before any write.
# -Items is the batch as one JSON object of equal-length arrays (Kind, SiteSystemServerName,
# EnableProxy, ProxyServerName, ProxyServerPort, ProxyAccessAccountName, UseProxy,
# UseProxyForAutoDeploymentRule, ProxyOk, SupOk and, optionally, Group): one string to send and parse instead
# of hundreds of remoting objects. It is data, parsed with ConvertFrom-Json, never run. (A
# batch is at most 128 writes, a few tens of KB: far below the length Windows PowerShell 5.1's
# ConvertFrom-Json accepts.)
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string]$SiteCode,
    [Parameter(Mandatory = $true)]
    [string]$Items,
    [switch]$ReadBackBySite,
    [string]$NewAccountName,
    [securestring]$NewAccountPassword,
    # How long a group waits for another writer's lock on one of its servers (one server's
    # compare, Sets and read-back take a few seconds even on a slow site).
    [int]$LockTimeoutMs = 60000
)
$ErrorActionPreference = 'Stop'

$batch = ConvertFrom-Json -InputObject $Items
$Kind = $batch.Kind
$SiteSystemServerName = $batch.SiteSystemServerName
$EnableProxy = $batch.EnableProxy
$ProxyServerName = $batch.ProxyServerName
$ProxyServerPort = $batch.ProxyServerPort
$ProxyAccessAccountName = $batch.ProxyAccessAccountName
$UseProxy = $batch.UseProxy
$UseProxyForAutoDeploymentRule = $batch.UseProxyForAutoDeploymentRule
$Group = $batch.Group
$ProxyOk = $batch.ProxyOk
$SupOk = $batch.SupOk
# The mutexes taken, per group tag (see Lock-Group).
$held = @{}

# The server proxy of a projected 'SMS Site System' row (the prelude's ConvertTo-CMProxyRow) as
# a comparable key, as cmproxy's reader sees it (reader.proxy_from_record): no proxy is 'off';
# names compare case-insensitively.
function Get-ProxyKey {
    param($Row)
    if ([int]$Row.UseProxy -ne 1) {
        return 'off'
    }
    $account = ''
    if (($null -ne $Row.AnonymousProxyAccess) -and ([int]$Row.AnonymousProxyAccess -ne 1)) {
        $account = ([string]$Row.ProxyUserName).Trim()
    }
    $port = 80
    if ($Row.ProxyServerPort -and ([int]$Row.ProxyServerPort -ne 0)) {
        $port = [int]$Row.ProxyServerPort
    }
    return ('on|' + ([string]$Row.ProxyName).Trim().ToLower() + '|' + $port + '|' + $account.ToLower())
}

# The SUP options of a projected 'SMS Software Update Point' row as a comparable key.
function Get-SupKey {
    param($Row)
    return ('sup|' + [int]$Row.UseProxy + '|' + [int]$Row.UseProxyForADR)
}

# The compare of compare-and-set: $null when item $Index may be written, else its Conflict record.
function Test-Unchanged {
    param([int]$Index)
    $proxyKeys = ''
    $supKeys = ''
    if ($null -ne $ProxyOk) {
        $proxyKeys = [string]$ProxyOk[$Index]
    }
    if ($null -ne $SupOk) {
        $supKeys = [string]$SupOk[$Index]
    }
    if ((-not $proxyKeys) -and (-not $supKeys)) {
        return $null
    }
    $name = [string]$SiteSystemServerName[$Index]
    $siteRow = $null
    $supRow = $null
    foreach ($row in @(Get-CMSiteRole -SiteSystemServerName $name -SiteCode $SiteCode)) {
        if ([string]$row.RoleName -eq 'SMS Site System') {
            $siteRow = $row
        } elseif ([string]$row.RoleName -eq 'SMS Software Update Point') {
            $supRow = $row
        }
    }
    if ($null -eq $siteRow) {
        throw ('cmproxy:ServerNotFound: ' + $name + ' has no such role at site ' + $SiteCode)
    }
    # What the server shows: its site system row, with its SUP row (if any) as Sup; compared
    # by key, and the Conflict record itself when it differs.
    $found = ConvertTo-CMProxyRow -Role $siteRow -SiteCode $SiteCode -Index $Index -Kind 'Conflict' -Sup $supRow
    $same = (-not $proxyKeys) -or $proxyKeys.Contains("`n" + (Get-ProxyKey $found) + "`n")
    if ($supKeys) {
        $same = $same -and ($null -ne $supRow) -and $supKeys.Contains("`n" + (Get-SupKey $found.Sup) + "`n")
    }
    if ($same) {
        return $null
    }
    return $found
}

# Takes the locks of every server of group $Tag (item $Index alone without Group), in name
# order: $null, or the Conflict record of the first server another writer holds.
function Lock-Group {
    param([int]$Index, [string]$Tag)
    $servers = @{}
    if ($Group) {
        $servers = $serversOfGroup[$Tag]
    } else {
        $servers[([string]$SiteSystemServerName[$Index]).ToLower()] = $true
    }
    $mutexes = @()
    $busy = $null
    foreach ($server in @($servers.Keys | Sort-Object)) {
        $mutex = Lock-CMProxyServer -SiteCode $SiteCode -Server $server -TimeoutMs $LockTimeoutMs -Security $lockSecurity
        if ($null -eq $mutex) {
            $busy = [pscustomobject]@{
                Kind       = 'Conflict'
                Index      = $Index
                TargetName = $server
                Locked     = ('another writer has held the lock on ' + $server + ' for ' + ($LockTimeoutMs / 1000) + ' s')
            }
            break
        }
        $mutexes += $mutex
    }
    $held[$Tag] = $mutexes
    return $busy
}

# Releases and disposes the locks group $Tag took.
function Unlock-Group {
    param([string]$Tag)
    if (-not $held.ContainsKey($Tag)) {
        return
    }
    foreach ($mutex in $held[$Tag]) {
        Unlock-CMProxyServer -Mutex $mutex
    }
    $held.Remove($Tag)
}

# One written item read back: its role (with -FromListing picked from $listed, the site's roles
# listed once after the last write, read from the script's scope; PowerShell passes a hashtable
# by reference either way, but a recorder of bound arguments, as cmproxy's emulator keeps its
# call log, would record the whole site once per item) or an error.
function Read-BackItem {
    param([int]$Index, [switch]$FromListing)
    $name = [string]$SiteSystemServerName[$Index]
    $roleName = 'SMS Site System'
    if ([string]$Kind[$Index] -eq 'Sup') {
        $roleName = 'SMS Software Update Point'
    }
    if ($FromListing) {
        $role = $listed[('\\' + $name).ToLower() + '|' + $roleName]
    } elseif ([string]$Kind[$Index] -eq 'Sup') {
        $role = Get-CMSoftwareUpdatePoint -SiteSystemServerName $name -SiteCode $SiteCode
    } else {
        $role = Get-CMSiteSystemServer -SiteSystemServerName $name -SiteCode $SiteCode
    }
    if (-not $role) {
        [pscustomobject]@{
            Kind                  = 'Error'
            Index                 = $Index
            Message               = ('cmproxy:ServerNotFound: ' + $name + ' has no such role at site ' + $SiteCode)
            FullyQualifiedErrorId = 'cmproxy:ServerNotFound'
            Category              = 'ObjectNotFound'
            Reason                = ''
            TargetName            = $name
        }
        return
    }
    ConvertTo-CMProxyRow -Role $role -SiteCode $SiteCode -Index $Index
}

# One security descriptor for every lock this pipeline takes (see Get-CMProxyLockSecurity).
$lockSecurity = Get-CMProxyLockSecurity
$accounts = @{}
if ($NewAccountName) {
    $accountLock = Lock-CMProxyServer -SiteCode $SiteCode -Server ('account:' + $NewAccountName) -TimeoutMs $LockTimeoutMs -Security $lockSecurity
    if ($null -eq $accountLock) {
        throw ('cmproxy:Locked: another writer has held the lock on account ' + $NewAccountName + ' at site ' + $SiteCode + ' for ' + ($LockTimeoutMs / 1000) + ' s')
    }
    try {
        $found = Get-CMAccount -UserName $NewAccountName -SiteCode $SiteCode
        if (-not $found) {
            $found = Register-CMProxyAccount -SiteCode $SiteCode -UserName $NewAccountName -Password $NewAccountPassword
            [pscustomobject]@{
                Kind     = 'Account'
                SiteCode = $SiteCode
                UserName = [string]$found.UserName
            }
        }
        $accounts[$NewAccountName.ToLower()] = $found
    } finally {
        Unlock-CMProxyServer -Mutex $accountLock
    }
}
# Written items not read back yet, and each group's last item.
$pending = @()
$lastOfGroup = @{}
# Each group's servers (lower case, as keys), gathered once for Lock-Group.
$serversOfGroup = @{}
$i = 0
foreach ($tag in $Group) {
    $lastOfGroup[[string]$tag] = $i
    if (-not $serversOfGroup.ContainsKey([string]$tag)) {
        $serversOfGroup[[string]$tag] = @{}
    }
    $serversOfGroup[[string]$tag][([string]$SiteSystemServerName[$i]).ToLower()] = $true
    $i = $i + 1
}
$i = 0
$failedGroups = @{}
try {
    foreach ($item in $SiteSystemServerName) {
        $name = [string]$item
        $tag = [string]$i
        if ($Group) {
            $tag = [string]$Group[$i]
        }
        if ($Group -and $failedGroups.ContainsKey([string]$Group[$i])) {
            # An earlier write of the same group (transaction) failed: the later ones are not made.
            [pscustomobject]@{
                Kind                  = 'Error'
                Index                 = $i
                Message               = ('cmproxy:Skipped: an earlier write of its transaction failed')
                FullyQualifiedErrorId = 'cmproxy:Skipped'
                Category              = 'OperationStopped'
                Reason                = ''
                TargetName            = $name
            }
        } else {
            try {
                # The account first: the compare stays right before the Set.
                $account = $null
                $accountName = [string]$ProxyAccessAccountName[$i]
                if (([string]$Kind[$i] -ne 'Sup') -and [bool]$EnableProxy[$i] -and $accountName) {
                    $key = $accountName.ToLower()
                    if (-not $accounts.ContainsKey($key)) {
                        $accounts[$key] = Get-CMAccount -UserName $accountName -SiteCode $SiteCode
                    }
                    $account = $accounts[$key]
                    if (-not $account) {
                        throw ('cmproxy:AccountNotFound: the account ' + $accountName + ' is not registered at site ' + $SiteCode)
                    }
                }
                # The group's locks first (at its first item), then the compare under them.
                $conflict = $null
                if (-not $held.ContainsKey($tag)) {
                    $conflict = Lock-Group -Index $i -Tag $tag
                }
                if ($null -eq $conflict) {
                    $conflict = Test-Unchanged -Index $i
                }
                if ($null -ne $conflict) {
                    # Someone else changed the server since it was planned: not written.
                    if ($Group) {
                        $failedGroups[[string]$Group[$i]] = $true
                    }
                    $conflict
                } elseif ([string]$Kind[$i] -eq 'Sup') {
                    Set-CMSoftwareUpdatePoint -SiteSystemServerName $name -SiteCode $SiteCode -UseProxy ([bool]$UseProxy[$i]) -UseProxyForAutoDeploymentRule ([bool]$UseProxyForAutoDeploymentRule[$i])
                } elseif ([bool]$EnableProxy[$i]) {
                    if ($account) {
                        Set-CMSiteSystemServer -SiteSystemServerName $name -SiteCode $SiteCode -EnableProxy $true -ProxyServerName ([string]$ProxyServerName[$i]) -ProxyServerPort ([int]$ProxyServerPort[$i]) -ProxyAccessAccount $account
                    } else {
                        Set-CMSiteSystemServer -SiteSystemServerName $name -SiteCode $SiteCode -EnableProxy $true -ProxyServerName ([string]$ProxyServerName[$i]) -ProxyServerPort ([int]$ProxyServerPort[$i])
                    }
                } else {
                    Set-CMSiteSystemServer -SiteSystemServerName $name -SiteCode $SiteCode -EnableProxy $false
                }
                if ($null -eq $conflict) {
                    $pending += $i
                }
            } catch {
                if ($Group) {
                    $failedGroups[[string]$Group[$i]] = $true
                }
                [pscustomobject]@{
                    Kind                  = 'Error'
                    Index                 = $i
                    Message               = [string]$_.Exception.Message
                    FullyQualifiedErrorId = [string]$_.FullyQualifiedErrorId
                    Category              = [string]$_.CategoryInfo.Category
                    Reason                = [string]$_.CategoryInfo.Reason
                    TargetName            = $name
                }
            }
        }
        # After its group's last item, the group's written items are read back.
        $last = $i
        if ($Group) {
            $last = $lastOfGroup[[string]$Group[$i]]
        }
        if ((-not $ReadBackBySite) -and ($last -eq $i)) {
            $others = @()
            foreach ($j in $pending) {
                if ((-not $Group) -or ([string]$Group[$j] -eq [string]$Group[$i])) {
                    Read-BackItem -Index $j
                } else {
                    $others += $j
                }
            }
            $pending = $others
        }
        if ($last -eq $i) {
            Unlock-Group -Tag $tag
        }
        $i = $i + 1
    }
} finally {
    # The script ends early (an error, a stop): no lock outlives it.
    foreach ($tag in @($held.Keys)) {
        Unlock-Group -Tag $tag
    }
}

# With -ReadBackBySite (the caller's choice when the batch is a good part of the site), after
# the last write: the site's roles listed once and each written server's row picked from them.
if ($ReadBackBySite) {
    $listed = @{}
    foreach ($row in Get-CMSiteRole -SiteCode $SiteCode) {
        $listed[([string]$row.NetworkOSPath).ToLower() + '|' + [string]$row.RoleName] = $row
    }
    foreach ($j in $pending) {
        Read-BackItem -Index $j -FromListing
    }
}
