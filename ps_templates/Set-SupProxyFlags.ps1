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

Set-CMSoftwareUpdatePoint -SiteSystemServerName $SiteSystemServerName -SiteCode $SiteCode -UseProxy $UseProxy -UseProxyForAutoDeploymentRule $UseProxyForAutoDeploymentRule

$sup = Get-CMSoftwareUpdatePoint -SiteSystemServerName $SiteSystemServerName -SiteCode $SiteCode
if (-not $sup) {
    throw ('cmproxy:ServerNotFound: ' + $SiteSystemServerName + ' hosts no software update point at site ' + $SiteCode)
}
ConvertTo-CMProxyRow -Role $sup -SiteCode $SiteCode
