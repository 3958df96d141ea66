# Reads a whole hierarchy (or the given sites or servers) in one pipeline: sites, every role row of every
# site system server with its proxy props, the SUP component's sync source and the accounts.
# Live IResultObjects are projected into flat objects: nested Props do not survive remoting.
[CmdletBinding()]
param(
    [string[]]$SiteCode,
    [string[]]$SiteSystemServerName
)
$ErrorActionPreference = 'Stop'

$sites = @(Get-CMSite)
foreach ($site in $sites) {
    [pscustomobject]@{
        Kind              = 'Site'
        SiteCode          = [string]$site.SiteCode
        SiteName          = [string]$site.SiteName
        Type              = $site.Type
        ReportingSiteCode = [string]$site.ReportingSiteCode
        ServerName        = [string]$site.ServerName
    }
}
foreach ($site in $sites) {
    $code = [string]$site.SiteCode
    if ((-not $SiteCode) -or ($SiteCode -contains $code)) {
        foreach ($role in Get-CMSiteRole -SiteCode $code) {
            $name = ([string]$role.NetworkOSPath) -replace '^\\\\', ''
            if ($SiteSystemServerName -and -not ($SiteSystemServerName -contains $name)) {
                continue
            }
            $props = @{}
            foreach ($prop in $role.Props) {
                $props[$prop.PropertyName] = $prop
            }
            [pscustomobject]@{
                Kind                  = 'Role'
                SiteCode              = $code
                ServerName            = [string]$role.NetworkOSPath
                RoleName              = [string]$role.RoleName
                UseProxy              = $props['UseProxy'].Value
                ProxyName             = $props['ProxyName'].Value2
                ProxyServerPort       = $props['ProxyServerPort'].Value
                ProxyUserName         = $props['ProxyUserName'].Value2
                AnonymousProxyAccess  = $props['AnonymousProxyAccess'].Value
                UseProxyForADR        = $props['UseProxyForADR'].Value
                IsCloud               = $props['IsCloud'].Value
                ConnectedCacheEnabled = $props['ConnectedCacheEnabled'].Value
            }
        }
        $components = @()
        try {
            $components = @(Get-CMSoftwareUpdatePointComponent -SiteCode $code)
        } catch {
            $components = @()
        }
        foreach ($component in $components) {
            $props = @{}
            foreach ($prop in $component.Props) {
                $props[$prop.PropertyName] = $prop
            }
            [pscustomobject]@{
                Kind                 = 'SupComponent'
                SiteCode             = $code
                DefaultUseParentWSUS = $props['DefaultUseParentWSUS'].Value
                ParentWSUS           = $props['ParentWSUS'].Value2
            }
        }
        foreach ($account in Get-CMAccount -SiteCode $code) {
            [pscustomobject]@{
                Kind     = 'Account'
                SiteCode = $code
                UserName = [string]$account.UserName
            }
        }
    }
}
