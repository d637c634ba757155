# provision-op: apply v1
# For each user: close their MicroSIP if asked, check the ini is still what discover
# read (MicroSIP rewrites it on exit), back it up, write the new one atomically, verify,
# and start MicroSIP again if it was running. A user whose MicroSIP cannot be closed is
# "busy" and not written.

function Invoke-Apply {
    param($Request)
    $users = New-Object System.Collections.ArrayList
    foreach ($user in $Request.users) {
        [void]$users.Add([hashtable](Update-UserIni -User $user -Request $Request))
    }
    Send-Reply @{ ok = $true; users = $users }
}

function Update-UserIni {
    param($User, $Request)
    $result = @{ name = $User.name; status = 'failed' }
    $closed = @{ ok = $true; closed = $false }
    $exe = Get-UserExe -Name $User.name -Install $Request.install
    try {
        if ($User.close) {
            $closed = Close-MicroSip -Name $User.name -Exe $exe -WaitMs $Request.exit_wait_ms
            if (-not $closed.ok) {
                $result.status = 'busy'
                $result.reason = $closed.reason
                return $result
            }
        }
        $current = $null
        if (Test-Path -LiteralPath $User.ini_path) {
            $current = Get-Sha256 -Path $User.ini_path
        }
        if ($current -ne $User.expected_sha256 -and $current -ne $User.new_sha256) {
            # Changed since discover (MicroSIP saved on exit): send it back for a new merge.
            $result.status = 'reread'
            $result.sha256 = $current
            $result.closed = [bool]$closed.closed
            if ($null -ne $current) {
                $result.content_b64 = [Convert]::ToBase64String([System.IO.File]::ReadAllBytes($User.ini_path))
            }
            return $result
        }
        if ($current -ne $User.new_sha256) {
            $result.backup = ConvertTo-Text (Save-Backup -Path $User.ini_path -Keep $Request.backups)
            $content = [Convert]::FromBase64String($User.content_b64)
            Write-IniFile -Path $User.ini_path -Content $content -Digest $User.new_sha256
        }
        $result.status = 'written'
    } catch {
        $result.reason = [string]$_.Exception.Message
    }
    if ($User.restart -or $closed.closed) {
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
