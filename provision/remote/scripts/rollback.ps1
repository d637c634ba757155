# provision-op: rollback v1
# For each user: close their MicroSIP, put the newest backup back, start MicroSIP again
# if it was running.

function Invoke-Rollback {
    param($Request)
    $users = New-Object System.Collections.ArrayList
    foreach ($user in $Request.users) {
        [void]$users.Add([hashtable](Restore-UserIni -User $user -Request $Request))
    }
    Send-Reply @{ ok = $true; users = $users }
}

function Restore-UserIni {
    param($User, $Request)
    $result = @{ name = $User.name; status = 'failed' }
    $backups = @(Get-Backups -Path $User.ini_path)
    if ($backups.Count -eq 0) {
        $result.status = 'no-backup'
        return $result
    }
    $exe = Get-UserExe -Name $User.name -Install $Request.install
    $closed = Close-MicroSip -Name $User.name -Exe $exe -WaitMs $Request.exit_wait_ms
    if (-not $closed.ok) {
        $result.status = 'busy'
        $result.reason = [string]$closed.reason
        return $result
    }
    try {
        $newest = $backups[-1].FullName
        $content = [System.IO.File]::ReadAllBytes($newest)
        Write-IniFile -Path $User.ini_path -Content $content -Digest (Get-Sha256 -Path $newest)
        $result.status = 'restored'
        $result.backup = [string]$newest
    } catch {
        $result.reason = [string]$_.Exception.Message
    }
    if ($closed.closed) {
        $task = Start-InUserSession -Name $User.name -Exe $exe -Argument '/minimized' -Verb 'start'
        try {
            [void](Wait-MicroSipStarted -Name $User.name -Exe $exe -WaitMs $Request.exit_wait_ms)
        } finally {
            Remove-UserTask -Task $task
        }
        $result.restarted = $true
    }
    return $result
}
