# Reads a whole hierarchy (or the given sites or servers) in one pipeline: sites, every role row of every
# site system server with its proxy props, the SUP component's sync source and the accounts.
# Live IResultObjects are projected into flat objects (roles by the prelude's
# ConvertTo-CMProxyRow): nested Props do not survive remoting.
# With -SiteSystemServerName alone, each named server's roles are fetched by name (one Get per
# server) instead of listing every role of every site: reading a few servers stays cheap. With
# -BySite (many servers of the -SiteCode sites), each of those sites' roles is listed once and
# the named servers' rows are kept. -Shard i -Shards n (a client reading the whole hierarchy in n
# pipelines at once) reads the sites at positions i, i+n, … of the site codes in sorted order;
# only shard 0 returns the sites themselves.
# The lists are [object[]] (they arrive as deserialised arrays; any element is used as a string).
[CmdletBinding()]
param(
    [object[]]$SiteCode,
    [object[]]$SiteSystemServerName,
    [switch]$BySite,
    [int]$Shard = 0,
    [int]$Shards = 1
)
$ErrorActionPreference = 'Stop'

$sites = @(Get-CMSite)
if ($Shard -eq 0) {
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
}
# This shard's sites: by position among the sorted site codes (the same in every shard): how many
# codes sort before it.
$position = @{}
foreach ($site in $sites) {
    $code = ([string]$site.SiteCode).ToUpper()
    $before = 0
    foreach ($other in $sites) {
        if (([string]$other.SiteCode).ToUpper() -lt $code) {
            $before = $before + 1
        }
    }
    $position[$code] = $before
}
# The sites whose roles, SUP component and accounts are read.
$wanted = @()
foreach ($site in $sites) {
    $code = [string]$site.SiteCode
    if (($position[$code.ToUpper()] % $Shards) -ne $Shard) {
        continue
    }
    if ((-not $SiteCode) -or ($SiteCode -contains $code)) {
        $wanted += $code
    }
}
if ($SiteSystemServerName -and $BySite) {
    $asked = @{}
    foreach ($name in $SiteSystemServerName) {
        $asked[('\\' + [string]$name).ToLower()] = $true
    }
    $roles = @(foreach ($code in $wanted) {
        foreach ($role in Get-CMSiteRole -SiteCode $code) {
            if ($asked.ContainsKey(([string]$role.NetworkOSPath).ToLower())) {
                $role
            }
        }
    })
} elseif ($SiteSystemServerName) {
    $roles = @(foreach ($name in $SiteSystemServerName) {
        Get-CMSiteRole -SiteSystemServerName ([string]$name) -AllSite
    })
} else {
    $roles = @(foreach ($code in $wanted) {
        Get-CMSiteRole -SiteCode $code
    })
}
$withServers = @()
foreach ($role in $roles) {
    $code = [string]$role.SiteCode
    if (-not ($wanted -contains $code)) {
        continue
    }
    if (-not ($withServers -contains $code)) {
        $withServers += $code
    }
    # Each role's own fields only (the prelude's ConvertTo-CMProxyRow; the reader takes a
    # missing field as not set).
    ConvertTo-CMProxyRow -Role $role -SiteCode $code
}
foreach ($code in $withServers) {
    $components = @()
    try {
        $components = @(Get-CMSoftwareUpdatePointComponent -SiteCode $code)
    } catch {
        $components = @()
    }
    foreach ($component in $components) {
        $props = Get-CMProxyProps -Object $component
        [pscustomobject]@{
            Kind                 = 'SupComponent'
            SiteCode             = $code
            DefaultUseParentWSUS = $props['DefaultUseParentWSUS'].Value
            ParentWSUS           = $props['ParentWSUS'].Value2
        }
    }
}
foreach ($code in $wanted) {
    foreach ($account in Get-CMAccount -SiteCode $code) {
        [pscustomobject]@{
            Kind     = 'Account'
            SiteCode = $code
            UserName = [string]$account.UserName
        }
    }
}
