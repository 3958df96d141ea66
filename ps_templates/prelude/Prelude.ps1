# cmproxy's prelude: the functions templates share, sent by both transports ahead of every
# template (PSRP: a script dot-sourced before the template in the same pipeline; WinRS: run by
# the bootstrap before its steps), so a template calls them without a round trip of its own.
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
# and Connected Cache flags of 'SMS Distribution Point'; of any other role its name alone.
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
    if ($roleName -eq 'SMS Site System') {
        $props = Get-CMProxyProps -Object $Role
        $row['UseProxy'] = $props['UseProxy'].Value
        $row['ProxyName'] = $props['ProxyName'].Value2
        $row['ProxyServerPort'] = $props['ProxyServerPort'].Value
        $row['ProxyUserName'] = $props['ProxyUserName'].Value2
        $row['AnonymousProxyAccess'] = $props['AnonymousProxyAccess'].Value
    } elseif ($roleName -eq 'SMS Software Update Point') {
        $props = Get-CMProxyProps -Object $Role
        $row['UseProxy'] = $props['UseProxy'].Value
        $row['UseProxyForADR'] = $props['UseProxyForADR'].Value
    } elseif ($roleName -eq 'SMS Distribution Point') {
        $props = Get-CMProxyProps -Object $Role
        $row['IsCloud'] = $props['IsCloud'].Value
        $row['ConnectedCacheEnabled'] = $props['ConnectedCacheEnabled'].Value
    }
    if ($null -ne $Sup) {
        $row['Sup'] = ConvertTo-CMProxyRow -Role $Sup -SiteCode $SiteCode
    }
    return [pscustomobject]$row
}
