# provision-op: common v1
# Helpers shared by the operations. Every value from the controller arrives as JSON data
# on standard input, never pasted into code. JSON is read and written with .NET's
# JavaScriptSerializer, not ConvertFrom-Json/ConvertTo-Json: Module Logging (event 4103)
# records every cmdlet's parameters, and requests and replies carry inis with passwords.
# Reply values are cast to plain .NET types ([string], [bool], [long], [hashtable]) so
# the serializer never meets a PowerShell wrapper object.

Add-Type -AssemblyName System.Web.Extensions
$json = New-Object System.Web.Script.Serialization.JavaScriptSerializer
$json.MaxJsonLength = [int]::MaxValue

function Send-Reply {
    param([hashtable]$Reply)
    $stdout.WriteLine($json.Serialize($Reply))
}

function ConvertTo-Text {
    # A string, or $null, as a plain .NET value.
    param($Value)
    if ($null -eq $Value) {
        return $null
    }
    return [string]$Value
}

function Get-ProfilePath {
    # The user's profile folder, or $null if the account has never logged on here.
    param([string]$Name)
    try {
        $account = New-Object System.Security.Principal.NTAccount($Name)
        $sid = $account.Translate([System.Security.Principal.SecurityIdentifier]).Value
    } catch {
        return $null
    }
    $key = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList\' + $sid
    if (-not (Test-Path -LiteralPath $key)) {
        return $null
    }
    return (Get-ItemProperty -LiteralPath $key).ProfileImagePath
}

function Get-IniPath {
    # Installed MicroSIP: %APPDATA%\MicroSIP\microsip.ini of the user.
    # Portable MicroSIP: next to the exe, named after it (%USERPROFILE% expanded per user).
    param([string]$ProfilePath, $Install)
    if ($Install.mode -eq 'portable') {
        $exe = $Install.exe.Replace('%USERPROFILE%', $ProfilePath)
        return [System.IO.Path]::ChangeExtension($exe, '.ini')
    }
    return Join-Path $ProfilePath 'AppData\Roaming\MicroSIP\microsip.ini'
}

function Get-MicroSipExe {
    # The exe of the install the inventory declares, for this user (%USERPROFILE% expanded).
    param([string]$ProfilePath, $Install)
    if ($Install.exe) {
        return $Install.exe.Replace('%USERPROFILE%', $ProfilePath)
    }
    return 'C:\Program Files\MicroSIP\microsip.exe'
}

function Get-UserExe {
    # Get-MicroSipExe for a user by name; $null if they have no profile here.
    param([string]$Name, $Install)
    $profilePath = Get-ProfilePath -Name $Name
    if ($null -eq $profilePath) {
        return $null
    }
    return Get-MicroSipExe -ProfilePath $profilePath -Install $Install
}

function Get-UserIni {
    # One user's ini: where it is, its content and digest, whether their MicroSIP runs.
    # Also gives the profile folder, or status 'no-profile' for a user who never logged on.
    param([string]$Name, $Install)
    $entry = @{ name = $Name; status = 'ok' }
    $profilePath = Get-ProfilePath -Name $Name
    if ($null -eq $profilePath) {
        $entry.status = 'no-profile'
        return $entry
    }
    $entry.profile_path = [string]$profilePath
    $ini = Get-IniPath -ProfilePath $profilePath -Install $Install
    $entry.ini_path = $ini
    $entry.exists = [bool](Test-Path -LiteralPath $ini)
    if ($entry.exists) {
        $entry.content_b64 = [Convert]::ToBase64String([System.IO.File]::ReadAllBytes($ini))
        $entry.sha256 = [string](Get-Sha256 -Path $ini)
    }
    $exe = Get-MicroSipExe -ProfilePath $profilePath -Install $Install
    $entry.running = @(Get-UserMicroSip -Name $Name -Exe $exe).Count -gt 0
    return $entry
}

function Get-Sha256 {
    param([string]$Path)
    return (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
}

function Get-UserMicroSip {
    # This user's MicroSIP started from the declared exe. Matched by full path, as MicroSIP
    # matches its own instances: a portable copy under another name is found, and another
    # copy of the user's, or another user's MicroSIP, is never touched.
    param([string]$Name, [string]$Exe)
    $found = @()
    foreach ($process in Get-CimInstance -ClassName Win32_Process) {
        if (-not [string]::Equals([string]$process.ExecutablePath, $Exe, [System.StringComparison]::OrdinalIgnoreCase)) {
            continue
        }
        $owner = Invoke-CimMethod -InputObject $process -MethodName GetOwner
        if ($owner.User -eq $Name) {
            $found += $process
        }
    }
    return $found
}

function Start-InUserSession {
    # Runs Exe with one argument in the user's interactive session, through a scheduled
    # task: a process started from WinRM runs in session 0 and cannot reach the user's
    # MicroSIP window, and would die with the WinRM shell. Returns the task's name; remove
    # it with Remove-UserTask once its process has started.
    param([string]$Name, [string]$Exe, [string]$Argument, [string]$Verb)
    $action = New-ScheduledTaskAction -Execute $Exe -Argument $Argument -WorkingDirectory (Split-Path -Parent $Exe)
    $principal = New-ScheduledTaskPrincipal -UserId $Name -LogonType Interactive
    # Task Scheduler's defaults suit no softphone: priority 7 (below normal, low I/O), no
    # start on battery, stopped when the laptop unplugs, stopped after 72 hours. Each is set.
    $settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -ExecutionTimeLimit ([TimeSpan]::Zero) -Priority 4
    $task = 'microsip-' + $Verb + '-' + $Name
    Register-ScheduledTask -TaskPath '\provision\' -TaskName $task -Action $action -Principal $principal -Settings $settings -Force | Out-Null
    Start-ScheduledTask -TaskPath '\provision\' -TaskName $task
    return $task
}

function Remove-UserTask {
    # The task goes; a process it started keeps running.
    param([string]$Task)
    Unregister-ScheduledTask -TaskPath '\provision\' -TaskName $Task -Confirm:$false
}

function Wait-MicroSipStarted {
    # Start-ScheduledTask returns before the process runs: wait for it, bounded.
    param([string]$Name, [string]$Exe, [int]$WaitMs)
    $deadline = (Get-Date).AddMilliseconds($WaitMs)
    while (@(Get-UserMicroSip -Name $Name -Exe $Exe).Count -eq 0 -and (Get-Date) -lt $deadline) {
        Start-Sleep -Milliseconds 200
    }
    return @(Get-UserMicroSip -Name $Name -Exe $Exe).Count -gt 0
}

function Close-MicroSip {
    # /exit in the user's session (MicroSIP saves and closes), a bounded wait, then stop.
    param([string]$Name, [string]$Exe, [int]$WaitMs)
    $running = @(Get-UserMicroSip -Name $Name -Exe $Exe)
    if ($running.Count -eq 0) {
        return @{ ok = $true; closed = $false }
    }
    $task = Start-InUserSession -Name $Name -Exe $Exe -Argument '/exit' -Verb 'exit'
    try {
        $deadline = (Get-Date).AddMilliseconds($WaitMs)
        while ((Get-Date) -lt $deadline -and @(Get-UserMicroSip -Name $Name -Exe $Exe).Count -gt 0) {
            Start-Sleep -Milliseconds 200
        }
    } finally {
        Remove-UserTask -Task $task
    }
    foreach ($process in @(Get-UserMicroSip -Name $Name -Exe $Exe)) {
        Stop-Process -Id $process.ProcessId -Force -ErrorAction SilentlyContinue
    }
    Start-Sleep -Milliseconds 500
    if (@(Get-UserMicroSip -Name $Name -Exe $Exe).Count -gt 0) {
        return @{ ok = $false; closed = $true; reason = 'MicroSIP did not close' }
    }
    return @{ ok = $true; closed = $true }
}

function Write-IniFile {
    # Whole file to a temporary name, then an atomic replace; read back and check.
    param([string]$Path, [byte[]]$Content, [string]$Digest)
    $folder = Split-Path -Parent $Path
    if (-not (Test-Path -LiteralPath $folder)) {
        New-Item -ItemType Directory -Path $folder -Force | Out-Null
    }
    $temp = $Path + '.provision-tmp'
    [System.IO.File]::WriteAllBytes($temp, $Content)
    if (Test-Path -LiteralPath $Path) {
        [System.IO.File]::Replace($temp, $Path, [NullString]::Value)
    } else {
        [System.IO.File]::Move($temp, $Path)
    }
    if ((Get-Sha256 -Path $Path) -ne $Digest) {
        throw 'the file read back does not match what was written'
    }
}

function Save-Backup {
    # Copy of the current ini as <ini>.provision-<UTC time>.bak; keep the newest $Keep.
    param([string]$Path, [int]$Keep)
    if (-not (Test-Path -LiteralPath $Path)) {
        return $null
    }
    $stamp = (Get-Date).ToUniversalTime().ToString('yyyyMMddTHHmmssfffZ')
    $backup = $Path + '.provision-' + $stamp + '.bak'
    Copy-Item -LiteralPath $Path -Destination $backup
    $all = @(Get-Backups -Path $Path)
    if ($all.Count -gt $Keep) {
        $all | Select-Object -First ($all.Count - $Keep) | Remove-Item -Force
    }
    return $backup
}

function Get-Backups {
    # Backups of one ini, oldest first (the names sort by time).
    param([string]$Path)
    $folder = Split-Path -Parent $Path
    $leaf = Split-Path -Leaf $Path
    return Get-ChildItem -LiteralPath $folder -Filter ($leaf + '.provision-*.bak') | Sort-Object Name
}
