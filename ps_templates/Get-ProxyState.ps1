# Reads every site system server of a site with its proxy and its roles, projected into plain
# objects (the live IResultObjects' nested Props do not survive remoting).
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string]$SiteCode
)
$ErrorActionPreference = 'Stop'

foreach ($server in Get-CMSiteSystemServer -SiteCode $SiteCode) {
    $props = @{}
    foreach ($p in $server.Props) {
        $props[$p.PropertyName] = $p
    }
    $roles = @()
    foreach ($role in Get-CMSiteRole -SiteCode $SiteCode -SiteSystemServerName $server.NetworkOSPath.TrimStart('\')) {
        $roles += $role.RoleName
    }
    [pscustomobject]@{
        SiteCode             = $server.SiteCode
        ServerName           = $server.NetworkOSPath.TrimStart('\')
        UseProxy             = $props['UseProxy'].Value
        ProxyName            = $props['ProxyName'].Value2
        ProxyServerPort      = $props['ProxyServerPort'].Value
        ProxyUserName        = $props['ProxyUserName'].Value2
        AnonymousProxyAccess = $props['AnonymousProxyAccess'].Value
        Roles                = $roles
    }
}
