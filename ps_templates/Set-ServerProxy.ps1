# Sets (or removes) the one proxy of a site system server with Set-CMSiteSystemServer, then
# reads the server back (projected by the prelude's ConvertTo-CMProxyRow). The proxy account is
# looked up here with Get-CMAccount because -ProxyAccessAccount takes the account object, not a
# name (configmgr-cmdlets.md §3.5).
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string]$SiteCode,
    [Parameter(Mandatory = $true)]
    [string]$SiteSystemServerName,
    [Parameter(Mandatory = $true)]
    [bool]$EnableProxy,
    [string]$ProxyServerName,
    [int]$ProxyServerPort = 80,
    [string]$ProxyAccessAccountName
)
$ErrorActionPreference = 'Stop'

# The server's write lock (the prelude's Lock-CMProxyServer), held across the Set and the
# read-back, as Set-ProxyBatch.ps1 holds it: another cmproxy writer through this machine never
# lands between them.
$lock = Lock-CMProxyServer -SiteCode $SiteCode -Server $SiteSystemServerName
if ($null -eq $lock) {
    throw ('cmproxy:Locked: another writer has held the lock on ' + $SiteSystemServerName + ' for 60 s; nothing written')
}
try {
    if ($EnableProxy) {
        if ($ProxyAccessAccountName) {
            $account = Get-CMAccount -UserName $ProxyAccessAccountName -SiteCode $SiteCode
            if (-not $account) {
                throw ('cmproxy:AccountNotFound: the account ' + $ProxyAccessAccountName + ' is not registered at site ' + $SiteCode)
            }
            Set-CMSiteSystemServer -SiteSystemServerName $SiteSystemServerName -SiteCode $SiteCode -EnableProxy $true -ProxyServerName $ProxyServerName -ProxyServerPort $ProxyServerPort -ProxyAccessAccount $account
        } else {
            Set-CMSiteSystemServer -SiteSystemServerName $SiteSystemServerName -SiteCode $SiteCode -EnableProxy $true -ProxyServerName $ProxyServerName -ProxyServerPort $ProxyServerPort
        }
    } else {
        Set-CMSiteSystemServer -SiteSystemServerName $SiteSystemServerName -SiteCode $SiteCode -EnableProxy $false
    }

    $server = Get-CMSiteSystemServer -SiteSystemServerName $SiteSystemServerName -SiteCode $SiteCode
    if (-not $server) {
        throw ('cmproxy:ServerNotFound: ' + $SiteSystemServerName + ' is not a site system server of site ' + $SiteCode)
    }
    ConvertTo-CMProxyRow -Role $server -SiteCode $SiteCode
} finally {
    Unlock-CMProxyServer -Mutex $lock
}
