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

# The prelude's Register-CMProxyAccount: New-CMAccount, then read back with Get-CMAccount.
$account = Register-CMProxyAccount -SiteCode $SiteCode -UserName $UserName -Password $Password
[pscustomobject]@{
    Kind     = 'Account'
    SiteCode = $SiteCode
    UserName = [string]$account.UserName
}
