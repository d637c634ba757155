# provision-op: bootstrap v2
# Started by provision as: powershell.exe ... -EncodedCommand <this file>.
# Reads the agent script as the first line of standard input (base64 of its UTF-8 text) and
# runs it in this scope. Standard input and output are used as UTF-8 streams whatever the
# console code page, so non-ASCII user names survive. Nothing here goes through a cmdlet
# that logs its parameters.
$ErrorActionPreference = 'Stop'
$utf8 = New-Object System.Text.UTF8Encoding $false
$stdin = New-Object System.IO.StreamReader([Console]::OpenStandardInput(), $utf8)
$stdout = New-Object System.IO.StreamWriter([Console]::OpenStandardOutput(), $utf8)
$stdout.AutoFlush = $true
$agent = $utf8.GetString([Convert]::FromBase64String($stdin.ReadLine()))
. ([ScriptBlock]::Create($agent))
