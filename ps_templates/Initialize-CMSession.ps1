# Prepares a fresh runspace for the ConfigurationManager cmdlets, once per session (or once per
# process over WinRS): imports the module shipped with the console, checks where the SMS
# Provider is, makes sure the site drive exists and moves onto it (configmgr-cmdlets.md §1).
# Known problems are thrown as 'cmproxy:<Code>: <detail>' so the SDK can raise a precise
# exception: ConsoleNotInstalled, ModuleBlocked (execution policy / untrusted publisher),
# DotNetTooOld, DriveClash, SiteCodeUnknown, AccessDenied, ProviderElsewhere (a second hop),
# SiteDriveMissing. The output says which path was taken (ModuleSource, DriveSource, …).
[CmdletBinding()]
param(
    [string]$SiteCode,
    [string]$ProviderMachineName,
    [string]$ModulePath
)
$ErrorActionPreference = 'Stop'

$module = Get-Module -Name ConfigurationManager
$moduleSource = 'AlreadyLoaded'
if (-not $module) {
    $candidates = @()
    if ($ModulePath) {
        $candidates += [pscustomobject]@{ Source = 'ModulePath'; Name = $ModulePath }
    }
    if ($env:SMS_ADMIN_UI_PATH) {
        $bin = Split-Path -Path $env:SMS_ADMIN_UI_PATH -Parent
        $candidates += [pscustomobject]@{
            Source = 'SMS_ADMIN_UI_PATH'
            Name   = (Join-Path -Path $bin -ChildPath 'ConfigurationManager.psd1')
        }
    }
    $candidates += [pscustomobject]@{ Source = 'PSModulePath'; Name = 'ConfigurationManager' }
    $lastError = ''
    foreach ($candidate in $candidates) {
        if (-not $module) {
            try {
                Import-Module -Name $candidate.Name -Global
                $module = Get-Module -Name ConfigurationManager
                $moduleSource = $candidate.Source
            } catch {
                $errorId = [string]$_.FullyQualifiedErrorId
                $text = [string]$_.Exception.Message
                if ($errorId -like 'DriveAlreadyExists*') {
                    throw ('cmproxy:DriveClash: importing the ConfigurationManager module failed because a drive named like the site code already exists: ' + $text)
                }
                if ($errorId -like 'UnauthorizedAccess*') {
                    throw ('cmproxy:ModuleBlocked: ' + [string](Get-ExecutionPolicy) + ': ' + $text)
                }
                if ($errorId -like 'Modules_InsufficientDotNetFrameworkVersion*') {
                    throw ('cmproxy:DotNetTooOld: ' + $text)
                }
                $lastError = $candidate.Source + ': ' + $text
            }
        }
    }
    if (-not $module) {
        throw ('cmproxy:ConsoleNotInstalled: the ConfigurationManager module was not found (no SMS_ADMIN_UI_PATH and Import-Module ConfigurationManager failed; last: ' + $lastError + ')')
    }
}

# Where the SMS Provider is: SMS_ProviderLocation on a site server (root\sms exists only there).
# Asked only when not given: later runspaces and processes get what the first bootstrap found.
$computer = [string]$env:COMPUTERNAME
$providerMachine = ''
if (-not $ProviderMachineName) {
    try {
        $locations = @(Get-CimInstance -Namespace 'root\sms' -ClassName SMS_ProviderLocation)
        foreach ($location in $locations) {
            if ($location.ProviderForLocalSite -and -not $providerMachine) {
                $providerMachine = [string]$location.Machine
            }
        }
    } catch {
        $errorId = [string]$_.FullyQualifiedErrorId
        if ([string]$_.CategoryInfo.Category -eq 'PermissionDenied' -or $errorId -like '*0x80041003*' -or $errorId -like '*0x80070005*') {
            throw ('cmproxy:AccessDenied: ' + $computer + ': root\sms refused the account: ' + [string]$_.Exception.Message)
        }
    }
}
$target = $ProviderMachineName
if (-not $target) {
    $target = $providerMachine
}
$providerIsLocal = $true
if ($target) {
    $short = ($target.Split('.')[0]).ToLower()
    $providerIsLocal = ($short -eq $computer.ToLower() -or $short -eq 'localhost')
}
if (-not $providerIsLocal) {
    # The site drive would reach the provider from this machine: a second hop. Probe it once.
    try {
        $null = Get-CimInstance -ComputerName $target -Namespace 'root\sms' -ClassName SMS_ProviderLocation
    } catch {
        $errorId = [string]$_.FullyQualifiedErrorId
        if ([string]$_.CategoryInfo.Category -eq 'PermissionDenied' -or $errorId -like '*0x80070005*') {
            throw ('cmproxy:ProviderElsewhere: ' + $target + ': the SMS Provider is not on ' + $computer + ' and ' + $computer + ' cannot reach it with these credentials: ' + [string]$_.Exception.Message)
        }
    }
}

if (-not $SiteCode) {
    $siteDrives = @(Get-PSDrive -PSProvider CMSite)
    if ($siteDrives.Count -ne 1) {
        $driveNames = @($siteDrives | ForEach-Object { [string]$_.Name }) -join ', '
        throw ('cmproxy:SiteCodeUnknown: found ' + $siteDrives.Count + ' CMSite drives: ' + $driveNames)
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
    $root = $target
    if (-not $root) {
        $root = $computer
    }
    # The provider name changed in module 5.2111: 'AdminUI.PS.Provider\CMSite' stopped working.
    $lastError = ''
    $denied = $false
    foreach ($provider in @('CMSite', 'AdminUI.PS\CMSite', 'AdminUI.PS.Provider\CMSite')) {
        if (-not $created) {
            try {
                $drive = New-PSDrive -Name $SiteCode -PSProvider $provider -Root $root -Scope Global
                $created = $true
            } catch {
                # Keep the provider's own error, not a later "provider not found" for an
                # older provider name.
                if (-not $lastError -or -not ([string]$_.FullyQualifiedErrorId -like 'ProviderNotFound*')) {
                    $lastError = [string]$_.Exception.Message
                }
                if ($lastError -like '*Access is denied*' -or $lastError -like '*E_ACCESSDENIED*') {
                    $denied = $true
                }
            }
        }
    }
    if (-not $created -and $denied) {
        throw ('cmproxy:AccessDenied: ' + $root + ': the SMS Provider refused the ' + $SiteCode + ': drive: ' + $lastError)
    }
    if (-not $created) {
        throw ('cmproxy:SiteDriveMissing: could not create the ' + $SiteCode + ': drive on ' + $root + ': ' + $lastError)
    }
}
Set-Location -Path ($SiteCode + ':\')

$driveSource = 'Existing'
if ($created) {
    $driveSource = 'Created'
}
[pscustomobject]@{
    SiteCode        = $SiteCode
    ModuleVersion   = [string]$module.Version
    ModulePath      = [string]$module.Path
    ModuleSource    = $moduleSource
    DriveCreated    = $created
    DriveSource     = $driveSource
    DriveRoot       = [string]$drive.Root
    ComputerName    = $computer
    ProviderMachine = $target
    ProviderIsLocal = $providerIsLocal
    ExecutionPolicy = [string](Get-ExecutionPolicy)
}
