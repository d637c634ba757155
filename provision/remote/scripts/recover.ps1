# provision-op: recover v1
# First in every conversation: MicroSIP closed by an earlier run that never started it
# again (its controller killed, its shell deleted) is started now, in the user's session,
# and that run's guard task and marker are removed. Only the exe the inventory declares is
# ever started; a marker whose agent is still at work belongs to a conversation in progress
# and is left alone. Markers are read only from a folder the agent can trust. The reply is
# held back and goes out with the next one.

function Invoke-Recover {
    param($Request)
    $results = @{}
    $exes = @{}
    $names = New-Object System.Collections.ArrayList
    $users = New-Object System.Collections.ArrayList
    $folder = Get-MarkerFolder
    $files = @()
    if ((Get-ProvisionState) -eq 'ok' -and [System.IO.Directory]::Exists($folder)) {
        $files = [System.IO.Directory]::GetFiles($folder, '*.json')
    }
    foreach ($file in $files) {
        try {
            $marker = $json.DeserializeObject([System.IO.File]::ReadAllText($file))
            if (Test-MarkerLive -Marker $marker) {
                continue
            }
            $name = [string]$marker.name
            $result = @{ name = $name; status = 'ok'; restarted = $false }
            [void]$users.Add($result)
            $exe = Get-UserExe -Name $name -Install $Request.install
            if (-not [string]::Equals([string]$exe, [string]$marker.exe, [System.StringComparison]::OrdinalIgnoreCase)) {
                Set-Failure -Result $result -Reason ('closed by an earlier run from ' + $marker.exe + ', which the inventory does not declare: not started')
                try {
                    Remove-Guard -Task (Get-GuardName -Name $name)  # it would start that exe
                } catch {
                    # Tried again by the next conversation.
                }
                continue
            }
            $results[$name] = $result
            $exes[$name] = $exe
            [void]$names.Add($name)
        } catch {
            [void]$users.Add(@{ name = [System.IO.Path]::GetFileName($file); status = 'failed'; restarted = $false; reason = (Get-ErrorText $_) })
        }
    }
    Start-Users -Names $names -Exes $exes -Results $results -WaitMs $Request.start_wait_ms
    Send-Reply -Hold @{ ok = $true; users = $users }
}
