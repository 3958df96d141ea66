# Reads the last lines of a ConfigMgr log on a site server through the SMS_<SiteCode> share,
# e.g. ruleengine.log for the ADR download failures with error 12007 (R12/R13).
# A missing or unreadable log yields no lines instead of failing the whole diagnosis.
[CmdletBinding()]
param(
    [string]$ServerName,
    [string]$SiteCode,
    [string]$LogName,
    [int]$Tail
)
$ErrorActionPreference = 'Stop'

$path = "\\$ServerName\SMS_$SiteCode\Logs\$LogName"
$lines = @()
try {
    $lines = @(Get-Content -Path $path -Tail $Tail)
} catch {
    $lines = @()
}
foreach ($line in $lines) {
    [pscustomobject]@{ Line = [string]$line }
}
