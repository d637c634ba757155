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
$held = New-Object System.Collections.ArrayList

function Send-Reply {
    # One JSON line. -Hold keeps it back to go out with the next reply, in the same write,
    # so a reply the controller asked for in passing costs it no extra round trip.
    param([hashtable]$Reply, [switch]$Hold)
    [void]$held.Add($json.Serialize($Reply))
    if (-not $Hold) {
        $stdout.WriteLine([string]::Join("`n", $held.ToArray()))
        $held.Clear()
    }
}

function ConvertTo-Text {
    # A string, or $null, as a plain .NET value.
    param($Value)
    if ($null -eq $Value) {
        return $null
    }
    return [string]$Value
}

function Get-ErrorText {
    # The message of the error being handled, one line.
    param($ErrorRecord)
    return ([string]$ErrorRecord.Exception.Message).Trim()
}

function Set-Failure {
    # A user's result becomes 'failed' with this reason, saying what was done before.
    param([hashtable]$Result, [string]$Reason)
    if ($Result.status -eq 'written' -or $Result.status -eq 'restored') {
        $Reason = 'ini ' + $Result.status + ', but ' + $Reason
    }
    $Result.status = 'failed'
    $Result.reason = $Reason
}

# What the agent needs ---------------------------------------------------------------------

function Get-Preflight {
    # Facts about this session: an elevated administrator (a local account in Administrators
    # gets a UAC-filtered token over the network, which holds that group as deny-only), .NET
    # and PowerShell versions, Task Scheduler. The bootstrap has checked the language mode.
    $identity = [System.Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object System.Security.Principal.WindowsPrincipal($identity)
    $facts = @{ language_mode = 'FullLanguage'; powershell = [string]$PSVersionTable.PSVersion }
    $facts.elevated = [bool]$principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)
    $denyOnly = 'http://schemas.microsoft.com/ws/2008/06/identity/claims/denyonlysid'
    $facts.filtered = @($identity.Claims | Where-Object { $_.Type -eq $denyOnly -and $_.Value -eq 'S-1-5-32-544' }).Count -gt 0
    $ndp = Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\NET Framework Setup\NDP\v4\Full' -ErrorAction SilentlyContinue
    $facts.dotnet = if ($ndp) { [long]$ndp.Release } else { $null }
    $service = Get-Service -Name 'Schedule' -ErrorAction SilentlyContinue
    $facts.task_scheduler = if ($service) { [string]$service.Status } else { 'missing' }
    $facts.provision_folder = Get-ProvisionState
    return $facts
}

function Get-PreflightFailure {
    # The first thing this session lacks, as a failure kind, or $null.
    param([hashtable]$Facts)
    if (-not $Facts.elevated) {
        if ($Facts.filtered) {
            return 'uac-filtered'
        }
        return 'not-admin'
    }
    if ($Facts.task_scheduler -ne 'Running') {
        return 'task-scheduler'
    }
    return $null
}

# Where a user's things are ----------------------------------------------------------------

function Get-UserSid {
    # The account's SID, or $null if there is no such account.
    param([string]$Name)
    try {
        $account = New-Object System.Security.Principal.NTAccount($Name)
        return $account.Translate([System.Security.Principal.SecurityIdentifier]).Value
    } catch {
        return $null
    }
}

function Expand-UserPath {
    # %USERPROFILE% in a path, as the user's own session expands it: with their profile
    # folder, not with this (administrator's) session's environment.
    param([string]$Path, [string]$ProfilePath)
    $at = $Path.IndexOf('%USERPROFILE%', [System.StringComparison]::OrdinalIgnoreCase)
    while ($at -ge 0) {
        $Path = $Path.Substring(0, $at) + $ProfilePath + $Path.Substring($at + 13)
        $at = $Path.IndexOf('%USERPROFILE%', [System.StringComparison]::OrdinalIgnoreCase)
    }
    return $Path
}

function Get-UserPlace {
    # A user's profile folder and real AppData, from their own registry hive when it is
    # loaded (User Shell Folders\AppData, which folder redirection changes), else the
    # default place with a warning. Status 'no-profile' for a user who never logged on
    # here; 'failed' when the profile folder is gone (it is never created).
    param([string]$Name)
    $place = @{ name = $Name; status = 'ok' }
    $sid = Get-UserSid -Name $Name
    $key = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList\' + $sid
    if ($null -eq $sid -or -not (Test-Path -LiteralPath $key)) {
        $place.status = 'no-profile'
        return $place
    }
    $profilePath = [string](Get-ItemProperty -LiteralPath $key).ProfileImagePath
    $place.profile_path = $profilePath
    if (-not [System.IO.Directory]::Exists($profilePath)) {
        $place.status = 'failed'
        $place.reason = 'the profile folder ' + $profilePath + ' does not exist (ProfileList still names it); nothing is created'
        return $place
    }
    $appdata = [System.IO.Path]::Combine($profilePath, 'AppData\Roaming')
    $hive = 'Registry::HKEY_USERS\' + $sid
    if (Test-Path -LiteralPath $hive) {
        $folders = Get-Item -LiteralPath ($hive + '\Software\Microsoft\Windows\CurrentVersion\Explorer\User Shell Folders')
        # REG_EXPAND_SZ, read unexpanded: expanding it here would use this session's %USERPROFILE%.
        $raw = $folders.GetValue('AppData', $null, [Microsoft.Win32.RegistryValueOptions]::DoNotExpandEnvironmentNames)
        if ($raw) {
            $appdata = Expand-UserPath -Path ([string]$raw) -ProfilePath $profilePath
        }
    } else {
        $place.warning = "the user's registry hive is not loaded (they are not logged on): AppData assumed at " + $appdata
    }
    $place.appdata = $appdata
    return $place
}

function Get-MicroSipExe {
    # The exe of the install the inventory declares, for this user (%USERPROFILE% expanded).
    param([string]$ProfilePath, $Install)
    if ($Install.exe) {
        return Expand-UserPath -Path ([string]$Install.exe) -ProfilePath $ProfilePath
    }
    return 'C:\Program Files\MicroSIP\microsip.exe'
}

function Get-UserExe {
    # Get-MicroSipExe for a user by name; $null if they have no profile here.
    param([string]$Name, $Install)
    $place = Get-UserPlace -Name $Name
    if ($null -eq $place.profile_path) {
        return $null
    }
    return Get-MicroSipExe -ProfilePath $place.profile_path -Install $Install
}

function Get-IniPath {
    # Installed MicroSIP: <the user's AppData>\MicroSIP\microsip.ini.
    # Portable MicroSIP: next to the exe, named after it.
    param([hashtable]$Place, $Install)
    if ($Install.mode -eq 'portable') {
        $exe = Get-MicroSipExe -ProfilePath $Place.profile_path -Install $Install
        return [System.IO.Path]::ChangeExtension($exe, '.ini')
    }
    return [System.IO.Path]::Combine($Place.appdata, 'MicroSIP\microsip.ini')
}

function Get-UserIni {
    # One user's ini: where it is, its content and digest. An ini whose folder is on a
    # share (AppData redirected, or a portable exe there) is reported, never read or written;
    # so is one over MaxBytes (never read into this shell's memory, nor the controller's).
    param([string]$Name, $Install, [long]$MaxBytes)
    $entry = Get-UserPlace -Name $Name
    if ($entry.status -ne 'ok') {
        return $entry
    }
    $ini = Get-IniPath -Place $entry -Install $Install
    $entry.ini_path = $ini
    if ($ini.StartsWith('\\') -or $ini.Contains('%')) {
        $entry.status = 'redirected'
        $entry.reason = 'the ini would be ' + $ini + ' (AppData redirected); not read and not written here'
        return $entry
    }
    $entry.exists = [System.IO.File]::Exists($ini)
    if ($entry.exists) {
        $entry.size = [long][System.IO.FileInfo]::new($ini).Length
        if ($entry.size -gt $MaxBytes) {
            $entry.status = 'too-large'
            $entry.reason = 'ini too large: ' + $entry.size + ' bytes, over the cap of ' + $MaxBytes + '; not read'
            return $entry
        }
        $content = Read-SharedBytes -Path $ini
        $entry.content_b64 = [Convert]::ToBase64String($content)
        $entry.sha256 = Get-Sha256 -Bytes $content
    }
    return $entry
}

function Add-Running {
    # Whether each found user's MicroSIP (the declared exe) runs, and in which session.
    param($Entries, $Install)
    $exes = @{}
    foreach ($entry in $Entries) {
        if ($entry.profile_path) {
            $exes[$entry.name] = Get-MicroSipExe -ProfilePath $entry.profile_path -Install $Install
        }
    }
    $running = @(Get-MicroSipProcess -Exes $exes)
    foreach ($entry in $Entries) {
        if ($exes.ContainsKey($entry.name)) {
            $mine = @($running | Where-Object { $_.Owner -eq $entry.name })
            $entry.running = $mine.Count -gt 0
            $entry.session = if ($mine.Count -gt 0) { [long]$mine[0].SessionId } else { $null }
        }
    }
}

# Files ------------------------------------------------------------------------------------

function Read-SharedBytes {
    # A whole file, read as MicroSIP lets others read it (it writes through the profile API).
    # The comma keeps the byte[] whole: returned bare, the pipeline would unroll it into an
    # object[] of boxed bytes (an 8 MB ini: 8 million objects in the shell's memory).
    param([string]$Path)
    return ,[System.IO.File]::ReadAllBytes($Path)
}

function Get-Sha256 {
    # SHA-256 of bytes, or of a file (-Path), lower-case hex.
    param([byte[]]$Bytes, [string]$Path)
    if ($Path) {
        $Bytes = [System.IO.File]::ReadAllBytes($Path)
    }
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try {
        return [BitConverter]::ToString($sha.ComputeHash($Bytes)).Replace('-', '').ToLowerInvariant()
    } finally {
        $sha.Dispose()
    }
}

function Write-IniFile {
    # Whole file to a temporary name, then an atomic replace; read back and check. Only
    # MicroSIP's own folder may be created, never the folders above it (a profile).
    param([string]$Path, [byte[]]$Content, [string]$Digest)
    $folder = [System.IO.Path]::GetDirectoryName($Path)
    if (-not [System.IO.Directory]::Exists($folder)) {
        $parent = [System.IO.Path]::GetDirectoryName($folder)
        if (-not [System.IO.Directory]::Exists($parent)) {
            throw ('the folder ' + $parent + ' does not exist; nothing is created')
        }
        [void][System.IO.Directory]::CreateDirectory($folder)
    }
    $temp = $Path + '.provision-tmp'
    [System.IO.File]::WriteAllBytes($temp, $Content)
    if ([System.IO.File]::Exists($Path)) {
        # ReplaceFile keeps the ini's ACL, owner-independent attributes and creation time.
        [System.IO.File]::Replace($temp, $Path, [NullString]::Value)
    } else {
        # .NET Framework's Move never overwrites: a file that appeared meanwhile makes it throw.
        [System.IO.File]::Move($temp, $Path)
    }
    if ((Get-Sha256 -Path $Path) -ne $Digest) {
        throw 'the file read back does not match what was written'
    }
}

function Save-Backup {
    # Copy of the current ini as <ini>.provision-<UTC time>-<run>.bak; keep the newest $Keep.
    # The run's id goes in the name only if it is one (letters, digits, '-'): it is data.
    param([string]$Path, [int]$Keep, [string]$Run)
    if (-not [System.IO.File]::Exists($Path)) {
        return $null
    }
    $stamp = (Get-Date).ToUniversalTime().ToString('yyyyMMddTHHmmssfffZ')
    $tag = ''
    if ($Run -match '^[0-9A-Za-z-]{1,40}$') {
        $tag = '-' + $Run
    }
    $backup = $Path + '.provision-' + $stamp + $tag + '.bak'
    Copy-Item -LiteralPath $Path -Destination $backup
    $all = @(Get-Backups -Path $Path)
    if ($all.Count -gt $Keep) {
        $all | Select-Object -First ($all.Count - $Keep) | Remove-Item -Force
    }
    return $backup
}

function Test-BackupOf {
    # A backup of this ini: a file beside it named <ini>.provision-<...>.bak, nothing else,
    # so a rollback can only ever put back what a push saved.
    param([string]$Backup, [string]$Path)
    $folder = [System.IO.Path]::GetDirectoryName($Path)
    $leaf = [System.IO.Path]::GetFileName($Path)
    $name = [System.IO.Path]::GetFileName($Backup)
    $prefix = $leaf + '.provision-'
    if ([System.IO.Path]::GetDirectoryName($Backup) -ne $folder) {
        return $false
    }
    if (-not $name.StartsWith($prefix, [System.StringComparison]::OrdinalIgnoreCase) -or -not $name.EndsWith('.bak')) {
        return $false
    }
    return $name.Length -gt ($prefix.Length + 4)
}

function Get-Backups {
    # Backups of one ini, oldest first (the names sort by time); none if its folder is gone.
    param([string]$Path)
    $folder = [System.IO.Path]::GetDirectoryName($Path)
    if (-not [System.IO.Directory]::Exists($folder)) {
        return @()
    }
    $leaf = [System.IO.Path]::GetFileName($Path)
    return @(Get-ChildItem -LiteralPath $folder -Filter ($leaf + '.provision-*.bak') | Sort-Object Name)
}

# MicroSIP processes -----------------------------------------------------------------------

function Get-MicroSipProcess {
    # The running MicroSIPs of the given users, in one pass over Win32_Process: $Exes maps
    # each user name to their declared exe. Matched by full path, as MicroSIP matches its
    # own instances: a portable copy under another name is found, another copy of the
    # user's, or another user's MicroSIP, is never touched. Each comes with an Owner.
    # A process can end between the enumeration and GetOwner, which then throws
    # 'Not found ': it is gone, so it is skipped; so is one whose owner cannot be read.
    param([hashtable]$Exes)
    $found = New-Object System.Collections.ArrayList
    $wanted = @{}
    foreach ($exe in $Exes.Values) {
        $wanted[[string]$exe] = $true
    }
    foreach ($process in @(Get-CimInstance -ClassName Win32_Process)) {
        $path = [string]$process.ExecutablePath
        if (-not $path -or -not $wanted.ContainsKey($path)) {
            continue
        }
        try {
            $owner = Invoke-CimMethod -InputObject $process -MethodName GetOwner
        } catch {
            continue
        }
        if ($owner.ReturnValue -ne 0 -or -not $Exes.ContainsKey([string]$owner.User)) {
            continue
        }
        if (-not [string]::Equals($path, [string]$Exes[[string]$owner.User], [System.StringComparison]::OrdinalIgnoreCase)) {
            continue
        }
        $process | Add-Member -NotePropertyName Owner -NotePropertyValue ([string]$owner.User) -Force
        [void]$found.Add($process)
    }
    return $found.ToArray()
}

function Register-UserTask {
    # A task that runs Exe with one argument as the user, in their interactive session: a
    # process started from WinRM runs in session 0, cannot reach the user's MicroSIP window,
    # and dies with the WinRM shell. With -At it also starts by itself at that time, once.
    param([string]$Name, [string]$Exe, [string]$Argument, [string]$Task, $At)
    $action = New-ScheduledTaskAction -Execute $Exe -Argument $Argument -WorkingDirectory (Split-Path -Parent $Exe)
    $principal = New-ScheduledTaskPrincipal -UserId $Name -LogonType Interactive
    # Task Scheduler's defaults suit no softphone: priority 7 (below normal, low I/O), no
    # start on battery, stopped when the laptop unplugs, stopped after 72 hours (a run its
    # trigger starts; an on-demand start is exempt). Each is set. A trigger's moment missed
    # (the PC asleep, the service busy) is made up for as soon as it can be.
    $timed = $null -ne $At
    $settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -ExecutionTimeLimit ([TimeSpan]::Zero) -Priority 4 -StartWhenAvailable:$timed
    if ($timed) {
        $trigger = New-ScheduledTaskTrigger -Once -At $At
        Register-ScheduledTask -TaskPath '\provision\' -TaskName $Task -Action $action -Principal $principal -Settings $settings -Trigger $trigger -Force | Out-Null
    } else {
        Register-ScheduledTask -TaskPath '\provision\' -TaskName $Task -Action $action -Principal $principal -Settings $settings -Force | Out-Null
    }
}

function Start-InUserSession {
    # Runs Exe with one argument now, in the user's session (Register-UserTask). Returns the
    # task's name; remove it with Remove-UserTask once its process has started. A task that
    # could not be started is removed before the error goes on.
    param([string]$Name, [string]$Exe, [string]$Argument, [string]$Verb)
    $task = 'microsip-' + $Verb + '-' + $Name
    Register-UserTask -Name $Name -Exe $Exe -Argument $Argument -Task $task
    try {
        Start-ScheduledTask -TaskPath '\provision\' -TaskName $task
    } catch {
        $failure = $_
        try {
            Remove-UserTask -Task $task
        } catch {
            # The error that matters is the start's.
        }
        throw $failure
    }
    return $task
}

function Remove-UserTask {
    # The task goes; a process it started keeps running.
    param([string]$Task)
    Unregister-ScheduledTask -TaskPath '\provision\' -TaskName $Task -Confirm:$false
}

function Remove-UserTasks {
    # Every task in the list, each on its own: one that cannot be removed stops no other.
    param($Tasks)
    foreach ($task in $Tasks) {
        try {
            Remove-UserTask -Task $task
        } catch {
            continue
        }
    }
}

function Remove-Guard {
    # A guard task goes (see Close-Users); one that is gone already is no error.
    param([string]$Task)
    try {
        Remove-UserTask -Task $Task
    } catch {
        $failure = $_
        if ($null -ne (Get-ScheduledTask -TaskPath '\provision\' -TaskName $Task -ErrorAction SilentlyContinue)) {
            throw $failure
        }
    }
}

# The agent's folder -----------------------------------------------------------------------
# C:\ProgramData\provision holds what the agent must be able to trust: markers, which name an
# exe it will start, and smoke's copy of MicroSIP, which it runs as this administrator. Any
# user may create folders and files in ProgramData and owns what they create, so a folder
# that is there already proves nothing. The agent makes each of its folders for
# Administrators (the owner) and SYSTEM only, inheriting nothing, one level at a time, and
# checks each before it uses it: one that anybody else owns or may change is refused.

# Rights that change a folder or what is in it: WriteData, AppendData, WriteExtendedAttributes,
# DeleteSubdirectoriesAndFiles, WriteAttributes, Delete, ChangePermissions, TakeOwnership
# (0x000D0156), and GENERIC_ALL, GENERIC_WRITE as inheritable rules keep them (0x50000000).
$WriteRights = 0x500D0156

function Get-ProvisionRoot {
    return [System.IO.Path]::Combine([Environment]::GetFolderPath('CommonApplicationData'), 'provision')
}

function New-TrustedSecurity {
    # Owner Administrators; Administrators and SYSTEM full control, passed on; nothing inherited.
    $security = New-Object System.Security.AccessControl.DirectorySecurity
    $security.SetAccessRuleProtection($true, $false)
    $security.SetOwner((New-Object System.Security.Principal.SecurityIdentifier('S-1-5-32-544')))
    foreach ($sid in 'S-1-5-32-544', 'S-1-5-18') {
        $identity = New-Object System.Security.Principal.SecurityIdentifier($sid)
        $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($identity, 'FullControl', 'ContainerInherit, ObjectInherit', 'None', 'Allow')
        $security.AddAccessRule($rule)
    }
    return $security
}

function Test-TrustedSid {
    # Administrators or SYSTEM.
    param($Sid)
    return $null -ne $Sid -and ($Sid.Value -eq 'S-1-5-32-544' -or $Sid.Value -eq 'S-1-5-18')
}

function Get-AccountName {
    # DOMAIN\name of a SID, or the SID where it has no name here.
    param($Sid)
    if ($null -eq $Sid) {
        return '(nobody)'
    }
    try {
        return [string]$Sid.Translate([System.Security.Principal.NTAccount]).Value
    } catch {
        return [string]$Sid.Value
    }
}

function Get-FolderProblem {
    # Why a folder is not safe for the agent (its owner, who else may change it), or $null.
    param([string]$Path)
    try {
        $acl = [System.IO.Directory]::GetAccessControl($Path)
    } catch {
        return 'its permissions cannot be read (' + (Get-ErrorText $_) + ')'
    }
    $problems = New-Object System.Collections.ArrayList
    $owner = $acl.GetOwner([System.Security.Principal.SecurityIdentifier])
    if (-not (Test-TrustedSid -Sid $owner)) {
        [void]$problems.Add('its owner is ' + (Get-AccountName -Sid $owner) + ' (only Administrators or SYSTEM may own it)')
    }
    foreach ($rule in $acl.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier])) {
        $writes = ([int]$rule.FileSystemRights -band $WriteRights) -ne 0
        if ($rule.AccessControlType -eq 'Allow' -and $writes -and -not (Test-TrustedSid -Sid $rule.IdentityReference)) {
            $who = (Get-AccountName -Sid $rule.IdentityReference) + ' may change what is in it'
            if (-not ($problems -contains $who)) {
                [void]$problems.Add($who)
            }
        }
    }
    if ($problems.Count -eq 0) {
        return $null
    }
    return [string]::Join('; ', $problems.ToArray())
}

function Get-DistrustText {
    # A folder refused, and what an administrator does about it.
    param([string]$Path, [string]$Problem)
    return $Path + ' is not safe to use: ' + $Problem + '. Fix: look at what is in it, then remove it as an administrator ' +
        "(Remove-Item -LiteralPath '" + $Path + "' -Recurse -Force); provision makes it again, for Administrators and SYSTEM only"
}

function Get-TrustedFolder {
    # One of the agent's folders, made if it is not there (its parent must be); throws, saying
    # what to do, if it cannot be trusted. Checked even when just made: a folder someone else
    # made in the meantime is left as it is by CreateDirectory.
    param([string]$Path)
    if (-not [System.IO.Directory]::Exists($Path)) {
        [void][System.IO.Directory]::CreateDirectory($Path, (New-TrustedSecurity))
    }
    $problem = Get-FolderProblem -Path $Path
    if ($problem) {
        throw (Get-DistrustText -Path $Path -Problem $problem)
    }
    return $Path
}

function Get-ProvisionState {
    # 'absent' (made when first needed), 'ok', or why C:\ProgramData\provision or its folder of
    # markers cannot be trusted. Made nothing.
    $root = Get-ProvisionRoot
    if (-not [System.IO.Directory]::Exists($root)) {
        return 'absent'
    }
    foreach ($path in $root, [System.IO.Path]::Combine($root, 'closed')) {
        if (-not [System.IO.Directory]::Exists($path)) {
            continue
        }
        $problem = Get-FolderProblem -Path $path
        if ($problem) {
            return Get-DistrustText -Path $path -Problem $problem
        }
    }
    return 'ok'
}

# Closed, not yet started again ------------------------------------------------------------
# Before a user's MicroSIP is closed, a marker records it in C:\ProgramData\provision\closed,
# and a guard task is registered that starts it, by itself, once the run closing it has
# surely ended (its controller has given up on this host by then). Both go once MicroSIP is
# seen running again. A run that dies in between (controller killed, shell deleted, which
# ends this agent) leaves them: the guard starts MicroSIP at its time, and the next
# conversation with the host starts it first if it comes sooner, and removes both.

function Get-MarkerFolder {
    # -Create: C:\ProgramData\provision and its closed folder are made if missing, and checked.
    param([switch]$Create)
    $root = Get-ProvisionRoot
    $folder = [System.IO.Path]::Combine($root, 'closed')
    if ($Create) {
        [void](Get-TrustedFolder -Path $root)
        [void](Get-TrustedFolder -Path $folder)
    }
    return $folder
}

function Get-MarkerPath {
    param([string]$Name)
    return [System.IO.Path]::Combine((Get-MarkerFolder), (Get-UserSid -Name $Name) + '.json')
}

function Get-GuardName {
    # The user's guard task, in \provision\.
    param([string]$Name)
    return 'microsip-guard-' + $Name
}

function Write-Marker {
    # Until: when the request closing MicroSIP runs out of time.
    param([string]$Name, [string]$Exe, [long]$Session, [DateTime]$Until)
    $me = [System.Diagnostics.Process]::GetCurrentProcess()
    $marker = @{ name = $Name; exe = $Exe; session = $Session; agent_pid = [long]$me.Id }
    $marker.agent_started = [long]$me.StartTime.ToUniversalTime().Ticks
    $marker.closed_at = (Get-Date).ToUniversalTime().ToString('o')
    $marker.until = $Until.ToUniversalTime().ToString('o')
    [System.IO.File]::WriteAllText((Get-MarkerPath -Name $Name), $json.Serialize($marker))
}

function Remove-Marker {
    param([string]$Name)
    $path = Get-MarkerPath -Name $Name
    if ([System.IO.File]::Exists($path)) {
        [System.IO.File]::Delete($path)
    }
}

function Clear-Closed {
    # Nothing more to do for this user's MicroSIP: its guard goes, then its marker. A guard that
    # cannot be removed keeps the marker, so the next conversation tries again.
    param([string]$Name)
    Remove-Guard -Task (Get-GuardName -Name $Name)
    Remove-Marker -Name $Name
}

function Test-MarkerLive {
    # Whether the marker's agent is still at work on it: it runs, and the request that closed
    # MicroSIP has time left. An agent past that has been given up on by its controller, and
    # may yet live on for hours with its WinRM shell (IdleTimeout): its marker is the next
    # conversation's.
    param($Marker)
    if ($Marker.until) {
        $until = [DateTime]::Parse([string]$Marker.until, [System.Globalization.CultureInfo]::InvariantCulture, [System.Globalization.DateTimeStyles]::RoundtripKind)
        if ((Get-Date).ToUniversalTime() -ge $until.ToUniversalTime()) {
            return $false
        }
    }
    $process = Get-Process -Id ([int]$Marker.agent_pid) -ErrorAction SilentlyContinue
    return $null -ne $process -and $process.StartTime.ToUniversalTime().Ticks -eq [long]$Marker.agent_started
}

# Closing and starting MicroSIP, many users at once ----------------------------------------

# After /exit and its wait, a MicroSIP still running is stopped and given this long to go.
$StopWaitMs = 2000

function Close-Users {
    # Closes the MicroSIP of each named user (with /exit in their session: it saves and
    # exits). Every user's task is started before any is waited for, then one bounded wait
    # for them all; what still runs is stopped. A user is closed only if the whole of it (the
    # exit wait, the stop, the start and its wait) fits in the time the request has left, else
    # they are 'busy', MicroSIP untouched; so are those whose MicroSIP would not close. Before
    # /exit each gets a marker and a guard task; a user whose /exit cannot be sent is not
    # closed at all (both removed, MicroSIP untouched, the user failed). Each user whose /exit
    # was sent is added to $Closing as it is sent, so the caller can start MicroSIP again for
    # them whatever happens here. Returns the users whose MicroSIP was running and is now closed.
    param($Names, [hashtable]$Exes, [hashtable]$Results, [int]$ExitWaitMs, [int]$StartWaitMs, [long]$BudgetMs, $Clock, $Closing)
    $tasks = New-Object System.Collections.ArrayList
    $running = @(Get-MicroSipProcess -Exes $Exes)
    $owners = @($running | ForEach-Object { $_.Owner })
    $wanted = @($Names | Where-Object { $owners -contains $_ })
    if ($wanted.Count -eq 0) {
        return @()
    }
    $unsafe = $null
    try {
        [void](Get-MarkerFolder -Create)
    } catch {
        $unsafe = Get-ErrorText $_
    }
    $cycle = $ExitWaitMs + $StopWaitMs + $StartWaitMs
    $taskMs = 0  # the slowest task registration so far: each user closed costs about six task operations
    foreach ($name in $wanted) {
        $mine = @($running | Where-Object { $_.Owner -eq $name })
        if ($unsafe) {
            Set-Failure -Result $Results[$name] -Reason ('MicroSIP left running, the ini not written: ' + $unsafe)
            continue
        }
        $timeLeft = $BudgetMs - $Clock.ElapsedMilliseconds
        $needed = $cycle + 6 * $taskMs * ($Closing.Count + 1)
        if ($needed -gt $timeLeft) {
            $Results[$name].status = 'busy'
            $Results[$name].reason = 'MicroSIP left running: closing it and starting it again can take ' + [Math]::Ceiling($needed / 1000) +
                ' s, and ' + [Math]::Max(0, [Math]::Floor($timeLeft / 1000)) + ' s of the time this host was given were left; raise --timeout'
            continue
        }
        $began = $Clock.ElapsedMilliseconds
        $until = (Get-Date).AddMilliseconds($timeLeft)
        # The guard starts MicroSIP when this request's controller has given up on the host: it
        # keeps a fifth of its time beyond the budget (a quarter of the budget), at least 5 s.
        $at = $until.AddMilliseconds([Math]::Max(5000, $BudgetMs / 4))
        try {
            Write-Marker -Name $name -Exe $Exes[$name] -Session ([long]$mine[0].SessionId) -Until $until
            Register-UserTask -Name $name -Exe $Exes[$name] -Argument '/minimized' -Task (Get-GuardName -Name $name) -At $at
            [void]$tasks.Add((Start-InUserSession -Name $name -Exe $Exes[$name] -Argument '/exit' -Verb 'exit'))
            [void]$Closing.Add($name)
        } catch {
            $reason = Get-ErrorText $_
            try {
                Clear-Closed -Name $name
            } catch {
                # Left for the next conversation, which finds MicroSIP running and removes them.
            }
            Set-Failure -Result $Results[$name] -Reason ('MicroSIP left running: its /exit could not be sent: ' + $reason)
        }
        $taskMs = [Math]::Max($taskMs, ($Clock.ElapsedMilliseconds - $began) / 2)
    }
    try {
        $deadline = (Get-Date).AddMilliseconds($ExitWaitMs)
        while ($Closing.Count -gt 0 -and (Get-Date) -lt $deadline) {
            if (@(Get-MicroSipProcess -Exes $Exes | Where-Object { $Closing -contains $_.Owner }).Count -eq 0) {
                break
            }
            Start-Sleep -Milliseconds 200
        }
    } finally {
        Remove-UserTasks -Tasks $tasks
    }
    # Still running after the wait (a dialog, a hang): stopped; its unsaved settings are lost.
    $left = @(Get-MicroSipProcess -Exes $Exes | Where-Object { $Closing -contains $_.Owner })
    foreach ($process in $left) {
        Stop-Process -Id $process.ProcessId -Force -ErrorAction SilentlyContinue
    }
    $deadline = (Get-Date).AddMilliseconds($StopWaitMs)
    while ($left.Count -gt 0 -and (Get-Date) -lt $deadline) {
        Start-Sleep -Milliseconds 200
        $left = @(Get-MicroSipProcess -Exes $Exes | Where-Object { $Closing -contains $_.Owner })
    }
    $closed = New-Object System.Collections.ArrayList
    foreach ($name in $Closing) {
        if (@($left | Where-Object { $_.Owner -eq $name }).Count -gt 0) {
            $Results[$name].status = 'busy'
            $Results[$name].reason = 'MicroSIP did not close'
            try {
                Clear-Closed -Name $name
            } catch {
                # Left for the next conversation, which finds MicroSIP running and removes them.
            }
        } else {
            [void]$closed.Add($name)
        }
    }
    return $closed.ToArray()
}

function Complete-Restart {
    # MicroSIP runs again for this user: 'restarted', and its guard and marker go.
    param([string]$Name, [hashtable]$Result)
    $Result.restarted = $true
    try {
        Clear-Closed -Name $Name
    } catch {
        # Left for the next conversation, which finds MicroSIP running and removes them.
    }
}

function Start-Users {
    # Starts MicroSIP again, minimized, in each named user's session: every task first,
    # then one bounded wait until each is seen running, in a user session (not 0). Only
    # then is 'restarted' set and the user's guard and marker removed; a user whose MicroSIP
    # does not come back keeps them (the guard tries again at its time, the next conversation
    # too) and fails with why. Each user on their own: one user's failure is no other's.
    param($Names, [hashtable]$Exes, [hashtable]$Results, [int]$WaitMs)
    $pending = New-Object System.Collections.ArrayList
    $tasks = New-Object System.Collections.ArrayList
    $running = @(Get-MicroSipProcess -Exes $Exes)
    foreach ($name in $Names) {
        try {
            if (@($running | Where-Object { $_.Owner -eq $name -and $_.SessionId -gt 0 }).Count -gt 0) {
                Complete-Restart -Name $name -Result $Results[$name]  # running already (the user started it)
                continue
            }
            [void]$tasks.Add((Start-InUserSession -Name $name -Exe $Exes[$name] -Argument '/minimized' -Verb 'start'))
            [void]$pending.Add($name)
        } catch {
            Set-Failure -Result $Results[$name] -Reason ('MicroSIP could not be started again: ' + (Get-ErrorText $_) + '; the next run with this host tries again')
        }
    }
    try {
        $deadline = (Get-Date).AddMilliseconds($WaitMs)
        while ($pending.Count -gt 0) {
            $running = @(Get-MicroSipProcess -Exes $Exes | Where-Object { $_.SessionId -gt 0 })
            foreach ($name in @($pending.ToArray())) {
                if (@($running | Where-Object { $_.Owner -eq $name }).Count -gt 0) {
                    Complete-Restart -Name $name -Result $Results[$name]
                    $pending.Remove($name)
                }
            }
            if ($pending.Count -eq 0 -or (Get-Date) -ge $deadline) {
                break
            }
            Start-Sleep -Milliseconds 200
        }
    } finally {
        Remove-UserTasks -Tasks $tasks
    }
    foreach ($name in $pending) {
        $seconds = [int]($WaitMs / 1000)
        Set-Failure -Result $Results[$name] -Reason ('MicroSIP did not start again within ' + $seconds + ' s (is the user still logged on?); the next run with this host tries again')
    }
}
