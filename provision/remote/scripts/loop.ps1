# provision-op: loop v1
# Checks what the agent needs (answering a failure instead of any request), then one JSON
# request per line until standard input ends; one JSON reply line each. A line that is no
# JSON object is answered with an error, and the next is read: one bad line ends nothing.

$facts = Get-Preflight
$failure = Get-PreflightFailure -Facts $facts
if ($failure) {
    Send-Reply @{ ok = $false; preflight = $failure; facts = $facts }
    exit 1
}

while ($true) {
    $line = $stdin.ReadLine()
    if ($null -eq $line) {
        break
    }
    if ([string]::IsNullOrWhiteSpace($line)) {
        continue
    }
    try {
        $request = $json.DeserializeObject($line)
    } catch {
        Send-Reply @{ ok = $false; error = 'the request is not JSON: ' + (Get-ErrorText $_) }
        continue
    }
    if ($request -isnot [System.Collections.IDictionary]) {
        Send-Reply @{ ok = $false; error = 'the request is not a JSON object' }
        continue
    }
    try {
        switch ([string]$request.op) {
            'recover' {
                Invoke-Recover -Request $request
            }
            'discover' {
                Invoke-Discover -Request $request
            }
            'apply' {
                Invoke-Apply -Request $request
            }
            'rollback' {
                Invoke-Rollback -Request $request
            }
            'health' {
                Invoke-Health -Request $request
            }
            'smoke' {
                Invoke-Smoke -Request $request
            }
            'inspect' {
                Invoke-Inspect -Request $request
            }
            'smoke-cleanup' {
                Invoke-SmokeCleanup -Request $request
            }
            default {
                Send-Reply @{ ok = $false; error = 'unknown operation' }
            }
        }
    } catch {
        Send-Reply @{ ok = $false; error = [string]$_.Exception.Message }
    }
}
