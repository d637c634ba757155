# provision-op: discover v1
# For each user: profile folder, ini path and content, whether their MicroSIP runs.
# Reads only.

function Invoke-Discover {
    param($Request)
    $users = @()
    foreach ($user in $Request.users) {
        $users += Get-UserIni -Name $user.name -Install $Request.install
    }
    Send-Reply @{ ok = $true; users = $users }
}
