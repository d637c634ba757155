# provision-op: rollback v1
# For each user with a backup: close their MicroSIP (all together, as apply does), put the
# backup back (the one asked for, a run's, or else the newest), and start MicroSIP again for
# everyone it was closed for. One user's failure is that user's result.

function Invoke-Rollback {
    param($Request)
    $clock = [System.Diagnostics.Stopwatch]::StartNew()
    $results = @{}
    $exes = @{}
    $newest = @{}
    $toClose = New-Object System.Collections.ArrayList
    $users = New-Object System.Collections.ArrayList
    foreach ($user in $Request.users) {
        $result = @{ name = [string]$user.name; status = 'failed'; restarted = $false }
        $results[$user.name] = $result
        [void]$users.Add($result)
        try {
            $backups = @(Get-Backups -Path $user.ini_path)
            if ($user.backup) {
                # A backup a run made: only ever one of this ini's.
                if (-not (Test-BackupOf -Backup $user.backup -Path $user.ini_path)) {
                    throw 'not a backup of this ini'
                }
                if (-not [System.IO.File]::Exists($user.backup)) {
                    $result.status = 'no-backup'
                    $result.reason = 'that backup is gone (only the newest are kept)'
                    continue
                }
                $newest[$user.name] = [string]$user.backup
            } elseif ($backups.Count -eq 0) {
                $result.status = 'no-backup'
                continue
            } else {
                $newest[$user.name] = [string]$backups[-1].FullName
            }
            $exes[$user.name] = Get-UserExe -Name $user.name -Install $Request.install
            [void]$toClose.Add([string]$user.name)
        } catch {
            Set-Failure -Result $result -Reason (Get-ErrorText $_)
        }
    }
    $closing = New-Object System.Collections.ArrayList
    $closed = @()
    $finished = $false
    try {
        $closed = @(Close-Users -Names $toClose -Exes $exes -Results $results -ExitWaitMs $Request.exit_wait_ms -StartWaitMs $Request.start_wait_ms -BudgetMs $Request.budget_ms -Clock $clock -Closing $closing)
        foreach ($user in $Request.users) {
            $result = $results[$user.name]
            if (-not $newest.ContainsKey($user.name) -or $result.status -ne 'failed' -or $result.reason) {
                continue
            }
            try {
                $content = Read-SharedBytes -Path $newest[$user.name]
                Write-IniFile -Path $user.ini_path -Content $content -Digest (Get-Sha256 -Bytes $content)
                $result.status = 'restored'
                $result.backup = $newest[$user.name]
            } catch {
                Set-Failure -Result $result -Reason ('restore failed: ' + (Get-ErrorText $_))
            }
        }
        $finished = $true
    } finally {
        if (-not $finished) {
            # Stopped half-way: every MicroSIP this request may have closed is started again.
            $closed = $closing.ToArray()
        }
        Start-Users -Names $closed -Exes $exes -Results $results -WaitMs $Request.start_wait_ms
    }
    Send-Reply @{ ok = $true; users = $users }
}
