# provision-op: inspect v1
# For provision doctor, reads only: this session (administrator, language, PowerShell, .NET,
# Task Scheduler), the WinRM settings that matter, the MicroSIP installs found (declared,
# and where the installer puts it) with version and build date, and per user where their
# ini is and whether their MicroSIP runs, in which session. No ini content.

function Invoke-Inspect {
    param($Request)
    $winrm = @{
        MaxEnvelopeSizekb = Get-WSManValue -Path 'WSMan:\localhost\MaxEnvelopeSizekb'
        MaxTimeoutms = Get-WSManValue -Path 'WSMan:\localhost\MaxTimeoutms'
        MaxConcurrentOperationsPerUser = Get-WSManValue -Path 'WSMan:\localhost\Service\MaxConcurrentOperationsPerUser'
        MaxShellsPerUser = Get-WSManValue -Path 'WSMan:\localhost\Shell\MaxShellsPerUser'
        MaxMemoryPerShellMB = Get-WSManValue -Path 'WSMan:\localhost\Shell\MaxMemoryPerShellMB'
        IdleTimeout = Get-WSManValue -Path 'WSMan:\localhost\Shell\IdleTimeout'
    }
    $users = New-Object System.Collections.ArrayList
    $paths = New-Object System.Collections.ArrayList
    [void]$paths.Add('C:\Program Files\MicroSIP\microsip.exe')
    [void]$paths.Add('C:\Program Files (x86)\MicroSIP\microsip.exe')
    foreach ($user in $Request.users) {
        try {
            $entry = [hashtable](Get-UserPlace -Name $user.name)
            if ($entry.status -eq 'ok') {
                $entry.ini_path = Get-IniPath -Place $entry -Install $Request.install
                if ($entry.ini_path.StartsWith('\\') -or $entry.ini_path.Contains('%')) {
                    $entry.status = 'redirected'
                    $entry.reason = 'the ini would be ' + $entry.ini_path + ' (AppData redirected); provision does not write there'
                } else {
                    $entry.exists = [System.IO.File]::Exists($entry.ini_path)
                }
            }
            if ($entry.profile_path) {
                $exe = Get-MicroSipExe -ProfilePath $entry.profile_path -Install $Request.install
                if (-not ($paths -contains $exe)) {
                    [void]$paths.Add($exe)
                }
            }
        } catch {
            $entry = @{ name = [string]$user.name; status = 'failed'; reason = (Get-ErrorText $_) }
        }
        [void]$users.Add($entry)
    }
    Add-Running -Entries $users -Install $Request.install
    $installs = New-Object System.Collections.ArrayList
    foreach ($path in $paths) {
        [void]$installs.Add([hashtable](Get-ExeInfo -Path $path))
    }
    Send-Reply @{ ok = $true; facts = (Get-Preflight); winrm = $winrm; installs = $installs; users = $users }
}

function Get-WSManValue {
    # A WinRM setting from the WSMan: drive (administrators only), or $null.
    param([string]$Path)
    $item = Get-Item -LiteralPath $Path -ErrorAction SilentlyContinue
    if ($null -eq $item) {
        return $null
    }
    return [long]$item.Value
}
