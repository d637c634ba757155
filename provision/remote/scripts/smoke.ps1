# provision-op: smoke v1
# An isolated MicroSIP in a folder of its own, started minimized with its own ini, driven
# through its control commands (one switch per launch), then closed and removed. The
# user's own MicroSIP and ini are never touched. Every wait is bounded. The folder is new,
# in C:\ProgramData\provision, for Administrators and SYSTEM only: this copy of MicroSIP
# runs as the WinRM administrator, and a DLL beside it would run with it.

function Invoke-Smoke {
    param($Request)
    $steps = New-Object System.Collections.ArrayList
    $exe = Get-ExeInfo -Path $Request.exe
    $instance = $null
    $testExe = $null
    $folder = $null  # the test folder, once made by this request: only that is ever removed
    try {
        if (-not $exe.exists) {
            Add-Step -Steps $steps -Name 'locate' -Status 'fail' -Reason 'microsip.exe not found'
            return
        }
        Add-Step -Steps $steps -Name 'locate' -Status 'pass'
        try {
            $folder = New-SmokeFolder -Path $Request.folder
        } catch {
            Add-Step -Steps $steps -Name 'prepare' -Status 'fail' -Reason (Get-ErrorText $_)
            return
        }
        $ini = Join-Path $folder 'provision-smoke.ini'
        if ($Request.method -eq 'copy') {
            # A copy named for its ini: provision-smoke.exe reads provision-smoke.ini beside it.
            $testExe = Join-Path $folder 'provision-smoke.exe'
            Copy-Item -LiteralPath $Request.exe -Destination $testExe
            $launch = '/minimized'
        } else {
            $testExe = $Request.exe
            $launch = '/i:' + $ini
        }
        $log = Join-Path $folder 'provision-smoke_log.txt'
        [System.IO.File]::WriteAllBytes($ini, [Convert]::FromBase64String($Request.ini_b64))
        Add-Step -Steps $steps -Name 'prepare' -Status 'pass'

        $clock = [System.Diagnostics.Stopwatch]::StartNew()
        $instance = Start-Process -FilePath $testExe -ArgumentList $launch -PassThru
        $offset = [long]0
        $seen = Wait-LogLine -Path $log -Offset ([ref]$offset) -Patterns $Request.ready_patterns -Process $instance -TimeoutMs $Request.ready_ms
        Add-Step -Steps $steps -Name 'start' -Status 'done' -Line $seen.line -Alive $seen.alive -Ms $clock.ElapsedMilliseconds
        if ($null -eq $seen.line) {
            return
        }
        foreach ($command in $Request.commands) {
            $clock = [System.Diagnostics.Stopwatch]::StartNew()
            $launcher = Start-Process -FilePath $testExe -ArgumentList $command.argument -PassThru
            if (-not $launcher.WaitForExit($Request.step_ms)) {
                Stop-Process -Id $launcher.Id -Force -ErrorAction SilentlyContinue
            }
            if ($command.exits) {
                $gone = $instance.WaitForExit($Request.step_ms)
                Add-Step -Steps $steps -Name $command.name -Status 'done' -Alive (-not $gone) -Ms $clock.ElapsedMilliseconds
                continue
            }
            if ($null -eq $command.expect) {
                # Nothing to look for in the log: give it a moment, then check it is still alive.
                Start-Sleep -Milliseconds $Request.settle_ms
                $instance.Refresh()
                Add-Step -Steps $steps -Name $command.name -Status 'done' -Alive (-not $instance.HasExited) -Ms $clock.ElapsedMilliseconds
                if ($instance.HasExited) {
                    return
                }
                continue
            }
            $seen = Wait-LogLine -Path $log -Offset ([ref]$offset) -Patterns $command.expect -Process $instance -TimeoutMs $Request.step_ms
            Add-Step -Steps $steps -Name $command.name -Status 'done' -Line $seen.line -Alive $seen.alive -Ms $clock.ElapsedMilliseconds
            if (-not $seen.alive) {
                return
            }
        }
    } catch {
        Add-Step -Steps $steps -Name 'error' -Status 'fail' -Reason $_.Exception.Message
    } finally {
        $cleanup = Remove-SmokeCopy -Instance $instance -TestExe $testExe -Folder $folder -Method $Request.method
        Send-Reply @{ ok = $true; exe = [hashtable]$exe; method = [string]$Request.method; steps = $steps; cleanup = [hashtable]$cleanup }
    }
}

function New-SmokeFolder {
    # The test's folder: new, directly in C:\ProgramData\provision, both for Administrators and
    # SYSTEM only (Get-TrustedFolder). A folder of that name already there is not used.
    param([string]$Path)
    $root = Get-TrustedFolder -Path (Get-ProvisionRoot)
    if (-not [string]::Equals([System.IO.Path]::GetDirectoryName($Path), $root, [System.StringComparison]::OrdinalIgnoreCase)) {
        throw ('the test folder ' + $Path + ' is not in ' + $root)
    }
    if ([System.IO.Directory]::Exists($Path)) {
        throw ('the test folder ' + $Path + ' is there already: not used')
    }
    return Get-TrustedFolder -Path $Path
}

function Add-Step {
    # Reason and Line stay $null when not given ([string] parameters would make them '').
    param($Steps, [string]$Name, [string]$Status, $Reason, $Line, $Alive, [long]$Ms)
    $step = @{ name = $Name; status = $Status; reason = (ConvertTo-Text $Reason); line = (ConvertTo-Text $Line) }
    $step.alive = if ($null -eq $Alive) { $null } else { [bool]$Alive }
    $step.ms = $Ms
    [void]$Steps.Add($step)
}

function Wait-LogLine {
    # Polls the log (shared read: MicroSIP keeps it open) for a line after Offset that
    # matches a pattern, until found, the process ends, or TimeoutMs. Moves Offset on.
    param([string]$Path, [ref]$Offset, $Patterns, $Process, [int]$TimeoutMs)
    $deadline = (Get-Date).AddMilliseconds($TimeoutMs)
    $from = $Offset.Value
    while ($true) {
        $Process.Refresh()
        $alive = -not $Process.HasExited
        if (Test-Path -LiteralPath $Path -PathType Leaf) {
            $stream = New-Object System.IO.FileStream($Path, 'Open', 'Read', 'ReadWrite')
            try {
                $stream.Position = [Math]::Min($from, $stream.Length)
                $text = (New-Object System.IO.StreamReader($stream)).ReadToEnd()
                $Offset.Value = $stream.Length
            } finally {
                $stream.Dispose()
            }
            $found = @($text -split "`r?`n" | Select-String -Pattern $Patterns)
            if ($found.Count -gt 0) {
                return @{ line = $found[0].Line; alive = $alive }
            }
        }
        if (-not $alive -or (Get-Date) -gt $deadline) {
            return @{ line = $null; alive = $alive }
        }
        Start-Sleep -Milliseconds 200
    }
}

function Remove-SmokeCopy {
    # Stops what the smoke test started and deletes its folder, whatever happened before.
    param($Instance, [string]$TestExe, [string]$Folder, [string]$Method)
    $result = @{ ok = $true; reason = $null }
    try {
        if ($null -ne $Instance) {
            $Instance.Refresh()
            if (-not $Instance.HasExited) {
                Stop-Process -Id $Instance.Id -Force -ErrorAction SilentlyContinue
                $Instance.WaitForExit(5000) | Out-Null
            }
        }
        if ($Method -eq 'copy' -and $TestExe) {
            Get-Process | Where-Object { $_.Path -eq $TestExe } | Stop-Process -Force -ErrorAction SilentlyContinue
        }
        if ($Folder -and (Test-Path -LiteralPath $Folder)) {
            Remove-Item -LiteralPath $Folder -Recurse -Force
        }
    } catch {
        $result.ok = $false
        $result.reason = [string]$_.Exception.Message
    }
    return $result
}

function Invoke-SmokeCleanup {
    # After a smoke run that did not answer: its shell is gone (and with it the test
    # instance); remove what is left of its folder, if it is one the agent made (in its
    # folder, and trusted): nothing anybody else could have changed is walked through.
    param($Request)
    $testExe = Join-Path $Request.folder 'provision-smoke.exe'
    $root = Get-ProvisionRoot
    $problem = $null
    if (-not [string]::Equals([System.IO.Path]::GetDirectoryName($Request.folder), $root, [System.StringComparison]::OrdinalIgnoreCase)) {
        $problem = 'the test folder ' + $Request.folder + ' is not in ' + $root
    } elseif ([System.IO.Directory]::Exists($Request.folder)) {
        $problem = Get-FolderProblem -Path $Request.folder
        if ($problem) {
            $problem = Get-DistrustText -Path $Request.folder -Problem $problem
        }
    }
    if ($problem) {
        $cleanup = @{ ok = $false; reason = $problem }
    } else {
        $cleanup = Remove-SmokeCopy -Instance $null -TestExe $testExe -Folder $Request.folder -Method 'copy'
    }
    Send-Reply @{ ok = $true; cleanup = $cleanup }
}
