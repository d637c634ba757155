# provision-op: health v1
# Read-only: for each user their ini, MicroSIP's exe (version, build date), whether their MicroSIP
# runs, the last registration line of their log, hook programs on disk, audio devices. One
# user's failure is that user's; audio devices that cannot be listed are said so.

function Invoke-Health {
    param($Request)
    $users = New-Object System.Collections.ArrayList
    foreach ($user in $Request.users) {
        try {
            $entry = [hashtable](Get-UserIni -Name $user.name -Install $Request.install -MaxBytes $Request.max_ini_bytes)
            if ($entry.profile_path) {
                $exe = Get-MicroSipExe -ProfilePath $entry.profile_path -Install $Request.install
                $entry.exe = [hashtable](Get-ExeInfo -Path $exe)
                $log = Get-LogPath -ProfilePath $entry.profile_path -Install $Request.install
                $entry.log = [hashtable](Find-LogLine -Path $log -Patterns $Request.log_patterns -TailBytes $Request.log_tail_bytes)
            }
        } catch {
            $entry = @{ name = [string]$user.name; status = 'failed'; reason = 'cannot read the ini: ' + (Get-ErrorText $_) }
        }
        [void]$users.Add($entry)
    }
    Add-Running -Entries $users -Install $Request.install
    $hooks = New-Object System.Collections.ArrayList
    foreach ($path in $Request.hooks) {
        [void]$hooks.Add(@{ path = [string]$path; exists = [bool](Test-Path -LiteralPath $path -PathType Leaf) })
    }
    # Audio endpoints by PNPClass: where Win32_PnPEntity cannot be queried so, devices is $null
    # and devices_error says why; the rest of health stands.
    $devices = $null
    $devicesError = $null
    try {
        $devices = [string[]]@(Get-CimInstance -ClassName Win32_PnPEntity -Filter "PNPClass = 'AudioEndpoint'" | ForEach-Object { $_.Name })
    } catch {
        $devicesError = Get-ErrorText $_
    }
    Send-Reply @{ ok = $true; users = $users; hooks = $hooks; devices = $devices; devices_error = $devicesError }
}

function Get-ExeInfo {
    # File version, and the build time from the PE header (TimeDateStamp, seconds since 1970).
    param([string]$Path)
    $info = @{ path = $Path; exists = [bool](Test-Path -LiteralPath $Path -PathType Leaf) }
    if ($info.exists) {
        $info.version = ConvertTo-Text (Get-Item -LiteralPath $Path).VersionInfo.FileVersion
        $stream = [System.IO.File]::OpenRead($Path)
        try {
            $reader = New-Object System.IO.BinaryReader($stream)
            $stream.Position = 0x3C
            $stream.Position = $reader.ReadInt32() + 8
            $info.build_time = [long]$reader.ReadUInt32()
        } finally {
            $stream.Dispose()
        }
    }
    return $info
}

function Get-LogPath {
    # <exe>_log.txt: next to a portable exe, in %LOCALAPPDATA%\MicroSIP for the installed one.
    param([string]$ProfilePath, $Install)
    if ($Install.mode -eq 'portable') {
        $exe = Get-MicroSipExe -ProfilePath $ProfilePath -Install $Install
        return [System.IO.Path]::ChangeExtension($exe, $null).TrimEnd('.') + '_log.txt'
    }
    return Join-Path $ProfilePath 'AppData\Local\MicroSIP\microsip_log.txt'
}

function Find-LogLine {
    # The last line matching any of the patterns (regular expressions, as data) in the log's
    # last TailBytes. A level-5 log grows for weeks: only its end is read, never the whole
    # file into this shell's memory (MaxMemoryPerShellMB). Opened for shared reading and
    # writing: MicroSIP keeps it open for writing while it runs.
    param([string]$Path, $Patterns, [long]$TailBytes)
    $result = @{ exists = [System.IO.File]::Exists($Path); line = $null }
    if ($result.exists -and $Patterns) {
        $stream = New-Object System.IO.FileStream($Path, 'Open', 'Read', 'ReadWrite')
        try {
            $start = [Math]::Max([long]0, $stream.Length - $TailBytes)
            $stream.Position = $start
            $bytes = (New-Object System.IO.BinaryReader($stream)).ReadBytes([int]($stream.Length - $start))
        } finally {
            $stream.Dispose()
        }
        $lines = [System.Text.Encoding]::UTF8.GetString($bytes) -split "`r?`n"
        if ($start -gt 0) {
            $lines = @($lines | Select-Object -Skip 1)  # the first line is cut: not judged
        }
        $found = @($lines | Select-String -Pattern $Patterns)
        if ($found.Count -gt 0) {
            $result.line = [string]$found[-1].Line
        }
    }
    return $result
}
