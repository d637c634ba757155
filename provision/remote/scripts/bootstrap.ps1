# provision-op: bootstrap v3
# Started by provision as: powershell.exe ... -EncodedCommand <this file>.
# First, with only what Constrained Language allows (no .NET calls): the language mode and
# PowerShell's version, each failure answered as one JSON line the controller reads.
# Then reads the agent script as the first line of standard input (base64 of its UTF-8
# text) and runs it in this scope. Standard input and output are used as UTF-8 streams
# whatever the console code page, so non-ASCII user names survive. Nothing here goes
# through a cmdlet that logs its parameters.
$ErrorActionPreference = 'Stop'
$mode = [string]$ExecutionContext.SessionState.LanguageMode
if ($mode -ne 'FullLanguage') {
    '{"ok":false,"preflight":"language-mode","facts":{"language_mode":"' + $mode + '"}}'
    exit 1
}
$version = $PSVersionTable.PSVersion
if ($version.Major -lt 5 -or ($version.Major -eq 5 -and $version.Minor -lt 1)) {
    '{"ok":false,"preflight":"powershell-version","facts":{"powershell":"' + [string]$version + '"}}'
    exit 1
}
$utf8 = New-Object System.Text.UTF8Encoding $false
$stdin = New-Object System.IO.StreamReader([Console]::OpenStandardInput(), $utf8)
$stdout = New-Object System.IO.StreamWriter([Console]::OpenStandardOutput(), $utf8)
$stdout.AutoFlush = $true
$agent = $utf8.GetString([Convert]::FromBase64String($stdin.ReadLine()))
. ([ScriptBlock]::Create($agent))
