# provision-op: discover v1
# For each user: profile folder, ini path and content, whether their MicroSIP runs.
# Reads only.

function Invoke-Discover {
    param($Request)
    $users = @()
    foreach ($user in $Request.users) {
        $entry = @{ name = $user.name; status = 'ok' }
        $profilePath = Get-ProfilePath -Name $user.name
        if ($null -eq $profilePath) {
            $entry.status = 'no-profile'
        } else {
            $ini = Get-IniPath -ProfilePath $profilePath -Install $Request.install
            $entry.ini_path = $ini
            $entry.exists = Test-Path -LiteralPath $ini
            if ($entry.exists) {
                $entry.content_b64 = [Convert]::ToBase64String([System.IO.File]::ReadAllBytes($ini))
                $entry.sha256 = Get-Sha256 -Path $ini
            }
            $entry.running = @(Get-UserMicroSip -Name $user.name).Count -gt 0
        }
        $users += $entry
    }
    Send-Reply @{ ok = $true; users = $users }
}
