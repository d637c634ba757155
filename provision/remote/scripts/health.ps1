# provision-op: health v1
# Read-only: for each user their ini, MicroSIP's exe (version, build date), whether their MicroSIP
# runs, the last registration line of their log, hook programs on disk, audio devices.

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
                $entry.log = [hashtable](Find-LogLine -Path $log -Patterns $Request.log_patterns)
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
    $devices = [string[]]@(Get-CimInstance -ClassName Win32_PnPEntity -Filter "PNPClass = 'AudioEndpoint'" | ForEach-Object { $_.Name })
    Send-Reply @{ ok = $true; users = $users; hooks = $hooks; devices = $devices }
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
    # The last line of the log matching any of the patterns (regular expressions, as data).
    param([string]$Path, $Patterns)
    $result = @{ exists = [bool](Test-Path -LiteralPath $Path -PathType Leaf); line = $null }
    if ($result.exists -and $Patterns) {
        $stream = New-Object System.IO.FileStream($Path, 'Open', 'Read', 'ReadWrite')
        try {
            $text = (New-Object System.IO.StreamReader($stream)).ReadToEnd()
        } finally {
            $stream.Dispose()
        }
        $found = @($text -split "`r?`n" | Select-String -Pattern $Patterns)
        if ($found.Count -gt 0) {
            $result.line = [string]$found[-1].Line
        }
    }
    return $result
}
