# Reads the last lines of a ConfigMgr log on a site server through the SMS_<SiteCode> share,
# e.g. ruleengine.log for the ADR download failures with error 12007 (R12/R13).
# The session's location is the site drive, so a bare UNC path would go to the CMSite provider
# and never reach the share (about_Providers): the path is qualified with FileSystem::.
# A log that cannot be read yields one record that says why (Unreadable, Reason: NotFound,
# AccessDenied or Error; SecondHop when the share is on another machine than the session's).
[CmdletBinding()]
param(
    [string]$ServerName,
    [string]$SiteCode,
    [string]$LogName,
    [int]$Tail
)
$ErrorActionPreference = 'Stop'

$path = "FileSystem::\\$ServerName\SMS_$SiteCode\Logs\$LogName"
$lines = @()
try {
    $lines = @(Get-Content -Path $path -Tail $Tail)
} catch {
    $errorId = [string]$_.FullyQualifiedErrorId
    $category = [string]$_.CategoryInfo.Category
    $reason = 'Error'
    if ($errorId -like 'PathNotFound*' -or $errorId -like 'ItemNotFound*') {
        $reason = 'NotFound'
    } elseif ($category -eq 'PermissionDenied' -or $errorId -like '*UnauthorizedAccess*') {
        $reason = 'AccessDenied'
    }
    $here = ([string]$env:COMPUTERNAME).ToLower()
    $there = ($ServerName.Split('.')[0]).ToLower()
    [pscustomobject]@{
        Unreadable = $true
        Server     = $ServerName
        Log        = $LogName
        Path       = $path
        Reason     = $reason
        SecondHop  = ($there -ne $here -and $there -ne 'localhost')
        ErrorId    = $errorId
        Message    = [string]$_.Exception.Message
    }
    return
}
foreach ($line in $lines) {
    [pscustomobject]@{ Line = [string]$line }
}
