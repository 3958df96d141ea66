# Registers an account (the site system proxy server account) with New-CMAccount. The password
# arrives as a SecureString parameter and is never part of any script text.
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string]$SiteCode,
    [Parameter(Mandatory = $true)]
    [string]$UserName,
    [Parameter(Mandatory = $true)]
    [securestring]$Password
)
$ErrorActionPreference = 'Stop'

$created = New-CMAccount -UserName $UserName -Password $Password -SiteCode $SiteCode
$account = Get-CMAccount -UserName $UserName -SiteCode $SiteCode
if (-not $account) {
    throw ('cmproxy:AccountNotFound: New-CMAccount did not register ' + $UserName + ' at site ' + $SiteCode)
}
[pscustomobject]@{
    Kind     = 'Account'
    SiteCode = $SiteCode
    UserName = [string]$account.UserName
}
