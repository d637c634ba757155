# provision-op: discover v1
# For each user: profile folder, ini path and content, whether their MicroSIP runs.
# Reads only.

function Invoke-Discover {
    param($Request)
    $users = New-Object System.Collections.ArrayList
    foreach ($user in $Request.users) {
        [void]$users.Add([hashtable](Get-UserIni -Name $user.name -Install $Request.install))
    }
    Send-Reply @{ ok = $true; users = $users }
}
