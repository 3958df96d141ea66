# Prepares a fresh runspace for the ConfigurationManager cmdlets, once per session (or once per
# process over WinRS): imports the module shipped with the console, makes sure the site drive
# exists and moves onto it (configmgr-cmdlets.md §1). Known problems are thrown as
# 'cmproxy:<Code>: <what to do>' so the SDK can raise a precise exception.
[CmdletBinding()]
param(
    [string]$SiteCode,
    [string]$ProviderMachineName,
    [string]$ModulePath
)
$ErrorActionPreference = 'Stop'

$module = Get-Module -Name ConfigurationManager
if (-not $module) {
    $candidates = @()
    if ($ModulePath) {
        $candidates += $ModulePath
    }
    if ($env:SMS_ADMIN_UI_PATH) {
        $bin = Split-Path -Path $env:SMS_ADMIN_UI_PATH -Parent
        $candidates += Join-Path -Path $bin -ChildPath 'ConfigurationManager.psd1'
    }
    $candidates += 'ConfigurationManager'
    foreach ($candidate in $candidates) {
        if (-not $module) {
            try {
                Import-Module -Name $candidate -Global
                $module = Get-Module -Name ConfigurationManager
            } catch {
                if ([string]$_.FullyQualifiedErrorId -like 'DriveAlreadyExists*') {
                    throw ('cmproxy:DriveClash: importing the ConfigurationManager module failed because a drive named like the site code already exists: ' + [string]$_.Exception.Message)
                }
            }
        }
    }
    if (-not $module) {
        throw 'cmproxy:ConsoleNotInstalled: the ConfigurationManager module was not found (no SMS_ADMIN_UI_PATH and Import-Module ConfigurationManager failed)'
    }
}

if (-not $SiteCode) {
    $siteDrives = @(Get-PSDrive -PSProvider CMSite)
    if ($siteDrives.Count -ne 1) {
        throw ('cmproxy:SiteCodeUnknown: found ' + $siteDrives.Count + ' CMSite drives')
    }
    $SiteCode = $siteDrives[0].Name
}

$drive = $null
try {
    $drive = Get-PSDrive -Name $SiteCode
} catch {
    $drive = $null
}
# ProviderInfo renders as its full name, e.g. 'AdminUI.PS.Provider\CMSite'.
if ($drive -and -not (([string]$drive.Provider) -like '*CMSite')) {
    throw ('cmproxy:DriveClash: a drive named ' + $SiteCode + ' already exists with provider ' + [string]$drive.Provider)
}
$created = $false
if (-not $drive) {
    $root = $ProviderMachineName
    if (-not $root) {
        $root = $env:COMPUTERNAME
    }
    # The provider name changed in module 5.2111: 'AdminUI.PS.Provider\CMSite' stopped working.
    $lastError = ''
    foreach ($provider in @('CMSite', 'AdminUI.PS\CMSite', 'AdminUI.PS.Provider\CMSite')) {
        if (-not $created) {
            try {
                $drive = New-PSDrive -Name $SiteCode -PSProvider $provider -Root $root -Scope Global
                $created = $true
            } catch {
                $lastError = [string]$_.Exception.Message
            }
        }
    }
    if (-not $created) {
        throw ('cmproxy:SiteDriveMissing: could not create the ' + $SiteCode + ': drive on ' + $root + ': ' + $lastError)
    }
}
Set-Location -Path ($SiteCode + ':\')

[pscustomobject]@{
    SiteCode      = $SiteCode
    ModuleVersion = [string]$module.Version
    ModulePath    = [string]$module.Path
    DriveCreated  = $created
    DriveRoot     = [string]$drive.Root
}
