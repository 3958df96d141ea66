# Read-only facts for `cmproxy doctor`: the PowerShell host, the CMSite drives, the raw shape of
# the objects cmproxy reads proxies from, and the WinRM quotas where this account may read them.
# Nothing is written. Live IResultObjects are projected into flat records (one per embedded
# property), because nested Props do not survive remoting (configmgr-cmdlets.md §1.2); every
# read is in its own try/catch, so one that fails is reported and the others still run.
# -ProxyServerName: a site system server whose 'SMS Site System' role is read (§2.2).
# -SupServerName: a server whose 'SMS Software Update Point' role is read (§2.3).
[CmdletBinding()]
param(
    [string]$SiteCode,
    [string]$ProxyServerName,
    [string]$SupServerName
)
$ErrorActionPreference = 'Stop'

[pscustomobject]@{
    Kind      = 'Host'
    PSVersion = [string]$PSVersionTable.PSVersion
    PSEdition = [string]$PSVersionTable.PSEdition
    Location  = [string](Get-Location)
}

try {
    foreach ($drive in @(Get-PSDrive -PSProvider CMSite)) {
        [pscustomobject]@{
            Kind     = 'Drive'
            Name     = [string]$drive.Name
            Root     = [string]$drive.Root
            Provider = [string]$drive.Provider
        }
    }
} catch {
    [pscustomobject]@{
        Kind   = 'Error'
        Read   = 'Get-PSDrive -PSProvider CMSite'
        Reason = [string]$_.Exception.Message
    }
}

# One object's embedded properties: each of Props, and the names of its PropLists.
function Write-Shape {
    param(
        [string]$Label,
        [string]$Read,
        [object[]]$Found
    )
    $objects = @($Found)
    [pscustomobject]@{
        Kind    = 'Object'
        Object  = $Label
        Read    = $Read
        Count   = $objects.Count
        Reason  = ''
    }
    if ($objects.Count -lt 1) {
        return
    }
    $first = $objects[0]
    foreach ($prop in @($first.Props)) {
        [pscustomobject]@{
            Kind         = 'Prop'
            Object       = $Label
            List         = 'Props'
            PropertyName = [string]$prop.PropertyName
            Value        = $prop.Value
            Value1       = [string]$prop.Value1
            Value2       = [string]$prop.Value2
        }
    }
    foreach ($list in @($first.PropLists)) {
        [pscustomobject]@{
            Kind         = 'PropList'
            Object       = $Label
            List         = 'PropLists'
            PropertyName = [string]$list.PropertyListName
            Count        = @($list.Values).Count
        }
    }
}

if ($ProxyServerName) {
    $read = 'Get-CMSiteSystemServer -SiteSystemServerName ' + $ProxyServerName + ' -SiteCode ' + $SiteCode
    try {
        Write-Shape -Label 'SMS Site System' -Read $read -Found @(Get-CMSiteSystemServer -SiteSystemServerName $ProxyServerName -SiteCode $SiteCode)
    } catch {
        [pscustomobject]@{ Kind = 'Object'; Object = 'SMS Site System'; Read = $read; Count = 0; Reason = [string]$_.Exception.Message }
    }
}
if ($SupServerName) {
    $read = 'Get-CMSoftwareUpdatePoint -SiteSystemServerName ' + $SupServerName + ' -SiteCode ' + $SiteCode
    try {
        Write-Shape -Label 'SMS Software Update Point' -Read $read -Found @(Get-CMSoftwareUpdatePoint -SiteSystemServerName $SupServerName -SiteCode $SiteCode)
    } catch {
        [pscustomobject]@{ Kind = 'Object'; Object = 'SMS Software Update Point'; Read = $read; Count = 0; Reason = [string]$_.Exception.Message }
    }
    $read = 'Get-CMSoftwareUpdatePointComponent -SiteCode ' + $SiteCode
    try {
        Write-Shape -Label 'SMS_WSUS_CONFIGURATION_MANAGER' -Read $read -Found @(Get-CMSoftwareUpdatePointComponent -SiteCode $SiteCode)
    } catch {
        [pscustomobject]@{ Kind = 'Object'; Object = 'SMS_WSUS_CONFIGURATION_MANAGER'; Read = $read; Count = 0; Reason = [string]$_.Exception.Message }
    }
}
