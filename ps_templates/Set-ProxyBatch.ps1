# Writes several servers of one site in one pipeline: server proxies (Set-CMSiteSystemServer, as
# Set-ServerProxy.ps1) and software update point proxy options (Set-CMSoftwareUpdatePoint, as
# Set-SupProxyFlags.ps1), and reads every written server back in the same pipeline.
# Item i is element i of each array (Kind 'Proxy' or 'Sup'). Each write runs in its own
# try/catch, so one failure does not stop the others — except the later writes of the same
# Group (one transaction's writes, in order), which are skipped with a cmproxy:Skipped record.
# Each item gets exactly one record, with its Index: the role read back (the fields the single
# templates return) or its own error. A group's written items are read back right after the
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
# skipped with a Kind 'Conflict' record naming the value found (no secret: a password cannot be
# read back), and its group's later writes are skipped too. The compare and the Set are two
# requests to the SMS Provider: another writer can still write between them (see
# docs/transactions.md, "Limits").
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
    [switch]$ReadBackBySite
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

# The server proxy of an 'SMS Site System' row as a comparable key, as cmproxy's reader sees it
# (reader.proxy_from_record): no proxy is 'off'; names compare case-insensitively.
function Get-ProxyKey {
    param($Props)
    if ([int]$Props['UseProxy'].Value -ne 1) {
        return 'off'
    }
    $account = ''
    $anonymous = $Props['AnonymousProxyAccess']
    if (($null -ne $anonymous) -and ([int]$anonymous.Value -ne 1)) {
        $account = ([string]$Props['ProxyUserName'].Value2).Trim()
    }
    $port = 80
    if ($Props['ProxyServerPort'] -and ([int]$Props['ProxyServerPort'].Value -ne 0)) {
        $port = [int]$Props['ProxyServerPort'].Value
    }
    return ('on|' + ([string]$Props['ProxyName'].Value2).Trim().ToLower() + '|' + $port + '|' + $account.ToLower())
}

# The SUP options of an 'SMS Software Update Point' row as a comparable key.
function Get-SupKey {
    param($Props)
    return ('sup|' + [int]$Props['UseProxy'].Value + '|' + [int]$Props['UseProxyForADR'].Value)
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
    $site = $null
    $sup = $null
    foreach ($row in @(Get-CMSiteRole -SiteSystemServerName $name -SiteCode $SiteCode)) {
        $props = @{}
        foreach ($prop in $row.Props) {
            $props[$prop.PropertyName] = $prop
        }
        if ([string]$row.RoleName -eq 'SMS Site System') {
            $site = $props
        } elseif ([string]$row.RoleName -eq 'SMS Software Update Point') {
            $sup = $props
        }
    }
    if ($null -eq $site) {
        throw ('cmproxy:ServerNotFound: ' + $name + ' has no such role at site ' + $SiteCode)
    }
    $same = (-not $proxyKeys) -or $proxyKeys.Contains("`n" + (Get-ProxyKey $site) + "`n")
    if ($supKeys) {
        $same = $same -and ($null -ne $sup) -and $supKeys.Contains("`n" + (Get-SupKey $sup) + "`n")
    }
    if ($same) {
        return $null
    }
    $found = [pscustomobject]@{
        Kind                 = 'Conflict'
        Index                = $Index
        TargetName           = $name
        UseProxy             = $site['UseProxy'].Value
        ProxyName            = $site['ProxyName'].Value2
        ProxyServerPort      = $site['ProxyServerPort'].Value
        ProxyUserName        = $site['ProxyUserName'].Value2
        AnonymousProxyAccess = $site['AnonymousProxyAccess'].Value
        SupUseProxy          = $null
        SupUseProxyForADR    = $null
    }
    if ($null -ne $sup) {
        $found.SupUseProxy = $sup['UseProxy'].Value
        $found.SupUseProxyForADR = $sup['UseProxyForADR'].Value
    }
    return $found
}

# One written item read back: its role (picked from $Listed when the site was listed) or an error.
function Read-BackItem {
    param([int]$Index, $Listed)
    $name = [string]$SiteSystemServerName[$Index]
    $roleName = 'SMS Site System'
    if ([string]$Kind[$Index] -eq 'Sup') {
        $roleName = 'SMS Software Update Point'
    }
    if ($null -ne $Listed) {
        $role = $Listed[('\\' + $name).ToLower() + '|' + $roleName]
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
    $props = @{}
    foreach ($prop in $role.Props) {
        $props[$prop.PropertyName] = $prop
    }
    [pscustomobject]@{
        Kind                 = 'Role'
        Index                = $Index
        SiteCode             = $SiteCode
        ServerName           = [string]$role.NetworkOSPath
        RoleName             = [string]$role.RoleName
        UseProxy             = $props['UseProxy'].Value
        ProxyName            = $props['ProxyName'].Value2
        ProxyServerPort      = $props['ProxyServerPort'].Value
        ProxyUserName        = $props['ProxyUserName'].Value2
        AnonymousProxyAccess = $props['AnonymousProxyAccess'].Value
        UseProxyForADR       = $props['UseProxyForADR'].Value
    }
}

$accounts = @{}
# Written items not read back yet, and each group's last item.
$pending = @()
$lastOfGroup = @{}
$i = 0
foreach ($tag in $Group) {
    $lastOfGroup[[string]$tag] = $i
    $i = $i + 1
}
$i = 0
$failedGroups = @{}
foreach ($item in $SiteSystemServerName) {
    $name = [string]$item
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
            $conflict = Test-Unchanged -Index $i
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
                Read-BackItem -Index $j -Listed $null
            } else {
                $others += $j
            }
        }
        $pending = $others
    }
    $i = $i + 1
}

# With -ReadBackBySite (the caller's choice when the batch is a good part of the site), after
# the last write: the site's roles listed once and each written server's row picked from them.
if ($ReadBackBySite) {
    $listed = @{}
    foreach ($row in Get-CMSiteRole -SiteCode $SiteCode) {
        $listed[([string]$row.NetworkOSPath).ToLower() + '|' + [string]$row.RoleName] = $row
    }
    foreach ($j in $pending) {
        Read-BackItem -Index $j -Listed $listed
    }
}
