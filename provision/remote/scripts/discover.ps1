# provision-op: discover v1
# For each user: profile folder, ini path and content, whether their MicroSIP runs (and in
# which session). Reads only. One user's failure is that user's result.

function Invoke-Discover {
    param($Request)
    $users = New-Object System.Collections.ArrayList
    foreach ($user in $Request.users) {
        try {
            [void]$users.Add([hashtable](Get-UserIni -Name $user.name -Install $Request.install -MaxBytes $Request.max_ini_bytes))
        } catch {
            [void]$users.Add(@{ name = [string]$user.name; status = 'failed'; reason = 'cannot read the ini: ' + (Get-ErrorText $_) })
        }
    }
    Add-Running -Entries $users -Install $Request.install
    Send-Reply @{ ok = $true; users = $users }
}
