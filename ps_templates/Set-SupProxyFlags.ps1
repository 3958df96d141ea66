# Sets the software update point's two proxy options with Set-CMSoftwareUpdatePoint and reads
# them back from the SUP role (configmgr-cmdlets.md §2.3, §3.9), projected by the prelude's
# ConvertTo-CMProxyRow.
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string]$SiteCode,
    [Parameter(Mandatory = $true)]
    [string]$SiteSystemServerName,
    [Parameter(Mandatory = $true)]
    [bool]$UseProxy,
    [Parameter(Mandatory = $true)]
    [bool]$UseProxyForAutoDeploymentRule
)
$ErrorActionPreference = 'Stop'

# The server's write lock (the prelude's Lock-CMProxyServer), held across the Set and the
# read-back, as Set-ProxyBatch.ps1 holds it.
$lock = Lock-CMProxyServer -SiteCode $SiteCode -Server $SiteSystemServerName
if ($null -eq $lock) {
    throw ('cmproxy:Locked: another writer has held the lock on ' + $SiteSystemServerName + ' for 60 s; nothing written')
}
try {
    Set-CMSoftwareUpdatePoint -SiteSystemServerName $SiteSystemServerName -SiteCode $SiteCode -UseProxy $UseProxy -UseProxyForAutoDeploymentRule $UseProxyForAutoDeploymentRule

    $sup = Get-CMSoftwareUpdatePoint -SiteSystemServerName $SiteSystemServerName -SiteCode $SiteCode
    if (-not $sup) {
        throw ('cmproxy:ServerNotFound: ' + $SiteSystemServerName + ' hosts no software update point at site ' + $SiteCode)
    }
    ConvertTo-CMProxyRow -Role $sup -SiteCode $SiteCode
} finally {
    Unlock-CMProxyServer -Mutex $lock
}
