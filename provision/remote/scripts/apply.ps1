# provision-op: apply v1
# Writes new inis. Every user whose MicroSIP runs is closed first, all together (one wait),
# if closing and starting it again fits in the time this host was given; then each user's
# ini is checked against what discover read (MicroSIP rewrites it on exit), backed up,
# written atomically and verified, each user on their own; then, whatever happened, MicroSIP
# is started again for every user it was closed for, and seen running. A user whose ini
# changed meanwhile is sent back ('reread') for a new merge; their MicroSIP stays closed for
# the next request, which asks for it to be started (restart) and is always obeyed.

function Invoke-Apply {
    param($Request)
    $clock = [System.Diagnostics.Stopwatch]::StartNew()
    $results = @{}
    $exes = @{}
    $toClose = New-Object System.Collections.ArrayList
    $users = New-Object System.Collections.ArrayList
    foreach ($user in $Request.users) {
        $result = @{ name = [string]$user.name; status = 'failed'; restarted = $false }
        $results[$user.name] = $result
        [void]$users.Add($result)
        try {
            $exes[$user.name] = Get-UserExe -Name $user.name -Install $Request.install
            if ($user.close) {
                [void]$toClose.Add([string]$user.name)
            }
        } catch {
            Set-Failure -Result $result -Reason (Get-ErrorText $_)
        }
    }
    $closing = New-Object System.Collections.ArrayList
    $restart = New-Object System.Collections.ArrayList
    $finished = $false
    try {
        $closed = @(Close-Users -Names $toClose -Exes $exes -Results $results -ExitWaitMs $Request.exit_wait_ms -StartWaitMs $Request.start_wait_ms -BudgetMs $Request.budget_ms -Clock $clock -Closing $closing)
        foreach ($user in $Request.users) {
            $result = $results[$user.name]
            if (-not $result.reason) {
                # Neither busy nor failed so far: MicroSIP is closed, or was not running.
                try {
                    Update-UserIni -User $user -Request $Request -Result $result -Closed ($closed -contains $user.name)
                } catch {
                    Set-Failure -Result $result -Reason ('write failed: ' + (Get-ErrorText $_))
                }
            }
            $again = $user.restart -or $closed -contains $user.name
            if ($again -and ($user.restart -or $result.status -ne 'reread')) {
                [void]$restart.Add([string]$user.name)
            }
        }
        $finished = $true
    } finally {
        if (-not $finished) {
            # Stopped half-way (here or in Close-Users): every MicroSIP this request may have
            # closed, and every one it was asked to start, is started again.
            foreach ($user in $Request.users) {
                $name = [string]$user.name
                if (($user.restart -or $closing -contains $name) -and -not ($restart -contains $name)) {
                    [void]$restart.Add($name)
                }
            }
        }
        Start-Users -Names $restart -Exes $exes -Results $results -WaitMs $Request.start_wait_ms
    }
    Send-Reply @{ ok = $true; users = $users }
}

function Update-UserIni {
    param($User, $Request, [hashtable]$Result, [bool]$Closed)
    $path = [string]$User.ini_path
    $current = $null
    $content = $null
    if ([System.IO.File]::Exists($path)) {
        $content = Read-SharedBytes -Path $path  # read once: what is hashed is what is sent back
        $current = Get-Sha256 -Bytes $content
    }
    if ($current -ne $User.expected_sha256 -and $current -ne $User.new_sha256) {
        # Changed since discover (MicroSIP saved on exit): send it back for a new merge.
        $Result.status = 'reread'
        $Result.sha256 = ConvertTo-Text $current
        $Result.closed = $Closed
        if ($null -ne $content) {
            $Result.content_b64 = [Convert]::ToBase64String($content)
        }
        return
    }
    if ($current -ne $User.new_sha256) {
        $Result.backup = ConvertTo-Text (Save-Backup -Path $path -Keep $Request.backups -Run $Request.run)
        Write-IniFile -Path $path -Content ([Convert]::FromBase64String($User.content_b64)) -Digest $User.new_sha256
    }
    $Result.status = 'written'
}
